#include "tern/net/acceptor.hpp"

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <system_error>

#include "tern/common/log.hpp"
#include "tern/net/socket.hpp"

namespace tern::net {

Acceptor::Acceptor(std::vector<ListenSocket> listeners, Dispatch dispatch)
    : listeners_(std::move(listeners)), dispatch_(std::move(dispatch)) {}

Acceptor::~Acceptor() {
  stop();
}

void Acceptor::start(unsigned threads) {
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
        const int fd = ::accept4(l.fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0) {
          setNoDelay(fd);
          accepted_.fetch_add(1, std::memory_order_relaxed);
          dispatch_(fd, l.kind);
          continue;
        }
        if (errno == EINTR || errno == ECONNABORTED) continue;
        if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
          TERN_LOG_WARN("accept: {} (raise the open-file limit); pausing accepts for 100 ms",
                        std::strerror(errno));
          std::this_thread::sleep_for(std::chrono::milliseconds(100));
        }
        break;  // EAGAIN or a transient error: back to epoll
      }
    }
  }
  ::close(epoll);
}

}  // namespace tern::net
