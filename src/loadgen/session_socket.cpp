#include "session_socket.hpp"

#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

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
}

bool SessionSocket::seal(net::EventLoop& loop) noexcept {
  sealAsked = false;
  if (!tls || id == 0 || plainOut.empty()) return true;
  const net::TlsSession::Status status = tls->write(plainOut.view(), loop.output(id));
  plainOut.consume(plainOut.size());
  loop.flush(id);
  return status != net::TlsSession::Status::kFailed;
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
