// Worker: the transports between a connection's socket and its protocol. TLS decrypts what
// arrives and encrypts what leaves; a WebSocket connection (MQTT over WebSockets) first answers
// the HTTP upgrade, then decodes frames into the MQTT byte stream and frames what the protocol
// writes. Output is framed and encrypted once per turn per connection, however many messages the
// turn wrote (sealPending), so a fan-out of N messages costs one frame and one TLS record run.
#include <algorithm>

#include "tern/common/clock.hpp"
#include "tern/common/log.hpp"
#include "tern/protocol/ws_handshake.hpp"
#include "worker.hpp"

namespace tern::broker {
namespace {

// The upgrade request line and headers together (browsers send well under 2 KiB).
constexpr std::size_t kWsRequestMax = 8192;
// A receive, on top of the largest packet, in one frame.
constexpr std::size_t kWsFrameSlack = 64 * 1024;

}  // namespace

std::size_t Worker::wsMaxFrame() const noexcept {
  return config_.maxPacketSize + kWsFrameSlack;
}

void Worker::receiveTls(Connection& c, std::span<const char> ciphertext) {
  const bool wasDone = c.tls->handshakeDone();
  tlsPlain_.consume(tlsPlain_.size());
  net::ByteBuffer& wire = loop_->output(c.socket);
  const net::TlsSession::Status status = c.tls->read(ciphertext, tlsPlain_, wire);
  if (!wire.empty()) loop_->flush(c.socket);  // handshake records, alerts
  if (!wasDone && c.tls->handshakeDone()) {
    WorkerStats::add(core_.stats.tlsHandshakes, std::uint64_t{1});
    TERN_LOG_DEBUG("TLS from {}: {}{}", net::toString(c.peer), c.tls->describe(),
                   c.identity().empty() ? "" : ", certificate of " + c.identity());
  }
  if (status == net::TlsSession::Status::kFailed) {
    WorkerStats::add(core_.stats.tlsFailures, std::uint64_t{1});
    if (const std::uint64_t times = tlsFailureLog_.admit(common::monotonicNanos())) {
      TERN_LOG_WARN("closed {} TLS connection(s) (last from {}): {}", times, net::toString(c.peer),
                    c.tls->error());
    }
    closeAfterFlush(c);  // the alert, if OpenSSL made one
    return;
  }
  if (!tlsPlain_.empty() && !receivePlain(c, tlsPlain_.view())) return;  // handed over
  if (status == net::TlsSession::Status::kClosed && !c.closed) closeAfterFlush(c);
}

bool Worker::receivePlain(Connection& c, std::span<const char> bytes) {
  return c.ws != nullptr ? receiveWs(c, bytes) : handleReceived(c, bytes);
}

bool Worker::receiveWs(Connection& c, std::span<const char> bytes) {
  if (c.closed || c.closing) return true;
  Connection::WebSocket& ws = *c.ws;
  wsPayload_.clear();
  std::string_view input(bytes.data(), bytes.size());
  if (!ws.open) {
    // The request is kept whole until it is decided; past kWsRequestMax it is refused (431), so
    // no more than that is ever kept.
    const std::size_t take = std::min(input.size(), kWsRequestMax - ws.request.size());
    ws.request.append(input.substr(0, take));
    input.remove_prefix(take);
    const protocol::WsHandshakeOptions options{kWsRequestMax, config_.wsOrigins};
    const protocol::WsHandshake h = protocol::parseWsHandshake(ws.request, options);
    if (h.status == protocol::WsHandshake::Status::kIncomplete) return true;  // until the deadline
    belowWs(c).append(std::string_view(h.response));
    if (h.status == protocol::WsHandshake::Status::kRefused) {
      WorkerStats::add(core_.stats.wsRefused, std::uint64_t{1});
      if (const std::uint64_t times = wsRefusalLog_.admit(common::monotonicNanos())) {
        TERN_LOG_WARN("refused {} WebSocket upgrade(s) (last from {}): {}", times,
                      net::toString(c.peer), h.problem);
      }
      closeAfterFlush(c);  // the HTTP answer, then the close
      return true;
    }
    WorkerStats::add(core_.stats.wsHandshakes, std::uint64_t{1});
    ws.open = true;
    const std::string request = std::move(ws.request);
    ws.request = std::string();
    decodeWs(c, std::string_view(request).substr(h.consumed));  // frames sent right behind it
    send(c);
  }
  if (!input.empty()) decodeWs(c, input);
  if (!wsPayload_.empty() && !handleReceived(c, {wsPayload_.data(), wsPayload_.size()})) {
    return false;  // handed over
  }
  if (ws.stream.state() != protocol::WsStream::State::kOpen && !c.closed) closeAfterFlush(c);
  return true;
}

void Worker::decodeWs(Connection& c, std::string_view frames) {
  wsControl_.clear();
  c.ws->stream.receive(frames, wsPayload_, wsControl_);
  if (!wsControl_.empty()) {
    belowWs(c).append(wsControl_);
    send(c);
  }
}

void Worker::frameWs(Connection& c) {
  if (c.wsOut.empty() || !c.ws->open) return;
  char header[10];
  const std::size_t n = protocol::WsStream::writeHeader(c.wsOut.size(), header);
  net::ByteBuffer& below = belowWs(c);
  below.append({header, n});
  below.append(c.wsOut.view());
  c.wsOut.consume(c.wsOut.size());
}

void Worker::send(Connection& c) {
  if (c.tls == nullptr && c.ws == nullptr) {
    loop_->flush(c.socket);
  } else if (!c.sealQueued) {
    // Framed and encrypted once per turn, however many messages this turn wrote (sealPending).
    c.sealQueued = true;
    sealQueue_.push_back(&c);
  }
}

void Worker::sealNow(Connection& c) {
  if (c.ws != nullptr) frameWs(c);
  if (c.tls != nullptr && !c.tlsOut.empty()) {
    net::ByteBuffer& wire = loop_->output(c.socket);
    c.tls->write(c.tlsOut.view(), wire);  // a failed session writes nothing; its input ends it
    c.tlsOut.consume(c.tlsOut.size());
  }
  loop_->flush(c.socket);
}

void Worker::sealPending() {
  for (Connection* c : sealQueue_) {
    c->sealQueued = false;
    if (!c->closed) sealNow(*c);
  }
  sealQueue_.clear();
}

void Worker::decodeDetached(Connection& c, net::ByteBuffer& received) {
  if (c.tls == nullptr && c.ws == nullptr) {
    c.in.append(received.view());
    return;
  }
  std::string_view plain = received.view();
  if (c.tls != nullptr) {
    // What the session answers, if anything, follows the unsent output.
    tlsPlain_.consume(tlsPlain_.size());
    c.tls->read({plain.data(), plain.size()}, c.ws != nullptr ? tlsPlain_ : c.in, c.carried);
    if (c.ws == nullptr) return;
    plain = tlsPlain_.view();
  }
  // A connection moves only once bound (after its CONNECT), so its handshake is done.
  wsPayload_.clear();
  wsControl_.clear();
  c.ws->stream.receive(plain, wsPayload_, wsControl_);
  c.in.append(wsPayload_);
  if (wsControl_.empty()) return;
  if (c.tls != nullptr) {
    c.tls->write(wsControl_, c.carried);
  } else {
    c.carried.append(wsControl_);
  }
}

}  // namespace tern::broker
