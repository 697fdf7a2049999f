// UringLoop: the io_uring backend of net::EventLoop (see include/tern/net/event_loop.hpp for the
// contract). Private to net/; made by EventLoop::create(). Code: uring_loop.cpp (sockets and the
// turn), uring_ring.cpp (the ring, its buffers and wake-ups, listeners).
//
// Per loop: one ring (SUBMIT_ALL, CQ twice the SQ, plus the UringTaskRun flags), one
// provided-buffer ring (group 0) of receiveBuffers x receiveBufferBytes in memory of its own
// (mmap), and an IORING_OP_READ of the wake eventfd kept armed, so that an eventfd write by
// wake() ends the wait. wakeFrom() between two io_uring loops instead puts an IORING_OP_MSG_RING
// into the waker's own ring: it posts a completion into ours with the waker's next submit.
// Per socket: one multishot receive into the buffer ring (each completion's buffer goes back to
// the ring right after onReceive; a receive that ends, ENOBUFS included, is re-armed unless the
// socket is paused or done), at most one send in flight from the slot's `inflight` buffer (the
// output is swapped into it: no copy; partial sends resubmit the rest), and the connect while it
// lasts. Every operation carries (op, slot, generation) in its user_data.
//
// System calls: none per operation. runOnce() submits what the turn queued and waits in one
// io_uring_enter (io_uring_submit_and_wait_timeout); a turn that must not block submits with
// one enter only when something is queued (or, with COOP/DEFER_TASKRUN, when the kernel flags
// completion work).
//
// Slot lifetime: a slot counts its operations the kernel may still complete (the receive while
// armed, the send in flight, the connect). close() and detach() make the id stale at once (the
// generation moves on) and cancel the socket's operations (IORING_ASYNC_CANCEL_FD | ALL; close
// hard-links an IORING_OP_CLOSE after it, or closes at once when nothing is in flight); the slot
// is reused only when the count is zero, because the kernel may still read the in-flight buffer
// until then. Completions for a closing slot are dropped (their buffers recycled); for a
// detaching slot, received bytes are kept for onDetached() and a completed send consumes what it
// sent, so that `unsent` is exactly what the peer has not been given.
//
// Threads: all owner-thread, except what EventLoop says (wake(); wakeFrom() from the thread that
// owns `from`). With SINGLE_ISSUER (kCooperative, kDeferred) the ring starts disabled and the
// thread that first enters it (its owner's first runOnce(), normally) becomes its only submitter.
#pragma once

#include <liburing.h>

#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "net/socket_slots.hpp"
#include "tern/net/event_loop.hpp"
#include "tern/sync/thread_owner.hpp"

namespace tern::net {

class UringLoop final : public EventLoop {
 public:
  // Sets up the ring (flags per options.uringTaskRun, falling back to none), checks that the
  // kernel has every operation used here and registers the buffer ring. Null with `why` when
  // the kernel or a sandbox refuses. Start-up only.
  static std::unique_ptr<UringLoop> tryCreate(const EventLoopOptions& options,
                                              EventLoopHandler& handler, std::string& why);
  ~UringLoop() override;

  IoBackend backend() const noexcept override { return IoBackend::kUring; }
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
  void wakeFrom(EventLoop& from) noexcept override;
  Counters counters() const noexcept override;

 private:
  enum class Op : std::uint8_t {
    kIgnore,      // cancels, closes, MSG_RING sent: nothing to do (CQE only on failure)
    kRecv,        // multishot receive of a socket
    kSend,        // the socket's send in flight
    kConnect,     // the socket's connect
    kAccept,      // multishot accept of a listener (slot = listener index)
    kListenPoll,  // a listener waits for a connection after EMFILE found none pending
    kWakeRead,    // the eventfd read
    kWakeMsg,     // a MSG_RING from another loop's wakeFrom()
  };
  enum class State : std::uint8_t { kFree, kConnecting, kOpen, kClosing, kDetaching };

