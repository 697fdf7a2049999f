// EventLoop: backend choice, the parts both backends share (wake-up word, eventfd, shedding).
#include "tern/net/event_loop.hpp"

#include <fcntl.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <system_error>

#include "net/epoll_loop.hpp"
#include "net/uring_loop.hpp"
#include "tern/common/clock.hpp"
#include "tern/common/log.hpp"

namespace tern::net {

std::optional<IoChoice> parseIoChoice(std::string_view text) noexcept {
  if (text == "auto") return IoChoice::kAuto;
  if (text == "uring" || text == "io_uring") return IoChoice::kUring;
  if (text == "epoll") return IoChoice::kEpoll;
  return std::nullopt;
}

std::string_view name(IoBackend backend) noexcept {
  return backend == IoBackend::kUring ? "io_uring" : "epoll";
}

std::unique_ptr<EventLoop> EventLoop::create(const EventLoopOptions& options,
                                             EventLoopHandler& handler, std::string* why) {
  if (options.io != IoChoice::kEpoll) {
    std::string reason;
    std::unique_ptr<EventLoop> loop = UringLoop::tryCreate(options, handler, reason);
    if (loop) return loop;
    if (options.io == IoChoice::kUring) {
      if (why != nullptr) *why = "io_uring unavailable: " + reason;
      return nullptr;
    }
    if (why != nullptr) *why = "io_uring unavailable (" + reason + "), using epoll";
  }
  return std::make_unique<EpollLoop>(options, handler);
}

EventLoop::EventLoop() {
  wakeFd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (wakeFd_ < 0) throw std::system_error(errno, std::generic_category(), "eventfd");
  spareFd_ = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (spareFd_ < 0) {
    const int error = errno;
    ::close(wakeFd_);
    throw std::system_error(error, std::generic_category(), "open /dev/null");
  }
}

EventLoop::~EventLoop() {
  ::close(wakeFd_);
  if (spareFd_ >= 0) ::close(spareFd_);
}

void EventLoop::wake() noexcept {
  if (requestWake()) writeWakeFd();
}

void EventLoop::writeWakeFd() noexcept {
  const std::uint64_t one = 1;
  [[maybe_unused]] ssize_t n = ::write(wakeFd_, &one, sizeof one);
  wake_.writes.fetch_add(1, std::memory_order_relaxed);
}

bool EventLoop::prepareToSleep() noexcept {
  const std::uint32_t before = wake_.state.fetch_or(kSleeping, std::memory_order_acq_rel);
  if ((before & kRequested) == 0) return true;
  finishSleep();
  return false;
}

EventLoop::Shed EventLoop::shedPending(int listenFd, int error, std::uint64_t& syscalls) noexcept {
  if (const std::uint64_t times = outOfDescriptors_.admit(common::monotonicNanos())) {
    TERN_LOG_WARN(
        "accept: out of file descriptors ({}); refused {} connection(s) by closing them "
        "(raise the open-file limit or lower --max-connections)",
        std::strerror(error), times);
  }
  if (spareFd_ < 0 && !retakeSpare()) return Shed::kNoSpare;
  ::close(spareFd_);
  spareFd_ = -1;
  const int fd = ::accept4(listenFd, nullptr, nullptr, SOCK_CLOEXEC);
  syscalls += 3;  // close, accept4, open
  Shed result = Shed::kNothingPending;
  if (fd >= 0) {
    ::close(fd);
    ++syscalls;
    shed_.fetch_add(1, std::memory_order_relaxed);
    result = Shed::kShed;
  }
  retakeSpare();
  return result;
}

bool EventLoop::retakeSpare() noexcept {
  if (spareFd_ < 0) spareFd_ = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  return spareFd_ >= 0;
}

void EventLoop::logAcceptPause(int error) noexcept {
  if (const std::uint64_t times = outOfDescriptors_.admit(common::monotonicNanos())) {
    TERN_LOG_WARN("accept: {} ({} time(s)); pausing accepts for 10 ms", std::strerror(error),
                  times);
  }
}

}  // namespace tern::net
