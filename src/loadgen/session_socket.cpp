#include "session_socket.hpp"

#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <fmt/format.h>

namespace tern::loadgen {

void SessionSocket::close(net::EventLoop& loop) noexcept {
  if (id != 0) loop.close(id);
  id = 0;
  connecting = false;
  // The TLS session goes with the socket; plainIn stays readable (a close from inside a parse of
  // it must not pull the bytes away) and is cleared when the socket is opened again.
  tls.reset();
  plainOut.consume(plainOut.size());
  sealAsked = false;
  // ws.in, like plainIn, stays readable until the socket is opened again.
  ws.framed.consume(ws.framed.size());
}

bool SessionSocket::seal(net::EventLoop& loop) noexcept {
  sealAsked = false;
  if (id == 0) return true;
  if (ws.on) {
    // The turn's bytes as one frame, behind what is waiting (the upgrade request, pongs).
    net::ByteBuffer& wire = loop.output(id);
    net::ByteBuffer& framed = tls ? ws.framed : wire;
    if (!tls && !ws.framed.empty()) {
      wire.append(ws.framed.view());
      ws.framed.consume(ws.framed.size());
    }
    if (!plainOut.empty()) {
      ws::appendFrame(framed, ws::Opcode::kBinary, plainOut.view(), ws.masks.next());
      plainOut.consume(plainOut.size());
    }
    if (!tls) {
      loop.flush(id);
      return true;
    }
    if (ws.framed.empty()) return true;
    const net::TlsSession::Status status = tls->write(ws.framed.view(), wire);
    ws.framed.consume(ws.framed.size());
    loop.flush(id);
    return status != net::TlsSession::Status::kFailed;
  }
  if (!tls || plainOut.empty()) return true;
  const net::TlsSession::Status status = tls->write(plainOut.view(), loop.output(id));
  plainOut.consume(plainOut.size());
  loop.flush(id);
  return status != net::TlsSession::Status::kFailed;
}

ReceiveStatus receiveWebSocket(SessionSocket& socket, SessionHost& host, std::string_view bytes) {
  WsLayer& ws = socket.ws;
  if (!ws.upgraded) {
    // The 101 answer, which may come in pieces and have frames behind it in the same read. It
    // is copied only as far as its end (a short string: the copy costs once per connection).
    const std::size_t before = ws.response.size();
    ws.response.append(bytes.substr(0, ws::kMaxResponseBytes));
    const ws::UpgradeResponse answer = ws::parseUpgradeResponse(ws.response, ws.key);
    switch (answer.status) {
      case ws::UpgradeResponse::Status::kIncomplete:
        return ReceiveStatus::kOk;
      case ws::UpgradeResponse::Status::kRefused:
        ws.problem = answer.problem;
        return ReceiveStatus::kWsRefused;
      case ws::UpgradeResponse::Status::kAccepted:
        break;
    }
    ws.upgraded = true;
    bytes.remove_prefix(answer.consumed - before);
    ws.response.clear();
    ws.response.shrink_to_fit();
  }
  const std::size_t repliesBefore = ws.framed.size();
  const ws::FrameDecoder::Result result = ws.decoder.decode(bytes, ws.in, ws.framed, ws.masks);
  if (ws.framed.size() != repliesBefore) socket.flush(host);
  switch (result.status) {
    case ws::FrameDecoder::Status::kOk:
      return ReceiveStatus::kOk;
    case ws::FrameDecoder::Status::kClosed:
      ws.problem = fmt::format("the broker closed the WebSocket with code {}", result.closeCode);
      if (!result.reason.empty()) ws.problem += fmt::format(" ({})", result.reason);
      return ReceiveStatus::kWsClosed;
    case ws::FrameDecoder::Status::kProtocol:
      ws.problem = result.problem;
      return ReceiveStatus::kWsProtocol;
  }
  return ReceiveStatus::kOk;
}

std::string openSessionSocket(SessionSocket& socket, const SessionConfig& config, SessionHost& host,
                              unsigned slot) {
  net::EventLoop& loop = host.loop();
  const int fd = ::socket(config.broker.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return std::strerror(errno);
  const int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (config.sourceLength != 0) {
    // Let connect() pick the port per destination, so that source addresses multiply the
    // ephemeral ports available instead of each bind() reserving one for every destination.
    ::setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
    if (::bind(fd, reinterpret_cast<const sockaddr*>(&config.source), config.sourceLength) != 0) {
      const int error = errno;
      ::close(fd);
      return std::strerror(error);
    }
  }
  // The loop owns the descriptor from here on, whatever the connect's outcome.
  socket.id = loop.connect(fd, socketTag(config.client, slot),
                           reinterpret_cast<const sockaddr*>(&config.broker), config.brokerLength);
  socket.connecting = true;
  socket.partial.clear();
  socket.client = config.client;
  socket.plainIn.consume(socket.plainIn.size());
  socket.plainOut.consume(socket.plainOut.size());
  socket.sealAsked = false;
  socket.tls.reset();
  WsLayer& ws = socket.ws;
  ws.on = config.websocket;
  ws.upgraded = false;
  ws.response.clear();
  ws.problem.clear();
  ws.decoder.reset();
  ws.framed.consume(ws.framed.size());
  ws.in.consume(ws.in.size());
  if (ws.on) {
    // The upgrade request goes first, in the same write as the first frames (seal()).
    ws.key = ws::makeKey();
    ws.masks = ws::MaskKeys::fromRandom();
    ws.framed.append(ws::upgradeRequest(config.wsHost, config.wsPath, ws.key));
  }
  if (config.tls) {
    socket.tls = std::make_unique<net::TlsSession>(*config.tls, config.tlsServerName);
    if (socket.tls->failed()) return socket.tls->error();
    // The ClientHello, queued now: the loop sends flushed output once the connect completes.
    socket.tls->read({}, socket.plainIn, loop.output(socket.id));
    loop.flush(socket.id);
  }
  return {};
}

}  // namespace tern::loadgen
