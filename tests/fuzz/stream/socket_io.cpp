// Loopback socket helpers. See socket_io.hpp.
#include "socket_io.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

namespace tern::fuzz {

namespace {

// Milliseconds left until `deadline` for poll(): 0 once it has passed, rounded up otherwise.
int millisLeft(Clock::time_point deadline) {
  const auto left = deadline - Clock::now();
  if (left <= Clock::duration::zero()) return 0;
  return static_cast<int>(std::chrono::ceil<Millis>(left).count());
}

// poll() for `events` until `deadline`; true when ready (or in error, which the next call sees).
bool waitFor(int fd, short events, Clock::time_point deadline) {
  for (;;) {
    pollfd p{fd, events, 0};
    const int r = ::poll(&p, 1, millisLeft(deadline));
    if (r > 0) return true;
    if (r == 0) return false;
    if (errno != EINTR) return true;
  }
}

}  // namespace

int connectLoopback(std::uint16_t port, Clock::time_point deadline) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return -1;
  const int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0) return fd;
  if (errno == EINPROGRESS && waitFor(fd, POLLOUT, deadline)) {
    int error = 0;
    socklen_t length = sizeof error;
    if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length) == 0 && error == 0) {
      pollfd p{fd, POLLOUT, 0};
      if (::poll(&p, 1, 0) == 1 && (p.revents & POLLOUT) != 0) return fd;
      error = ETIMEDOUT;
    }
    errno = error;
  } else if (errno == EINPROGRESS) {
    errno = ETIMEDOUT;
  }
  const int saved = errno;
  ::close(fd);
  errno = saved;
  return -1;
}

std::size_t sendAll(int fd, std::string_view bytes, Clock::time_point deadline, bool& failed) {
  std::size_t sent = 0;
  failed = false;
  while (sent < bytes.size()) {
    const ssize_t n = ::send(fd, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
    if (n > 0) {
      sent += static_cast<std::size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      if (Clock::now() >= deadline || !waitFor(fd, POLLOUT, deadline)) return sent;
      continue;
    }
    failed = true;
    return sent;
  }
  return sent;
}

ReadStatus readAvailable(int fd, std::string& into, Clock::time_point deadline, std::size_t cap) {
  if (!waitFor(fd, POLLIN, deadline)) return ReadStatus::kTimeout;
  std::size_t got = 0;
  char chunk[16384];
  while (got < cap) {
    const ssize_t n = ::read(fd, chunk, std::min(sizeof chunk, cap - got));
    if (n > 0) {
      into.append(chunk, static_cast<std::size_t>(n));
      got += static_cast<std::size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    return ReadStatus::kClosed;  // EOF, or ECONNRESET and friends
  }
  return got > 0 ? ReadStatus::kData : ReadStatus::kTimeout;
}

void closeWithReset(int fd) noexcept {
  const linger abortive{1, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &abortive, sizeof abortive);
  ::close(fd);
}

void Socket::reset(int fd) noexcept {
  if (fd_ >= 0) ::close(fd_);
  fd_ = fd;
}

bool LineReader::next(std::string& line, Clock::time_point deadline) {
  for (;;) {
    const std::size_t lf = buffer_.find('\n');
    if (lf != std::string::npos) {
      line.assign(buffer_, 0, lf);
      buffer_.erase(0, lf + 1);
      if (!line.empty() && line.back() == '\r') line.pop_back();
      return true;
    }
    if (closed_ || Clock::now() >= deadline) return false;
    if (readAvailable(fd_, buffer_, deadline, 1 << 20) == ReadStatus::kClosed) closed_ = true;
  }
}

}  // namespace tern::fuzz
