#include "net/epoll_loop.hpp"

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <system_error>

#include "tern/common/clock.hpp"
#include "tern/common/log.hpp"
#include "tern/net/socket.hpp"

namespace tern::net {
namespace {

// Reads per ready socket per turn: then the other ready sockets get their turn (level-triggered
// epoll reports the socket again).
constexpr int kMaxReads = 4;
// Accepts per ready listener per turn, for the same reason.
constexpr int kMaxAccepts = 64;
// A drained output buffer keeps this much capacity.
constexpr std::size_t kIdleBufferKeep = 64 * 1024;
constexpr int kFlushPasses = 4;

void cpuRelax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

}  // namespace

EpollLoop::EpollLoop(const EventLoopOptions& options, EventLoopHandler& handler)
    : options_(options),
      handler_(handler),
      readBytes_(options.receiveBufferBytes == 0 ? 16384 : options.receiveBufferBytes),
      readBuffer_(new char[readBytes_]) {
  epoll_ = ::epoll_create1(EPOLL_CLOEXEC);
  if (epoll_ < 0) throw std::system_error(errno, std::generic_category(), "epoll_create1");
  control(EPOLL_CTL_ADD, wakeFd(), EPOLLIN, tag(Kind::kWake, 0, 0));
}

EpollLoop::~EpollLoop() {
  for (Slot& s : slots_) {
    if (s.state != State::kFree && s.fd >= 0) ::close(s.fd);
  }
  ::close(epoll_);
}

void EpollLoop::control(int op, int fd, std::uint32_t events, std::uint64_t data) {
  epoll_event ev{};
  ev.events = events;
  ev.data.u64 = data;
  if (::epoll_ctl(epoll_, op, fd, &ev) != 0) {
    TERN_LOG_ERROR("epoll_ctl on fd {} failed: {}", fd, std::strerror(errno));
  }
  ++counters_.submits;
  ++counters_.syscalls;
}

// ---------------------------------------------------------------------------------------------
// Sockets

SocketId EpollLoop::newSlot(int fd, void* user, State state) {
  TERN_ASSERT_OWNER(owner_);
  return slots_.claim(fd, user, state, [this](Slot& fresh) {
    fresh.output.setAccount(options_.account);
    fresh.output.setGrowthLimit(options_.outputGrowthLimit);
  });
}

void EpollLoop::release(std::uint32_t index) {
  Slot& s = slots_[index];
  slots_.makeStale(s);
  s.registered = s.paused = s.inputEnded = s.sendBlocked = s.sendFailed = false;
  s.flushWanted = s.wantDrained = s.connectDone = false;
  s.connectError = 0;
  s.events = 0;
  s.output.consume(s.output.size());
  s.output.releaseIfIdle(0);
  slots_.release(index);
}

SocketId EpollLoop::add(int fd, void* user, ByteBuffer* unsent) {
  const SocketId id = newSlot(fd, user, State::kOpen);
  const std::uint32_t index = slotOf(id);
  Slot& s = slots_[index];
  if (unsent != nullptr && !unsent->empty()) {
    s.output.takeFrom(*unsent);
    s.flushWanted = true;
    markDirty(index);
  }
  updateInterest(index);
  return id;
}

SocketId EpollLoop::connect(int fd, void* user, const sockaddr* address, socklen_t length) {
  const SocketId id = newSlot(fd, user, State::kConnecting);
  const std::uint32_t index = slotOf(id);
  Slot& s = slots_[index];
  ++counters_.syscalls;
  const int r = ::connect(fd, address, length);
  if (r == 0 || errno != EINPROGRESS) {
    s.connectDone = true;  // reported by the next runOnce, never from here
    s.connectError = r == 0 ? 0 : errno;
    pending_.push_back({index, s.generation});
  }
  updateInterest(index);
  return id;
}

void EpollLoop::finishConnect(std::uint32_t index, int error) {
  Slot& s = slots_[index];
  s.connectDone = true;
  if (error == 0) s.state = State::kOpen;
  updateInterest(index);  // EPOLLIN when connected; nothing after a failure
  const SocketId id = s.id;
  handler_.onConnected(id, s.user, error);
  if (error == 0 && s.id == id && s.state == State::kOpen && (s.flushWanted || s.wantDrained))
    markDirty(index);
}

void EpollLoop::runPending() {
  for (std::size_t k = 0; k < pending_.size(); ++k) {  // callbacks may append
    const auto [index, generation] = pending_[k];
    Slot& s = slots_[index];
    if (s.generation != generation) continue;  // closed meanwhile
    if (s.state == State::kDetaching) {
      ByteBuffer received;  // always empty: unread input stays in the socket
      handler_.onDetached(s.id, s.user, s.fd, s.output, received);
      release(index);
    } else if (s.state == State::kConnecting && s.connectDone) {
      finishConnect(index, s.connectError);
    }
  }
  pending_.clear();
}

void* EpollLoop::user(SocketId id) const noexcept {
  return slots_.user(id);
}

void EpollLoop::pauseReceive(SocketId id) {
  Slot* s = slots_.live(id);
  if (s == nullptr || s->paused) return;
  s->paused = true;
  updateInterest(slotOf(id));
}

void EpollLoop::resumeReceive(SocketId id) {
  Slot* s = slots_.live(id);
  if (s == nullptr || !s->paused) return;
  s->paused = false;
  updateInterest(slotOf(id));  // level-triggered: what is waiting shows up in the next wait
}

ByteBuffer& EpollLoop::output(SocketId id) noexcept {
  return slots_[slotOf(id)].output;
}

void EpollLoop::flush(SocketId id) {
  Slot* s = slots_.live(id);
  if (s == nullptr) return;
  s->flushWanted = true;
  markDirty(slotOf(id));
}

std::size_t EpollLoop::unsentBytes(SocketId id) const noexcept {
  const Slot* s = slots_.live(id);
  return s != nullptr ? s->output.size() : 0;
}

void EpollLoop::releaseIdleBuffers(SocketId id) noexcept {
  if (Slot* s = slots_.live(id)) s->output.releaseIfIdle(0);
}

void EpollLoop::notifyWhenDrained(SocketId id) {
  Slot* s = slots_.live(id);
  if (s == nullptr) return;
  s->wantDrained = true;
  markDirty(slotOf(id));
}

void EpollLoop::close(SocketId id) {
  Slot* s = slots_.live(id);
  if (s == nullptr) return;
  if (s->registered) control(EPOLL_CTL_DEL, s->fd, 0, 0);
  ::close(s->fd);
  ++counters_.syscalls;
  release(slotOf(id));
}

void EpollLoop::detach(SocketId id) {
  Slot* s = slots_.live(id);
  if (s == nullptr) return;
  if (s->registered) control(EPOLL_CTL_DEL, s->fd, 0, 0);
  s->registered = false;
  s->state = State::kDetaching;
  slots_.makeStale(*s);  // stale at once; release() moves it on again
  pending_.push_back({slotOf(id), s->generation});
}

void EpollLoop::updateInterest(std::uint32_t index) {
  Slot& s = slots_[index];
  std::uint32_t want = 0;
  if (s.state == State::kConnecting) {
    if (!s.connectDone) want = EPOLLOUT;
  } else if (s.state == State::kOpen) {
    if (!s.paused && !s.inputEnded) want |= EPOLLIN;
    if (s.sendBlocked) want |= EPOLLOUT;
  }
  if (want == 0) {
    if (s.registered) control(EPOLL_CTL_DEL, s.fd, 0, 0);
    s.registered = false;
    s.events = 0;
    return;
  }
  if (s.registered && want == s.events) return;
  control(s.registered ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, s.fd, want,
          tag(Kind::kSocket, index, s.generation));
  s.registered = true;
  s.events = want;
}

// ---------------------------------------------------------------------------------------------
// Output

void EpollLoop::markDirty(std::uint32_t index) {
  Slot& s = slots_[index];
  if (s.dirty) return;
  s.dirty = true;
  dirty_.push_back(index);
}

void EpollLoop::flushDirty() {
  for (int pass = 0; pass < kFlushPasses && !dirty_.empty(); ++pass) {
    flushing_.swap(dirty_);
    for (const std::uint32_t index : flushing_) {
      Slot& s = slots_[index];
      s.dirty = false;
      if (s.state != State::kOpen || s.sendBlocked) continue;  // EPOLLOUT marks it again
      if (s.sendFailed) {
        s.output.consume(s.output.size());
        s.flushWanted = false;
      }
      if (s.flushWanted && !s.output.empty()) {
        sendNow(index);
      } else if (s.wantDrained && s.output.empty()) {
        s.wantDrained = false;
        handler_.onDrained(s.id, s.user);
      }
    }
    flushing_.clear();
  }
}

void EpollLoop::sendNow(std::uint32_t index) {
  Slot& s = slots_[index];
  s.flushWanted = false;
  ssize_t n;
  do {
    const std::string_view bytes = s.output.view();
    n = ::send(s.fd, bytes.data(), bytes.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    ++counters_.sends;
    ++counters_.syscalls;
  } while (n < 0 && errno == EINTR);
  if (n > 0) {
    s.output.consume(static_cast<std::size_t>(n));
    counters_.bytesSent += static_cast<std::uint64_t>(n);
  }
  if (n >= 0 || errno == EAGAIN || errno == EWOULDBLOCK) {
    // A partial send means the socket buffer is full: EPOLLOUT says when there is room.
    s.sendBlocked = !s.output.empty();
    updateInterest(index);  // EPOLLOUT on or off; no system call when it does not change
    if (s.sendBlocked) return;
    s.output.releaseIfIdle(kIdleBufferKeep);
    if (s.wantDrained) {
      s.wantDrained = false;
      handler_.onDrained(s.id, s.user);
    }
    return;
  }
  // The peer is gone (EPIPE, ECONNRESET): nothing queued can be delivered. The receive side
  // reports the end of the connection.
  s.sendFailed = true;
  s.output.consume(s.output.size());
  s.sendBlocked = false;
  updateInterest(index);
  if (s.wantDrained) {
    s.wantDrained = false;
    handler_.onDrained(s.id, s.user);  // nothing will ever be sent: the wait is over
  }
}

// ---------------------------------------------------------------------------------------------
// Input

void EpollLoop::readFrom(std::uint32_t index) {
  const std::size_t size = readBytes_;
  for (int i = 0; i < kMaxReads; ++i) {
    Slot& s = slots_[index];
    const ssize_t n = ::read(s.fd, readBuffer_.get(), size);
    ++counters_.reads;
    ++counters_.syscalls;
    if (n > 0) {
      const SocketId id = s.id;
      handler_.onReceive(id, s.user, {readBuffer_.get(), static_cast<std::size_t>(n)});
      if (!pending_.empty()) runPending();
      if (static_cast<std::size_t>(n) < size) return;  // drained: the next read would fail
      if (s.id != id || s.state != State::kOpen || s.paused || s.inputEnded) return;
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    endInput(index, n == 0 ? 0 : errno);
    return;
  }
}

void EpollLoop::endInput(std::uint32_t index, int error) {
  Slot& s = slots_[index];
  if (s.inputEnded) return;
  s.inputEnded = true;
  updateInterest(index);
  handler_.onInputEnd(s.id, s.user, error);
  if (!pending_.empty()) runPending();
}

// ---------------------------------------------------------------------------------------------
// Listeners

void EpollLoop::addListener(int fd, int listenerTag) {
  std::uint32_t index = 0;
  while (index < listeners_.size() && listeners_[index].active)
    ++index;
  if (index == listeners_.size()) listeners_.emplace_back();
  Listener& l = listeners_[index];
  l.fd = fd;
  l.tag = listenerTag;
  ++l.generation;
  l.active = true;
  l.retryAt = 0;
  // EPOLLEXCLUSIVE: loops that share a listener are not all woken by one connection.
  control(EPOLL_CTL_ADD, fd, EPOLLIN | EPOLLEXCLUSIVE, tag(Kind::kListener, index, l.generation));
  l.registered = true;
}

void EpollLoop::removeListener(int fd) {
  for (Listener& l : listeners_) {
    if (!l.active || l.fd != fd) continue;
    if (l.registered) control(EPOLL_CTL_DEL, fd, 0, 0);
    l.registered = false;
    l.active = false;
    l.retryAt = 0;
  }
}

void EpollLoop::pauseListener(Listener& l) {
  if (l.registered) control(EPOLL_CTL_DEL, l.fd, 0, 0);
  l.registered = false;
  l.retryAt = common::monotonicNanos() + kAcceptRetryNanos;
}

void EpollLoop::retryListeners(std::int64_t now) {
  for (std::uint32_t index = 0; index < listeners_.size(); ++index) {
    Listener& l = listeners_[index];
    if (l.retryAt == 0 || now < l.retryAt) continue;
    l.retryAt = 0;
    if (!l.active) continue;
    if (!retakeSpare()) {
      l.retryAt = now + kAcceptRetryNanos;
      continue;
    }
    control(EPOLL_CTL_ADD, l.fd, EPOLLIN | EPOLLEXCLUSIVE,
            tag(Kind::kListener, index, l.generation));
    l.registered = true;
  }
}

void EpollLoop::acceptFrom(std::uint32_t index) {
  Listener& l = listeners_[index];
  const std::uint32_t generation = l.generation;
  for (int i = 0; i < kMaxAccepts && l.active && l.generation == generation; ++i) {
    sockaddr_storage peer{};
    socklen_t length = sizeof peer;
    const int fd =
        ::accept4(l.fd, reinterpret_cast<sockaddr*>(&peer), &length, SOCK_NONBLOCK | SOCK_CLOEXEC);
    ++counters_.syscalls;
    if (fd >= 0) {
      setNoDelay(fd);
      ++counters_.syscalls;
      handler_.onAccept(l.tag, fd, peer);
      if (!pending_.empty()) runPending();
      continue;
    }
    if (errno == EINTR || errno == ECONNABORTED) continue;
    if (errno == EMFILE || errno == ENFILE) {
      const Shed shed = shedPending(l.fd, errno, counters_.syscalls);
      if (shed == Shed::kShed) continue;
      if (shed == Shed::kNoSpare) pauseListener(l);
      return;
    }
    if (errno != EAGAIN && errno != EWOULDBLOCK) {
      // ENOBUFS, ENOMEM, or a listener that cannot accept: try again later, not every turn.
      logAcceptPause(errno);
      pauseListener(l);
    }
    return;  // EAGAIN: back to epoll
  }
}

// ---------------------------------------------------------------------------------------------
// The turn

int EpollLoop::wait(std::int64_t timeoutNanos) {
  ++counters_.waits;
  ++counters_.syscalls;
  if (timeoutNanos <= 0)
    return ::epoll_wait(epoll_, events_, kMaxEvents, timeoutNanos < 0 ? -1 : 0);
  timespec ts{};
  ts.tv_sec = timeoutNanos / 1'000'000'000;
  ts.tv_nsec = timeoutNanos % 1'000'000'000;
  const int n = ::epoll_pwait2(epoll_, events_, kMaxEvents, &ts, nullptr);
  if (n >= 0 || errno != ENOSYS) return n;
  // A kernel before 5.11: milliseconds, rounded up so that a deadline is never missed early.
  return ::epoll_wait(
      epoll_, events_, kMaxEvents,
      static_cast<int>(std::min<std::int64_t>(timeoutNanos / 1'000'000 + 1, 1'000'000'000)));
}

void EpollLoop::runOnce(std::int64_t timeoutNanos) {
  if (!bound_) {
    owner_.bind();
    bound_ = true;
  }
  TERN_ASSERT_OWNER(owner_);
  if (!pending_.empty()) runPending();
  const std::int64_t start = common::monotonicNanos();
  retryListeners(start);
  flushDirty();  // the turn's sends, right before its wait
  bool block = timeoutNanos != 0 && dirty_.empty() && pending_.empty() && !wakePending();
  if (block && options_.spinNanos > 0) {
    // Without a system call only the handler and wake() can be watched.
    const std::int64_t spin =
        timeoutNanos < 0 ? options_.spinNanos : std::min(options_.spinNanos, timeoutNanos);
    while (common::monotonicNanos() - start < spin) {
      if (wakePending() || handler_.hasPendingWork()) {
        block = false;
        break;
      }
      cpuRelax();
    }
  }
  int ready = 0;
  bool waited = false;
  if (block && handler_.beforeBlock()) {
    if (prepareToSleep()) {
      const std::int64_t now = common::monotonicNanos();
      std::int64_t left =
          timeoutNanos < 0 ? -1 : std::max<std::int64_t>(0, start + timeoutNanos - now);
      for (const Listener& l : listeners_) {
        if (l.retryAt == 0) continue;
        const std::int64_t until = std::max<std::int64_t>(0, l.retryAt - now);
        if (left < 0 || until < left) left = until;
      }
      ready = wait(left);
      waited = true;
      finishSleep();
    }
    handler_.afterBlock();
  }
  if (!waited) ready = wait(0);
  if (ready < 0 && errno != EINTR) {
    TERN_LOG_ERROR("epoll_wait failed: {}", std::strerror(errno));
  }
  dispatch(ready);  // nothing when it failed
  if (!pending_.empty()) runPending();
  if (takeWake()) handler_.onWake();
}

void EpollLoop::dispatch(int ready) {
  for (int k = 0; k < ready; ++k) {
    const std::uint64_t data = events_[k].data.u64;
    const std::uint32_t got = events_[k].events;
    const auto kind = static_cast<Kind>(data >> 56);
    const auto index = static_cast<std::uint32_t>(data >> 32) & kSlotMask;
    const auto generation = static_cast<std::uint32_t>(data);
    if (kind == Kind::kWake) {
      std::uint64_t value = 0;
      [[maybe_unused]] ssize_t n = ::read(wakeFd(), &value, sizeof value);
      ++counters_.syscalls;
      continue;
    }
    if (kind == Kind::kListener) {
      const Listener& l = listeners_[index];
      if (l.active && l.generation == generation) acceptFrom(index);
      continue;
    }
    Slot& s = slots_[index];
    if (s.generation != generation) continue;  // closed (and maybe reused) earlier this turn
    if (s.state == State::kConnecting) {
      if (s.connectDone) continue;
      int error = 0;
      socklen_t length = sizeof error;
      ::getsockopt(s.fd, SOL_SOCKET, SO_ERROR, &error, &length);
      ++counters_.syscalls;
      finishConnect(index, error);
      if (!pending_.empty()) runPending();
      continue;
    }
    if (s.state != State::kOpen) continue;
    if (s.sendBlocked && (got & (EPOLLOUT | EPOLLHUP | EPOLLERR)) != 0) {
      // Sent (or failed) by the next flush, right before the next wait; EPOLLOUT stays armed
      // until then (that flush drops it if everything went).
      s.sendBlocked = false;
      s.flushWanted = true;
      markDirty(index);
    }
    if ((s.events & EPOLLIN) != 0 && (got & (EPOLLIN | EPOLLHUP | EPOLLERR)) != 0) {
      readFrom(index);  // a hang-up or an error shows up as a read of 0 or -1
    }
  }
}

EventLoop::Counters EpollLoop::counters() const noexcept {
  Counters c = counters_;
  c.wakeWrites = wakeWrites();
  return c;
}

}  // namespace tern::net
