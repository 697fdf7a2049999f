// EpollLoop: the epoll backend of net::EventLoop (see include/tern/net/event_loop.hpp for the
// contract), the fallback where io_uring is refused. Private to net/; made by EventLoop::create().
//
// Level-triggered readiness. A socket is in the epoll set only while it wants something:
// EPOLLIN while it receives (not paused, input not ended), EPOLLOUT only while a send could not
// hand everything to the kernel; wanting nothing, it is removed (so a hung-up socket that is
// paused cannot make epoll_wait return every turn). Pausing is EPOLL_CTL_MOD/DEL, never a sleep.
//
// System calls: per ready socket up to kMaxReads read(2)s into the loop's one buffer, and none
// after a short read (the socket is drained: the next read would return EAGAIN); per flushed
// socket one send(2) at the start of the next runOnce(), and a partial send waits for EPOLLOUT
// instead of trying again; the wake eventfd is read only when its event fired; epoll_ctl only when
// a socket's interest changes.
//
// Threads: all owner-thread, except what EventLoop says (wake()).
#pragma once

#include <sys/epoll.h>

#include <cstdint>
#include <deque>
#include <memory>
#include <vector>

#include "net/socket_slots.hpp"
#include "tern/net/event_loop.hpp"
#include "tern/sync/thread_owner.hpp"

namespace tern::net {

class EpollLoop final : public EventLoop {
 public:
  // Throws std::system_error when epoll_create1 fails (start-up).
  EpollLoop(const EventLoopOptions& options, EventLoopHandler& handler);
  ~EpollLoop() override;

  IoBackend backend() const noexcept override { return IoBackend::kEpoll; }
  SocketId add(int fd, void* user, ByteBuffer* unsent) override;
  SocketId connect(int fd, void* user, const sockaddr* address, socklen_t length) override;
  void addListener(int fd, int listenerTag) override;
  void removeListener(int fd) override;
  void* user(SocketId id) const noexcept override;
  void pauseReceive(SocketId id) override;
  void resumeReceive(SocketId id) override;
  ByteBuffer& output(SocketId id) noexcept override;
  void flush(SocketId id) override;
  std::size_t unsentBytes(SocketId id) const noexcept override;
  void notifyWhenDrained(SocketId id) override;
  void releaseIdleBuffers(SocketId id) noexcept override;
  void close(SocketId id) override;
  void detach(SocketId id) override;
  void runOnce(std::int64_t timeoutNanos) override;
  void wakeFrom(EventLoop& /*from*/) noexcept override { wake(); }
  Counters counters() const noexcept override;

 private:
  enum class Kind : std::uint8_t { kSocket, kListener, kWake };
  enum class State : std::uint8_t { kFree, kConnecting, kOpen, kDetaching };

  struct Slot {
    int fd = -1;
    std::uint32_t generation = 1;  // of the current socket, or of the next one while free
    State state = State::kFree;
    bool registered = false;  // in the epoll set, with `events`
    bool paused = false;
    bool inputEnded = false;
    bool sendBlocked = false;  // waiting for EPOLLOUT
    bool sendFailed = false;   // the peer is gone: output is dropped
    bool flushWanted = false;
    bool dirty = false;  // in dirty_
    bool wantDrained = false;
    bool connectDone = false;  // connecting: the result is known, onConnected is due
    int connectError = 0;
    std::uint32_t events = 0;
    SocketId id = 0;
    void* user = nullptr;
    ByteBuffer output;
  };

  struct Listener {
    int fd = -1;
    int tag = 0;
    std::uint32_t generation = 0;
    bool active = false;
    bool registered = false;
    std::int64_t retryAt = 0;  // nonzero: back in the epoll set at this monotonic time
  };

  static std::uint64_t tag(Kind kind, std::uint32_t index, std::uint32_t generation) noexcept {
    return (std::uint64_t{static_cast<std::uint8_t>(kind)} << 56) |
           (std::uint64_t{index & kSlotMask} << 32) | generation;
  }
  SocketId newSlot(int fd, void* user, State state);
  // Closed or handed over: the id goes stale and the slot is free for the next socket.
  void release(std::uint32_t index);
  // Makes the epoll registration match what the socket wants (see the header comment).
  void updateInterest(std::uint32_t index);
  void control(int op, int fd, std::uint32_t events, std::uint64_t data);
  void markDirty(std::uint32_t index);
  void flushDirty();
  void sendNow(std::uint32_t index);
  void readFrom(std::uint32_t index);
  void endInput(std::uint32_t index, int error);
  void finishConnect(std::uint32_t index, int error);
  void runPending();  // onConnected and onDetached that are due
  void acceptFrom(std::uint32_t index);
  void pauseListener(Listener& l);
  void retryListeners(std::int64_t now);
  int wait(std::int64_t timeoutNanos);
  void dispatch(int ready);

  static constexpr int kMaxEvents = 256;

  const EventLoopOptions options_;
  EventLoopHandler& handler_;
  sync::ThreadOwner owner_;  // bound by the first runOnce()
  bool bound_ = false;
  int epoll_ = -1;
  const std::size_t readBytes_;
  std::unique_ptr<char[]> readBuffer_;
  SocketSlots<Slot> slots_;
  std::vector<std::uint32_t> dirty_;
  std::vector<std::uint32_t> flushing_;
  struct Pending {
    std::uint32_t index;
    std::uint32_t generation;  // a closed (or reused) slot's entry is stale
  };
  std::vector<Pending> pending_;  // connects with a known result, detaching slots
  std::deque<Listener> listeners_;
  epoll_event events_[kMaxEvents];
  Counters counters_;
};

}  // namespace tern::net
