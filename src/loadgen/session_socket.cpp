#include "session_socket.hpp"

#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace tern::loadgen {

void SessionSocket::close() noexcept {
  if (fd >= 0) ::close(fd);
  fd = -1;
  connecting = false;
  out.clear();
}

std::string openSessionSocket(SessionSocket& socket, const SessionConfig& config, SessionHost& host,
                              unsigned slot) {
  const int fd = ::socket(config.broker.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return std::strerror(errno);
  socket.fd = fd;
  const int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (config.sourceLength != 0) {
    // Let connect() pick the port per destination, so that source addresses multiply the
    // ephemeral ports available instead of each bind() reserving one for every destination.
    ::setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
    if (::bind(fd, reinterpret_cast<const sockaddr*>(&config.source), config.sourceLength) != 0) {
      return std::strerror(errno);
    }
  }
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&config.broker), config.brokerLength) != 0) {
    if (errno != EINPROGRESS) return std::strerror(errno);
    socket.connecting = true;
  }
  socket.watchingWrite = socket.connecting;
  if (!host.watch(config.client, slot, fd, socket.watchingWrite)) {
    return std::string("epoll_ctl: ") + std::strerror(errno);
  }
  return {};
}

std::string finishConnect(SessionSocket& socket, std::uint32_t events, bool& done) {
  done = false;
  if ((events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) == 0) return {};
  done = true;
  int error = 0;
  socklen_t length = sizeof error;
  ::getsockopt(socket.fd, SOL_SOCKET, SO_ERROR, &error, &length);
  if (error != 0) return std::strerror(error);
  socket.connecting = false;
  return {};
}

std::string flushSessionSocket(SessionSocket& socket, SessionHost& host, std::uint32_t client,
                               unsigned slot, bool* sent) {
  while (!socket.out.empty()) {
    const ssize_t written =
        ::send(socket.fd, socket.out.data(), socket.out.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    if (written > 0) {
      socket.out.consume(static_cast<std::size_t>(written));
      if (sent != nullptr) *sent = true;
      continue;
    }
    if (written < 0 && errno == EINTR) continue;
    if (written < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    return written < 0 ? std::strerror(errno) : "send returned 0";
  }
  const bool wantWrite = !socket.out.empty();
  if (wantWrite != socket.watchingWrite) {
    socket.watchingWrite = wantWrite;
    host.rewatch(client, slot, socket.fd, wantWrite);
  }
  return {};
}

ReadStatus readSessionSocket(SessionSocket& socket, std::span<char> buffer, std::string_view& data,
                             int& error) noexcept {
  // A partial frame from the previous read goes first, so frames are parsed in one piece.
  const std::size_t carried = socket.partial.size();
  if (carried >= buffer.size()) return ReadStatus::kTooLong;
  std::memcpy(buffer.data(), socket.partial.data(), carried);
  ssize_t received;
  do {
    received = ::recv(socket.fd, buffer.data() + carried, buffer.size() - carried, MSG_DONTWAIT);
  } while (received < 0 && errno == EINTR);
  if (received == 0) return ReadStatus::kClosed;
  if (received < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK) return ReadStatus::kWouldBlock;
    error = errno;
    return ReadStatus::kError;
  }
  data = std::string_view(buffer.data(), carried + static_cast<std::size_t>(received));
  return ReadStatus::kData;
}

}  // namespace tern::loadgen
