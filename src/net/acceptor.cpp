#include "tern/net/acceptor.hpp"

#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <system_error>

#include "tern/common/clock.hpp"
#include "tern/common/log.hpp"
#include "tern/net/socket.hpp"

namespace tern::net {

Acceptor::Acceptor(std::vector<ListenSocket> listeners, Dispatch dispatch)
    : listeners_(std::move(listeners)), dispatch_(std::move(dispatch)) {}

Acceptor::~Acceptor() {
  stop();
}

void Acceptor::start(unsigned threads) {
  spareFd_.store(::open("/dev/null", O_RDONLY | O_CLOEXEC), std::memory_order_relaxed);
  stopFd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (stopFd_ < 0) throw std::system_error(errno, std::generic_category(), "eventfd");
  for (unsigned i = 0; i < threads; ++i)
    threads_.emplace_back([this] { run(); });
}

void Acceptor::stop() {
  if (stopFd_ >= 0) {
    const std::uint64_t one = 1;
    [[maybe_unused]] ssize_t n = ::write(stopFd_, &one, sizeof one);
  }
  for (std::thread& t : threads_)
    t.join();
  threads_.clear();
  for (ListenSocket& l : listeners_) {
    if (l.fd >= 0) ::close(l.fd);
    l.fd = -1;
  }
  if (stopFd_ >= 0) ::close(stopFd_);
  stopFd_ = -1;
  const int spare = spareFd_.exchange(-1, std::memory_order_relaxed);
  if (spare >= 0) ::close(spare);
}

bool Acceptor::shedOne(int listenFd) {
  const std::int64_t now = common::monotonicNanos();
  if (const std::uint64_t times = outOfDescriptors_.admit(now)) {
    TERN_LOG_WARN(
        "accept: out of file descriptors ({}); refused {} connection(s) by closing them "
        "(raise the open-file limit or lower --max-connections)",
        std::strerror(errno), times);
  }
  const int spare = spareFd_.exchange(-1, std::memory_order_relaxed);
  if (spare < 0) {
    // Another acceptor thread holds the spare, or it could not be taken back: let the backlog
    // wait a moment and try to retake it.
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    const int retaken = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (retaken >= 0) {
      const int other = spareFd_.exchange(retaken, std::memory_order_relaxed);
      if (other >= 0) ::close(other);
    }
    return false;
  }
  ::close(spare);
  const int fd = ::accept4(listenFd, nullptr, nullptr, SOCK_CLOEXEC);
  if (fd >= 0) {
    ::close(fd);
    shed_.fetch_add(1, std::memory_order_relaxed);
  }
  spareFd_.store(::open("/dev/null", O_RDONLY | O_CLOEXEC), std::memory_order_relaxed);
  return fd >= 0;
}

void Acceptor::run() {
  const int epoll = ::epoll_create1(EPOLL_CLOEXEC);
  if (epoll < 0) {
    TERN_LOG_ERROR("acceptor: epoll_create1 failed: {}", std::strerror(errno));
    return;
  }
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = ~std::uint64_t{0};
  ::epoll_ctl(epoll, EPOLL_CTL_ADD, stopFd_, &ev);
  for (std::size_t i = 0; i < listeners_.size(); ++i) {
    ev.events = EPOLLIN | EPOLLEXCLUSIVE;
    ev.data.u64 = i;
    ::epoll_ctl(epoll, EPOLL_CTL_ADD, listeners_[i].fd, &ev);
  }
  epoll_event events[8];
  bool stopping = false;
  while (!stopping) {
    const int n = ::epoll_wait(epoll, events, 8, -1);
    if (n < 0 && errno != EINTR) break;
    for (int k = 0; k < n; ++k) {
      if (events[k].data.u64 == ~std::uint64_t{0}) {
        stopping = true;
        break;
      }
      const ListenSocket& l = listeners_[events[k].data.u64];
      for (;;) {
        sockaddr_storage peer{};
        socklen_t length = sizeof peer;
        const int fd = ::accept4(l.fd, reinterpret_cast<sockaddr*>(&peer), &length,
                                 SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0) {
          setNoDelay(fd);
          accepted_.fetch_add(1, std::memory_order_relaxed);
          dispatch_(fd, l.kind, peerAddressOf(peer));
          continue;
        }
        if (errno == EINTR || errno == ECONNABORTED) continue;
        if (errno == EMFILE || errno == ENFILE) {
          if (shedOne(l.fd)) continue;
          break;
        }
        if (errno == ENOBUFS || errno == ENOMEM) {
          if (const std::uint64_t times = outOfDescriptors_.admit(common::monotonicNanos())) {
            TERN_LOG_WARN("accept: {} ({} time(s)); pausing accepts for 10 ms",
                          std::strerror(errno), times);
          }
          std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
        break;  // EAGAIN or a transient error: back to epoll
      }
    }
  }
  ::close(epoll);
}

}  // namespace tern::net