  struct Slot {
    int fd = -1;
    std::uint32_t generation = 1;  // of the current socket, or of the next one while not live
    State state = State::kFree;
    bool recvArmed = false;        // counted: the kernel may complete it
    bool sendInFlight = false;     // counted
    bool connectInFlight = false;  // counted
    bool paused = false;
    bool inputEnded = false;
    bool sendFailed = false;   // the peer is gone: output is dropped
    bool flushWanted = false;  // flush() since the output was last moved into `inflight`
    bool dirty = false;        // in dirty_
    bool wantDrained = false;
    SocketId id = 0;  // the live (or detaching) socket's id
    void* user = nullptr;
    ByteBuffer output;    // what the handler appends
    ByteBuffer inflight;  // what the kernel sends from; only touched while no send is in flight
    ByteBuffer received;  // detaching: what completed after detach()
    std::unique_ptr<sockaddr_storage> connectTo;  // while connecting: the kernel reads it
    bool busy() const noexcept { return recvArmed || sendInFlight || connectInFlight; }
  };

  struct Listener {
    int fd = -1;
    int tag = 0;
    std::uint32_t generation = 0;
    bool active = false;
    bool acceptArmed = false;
    bool pollArmed = false;
    std::int64_t retryAt = 0;  // nonzero: re-arm the accept at this monotonic time
  };

  UringLoop(const EventLoopOptions& options, EventLoopHandler& handler);
  bool setUp(std::string& why);

  static std::uint64_t tag(Op op, std::uint32_t slot, std::uint32_t generation) noexcept {
    return (std::uint64_t{static_cast<std::uint8_t>(op)} << 56) |
           (std::uint64_t{slot & kSlotMask} << 32) | generation;
  }
  SocketId newSlot(int fd, void* user, State state);

  // A free submission entry; submits the queue first when it is full.
  io_uring_sqe* nextSqe();
  // One io_uring_enter: submits what is queued, then waits for a completion (up to
  // `timeoutNanos`, < 0: no limit) when `wait`, else only reaps.
  void enter(bool wait, std::int64_t timeoutNanos);
  void submitPending();
  void armRecv(std::uint32_t index);
  void startSend(std::uint32_t index);
  void armAccept(std::uint32_t index);
  void armWakeRead();
  void recycle(std::uint16_t buffer) noexcept;
  void markDirty(std::uint32_t index);
  void flushDirty();
  void retryListeners(std::int64_t now);
  std::int64_t waitLimit(std::int64_t timeoutNanos, std::int64_t now) const noexcept;
  void dispatch();
  void handle(std::uint64_t data, std::int32_t res, std::uint32_t flags);
  void onRecv(std::uint32_t index, std::int32_t res, std::uint32_t flags);
  void onSend(std::uint32_t index, std::int32_t res);
  void onConnect(std::uint32_t index, std::int32_t res);
  void onAccept(std::uint32_t index, std::uint32_t generation, std::int32_t res,
                std::uint32_t flags);
  void endInput(Slot& s, int error);
  void maybeRearm(std::uint32_t index);
  // A closing/detaching slot's operations all completed: release it (and call onDetached) in
  // runSettled(), never from inside the call that got there.
  void settle(std::uint32_t index);
  void runSettled();
  void release(Slot& s, std::uint32_t index);
  bool ringTaskRunPending() const noexcept;

  const EventLoopOptions options_;
  EventLoopHandler& handler_;
  sync::ThreadOwner owner_;  // bound by the first runOnce()
  bool bound_ = false;
  io_uring ring_{};
  bool ringUp_ = false;
  bool disabled_ = false;     // set up with R_DISABLED (SINGLE_ISSUER): enabled at the first enter
  bool deferred_ = false;     // DEFER_TASKRUN: completions are posted only inside an enter
  bool taskRunFlag_ = false;  // the kernel flags pending completion work in the SQ flags
  io_uring_buf_ring* bufferRing_ = nullptr;
  std::size_t bufferRingBytes_ = 0;
  char* buffers_ = nullptr;
  std::size_t buffersBytes_ = 0;
  unsigned bufferMask_ = 0;
  std::uint64_t wakeValue_ = 0;  // the eventfd read's target

  SocketSlots<Slot> slots_;           // released only once no operation is left (settle())
  std::vector<std::uint32_t> dirty_;  // slots with flush()/notifyWhenDrained() pending
  std::vector<std::uint32_t> flushing_;
  std::vector<std::uint32_t> settled_;  // see settle()
  std::deque<Listener> listeners_;
  std::vector<int> unsubmittedCloses_;  // descriptors of IORING_OP_CLOSEs not yet submitted
  Counters counters_;
};

}  // namespace tern::net
