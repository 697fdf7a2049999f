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
}

void SessionSocket::send(net::EventLoop& loop, std::string_view bytes) {
  loop.output(id).append(bytes);
  loop.flush(id);
}

std::string openSessionSocket(SessionSocket& socket, const SessionConfig& config,
                              net::EventLoop& loop, unsigned slot) {
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
  return {};
}

}  // namespace tern::loadgen
