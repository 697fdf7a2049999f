// EventLoop: one thread's sockets, their input and output, its wake-ups and its wait, behind one
// interface with two backends (issue 10):
//   - io_uring (liburing; the default where the kernel allows it): a multishot receive per socket
//     into a ring of provided buffers, sends submitted in one batch per turn (one send in flight
//     per socket; what is written meanwhile goes into the next), multishot accept for listeners,
//     and one io_uring_enter per turn that both submits and waits. Wake-ups from another loop's
//     thread are IORING_OP_MSG_RING completions posted from that loop's own ring (no extra system
//     call); from any other thread, an eventfd write.
//   - epoll: readiness, read(2) until a short read (a short read means the socket is drained: no
//     read that is known to return EAGAIN), send(2) once per dirty socket per turn, an eventfd for
//     wake-ups that is read only when its event fired.
// The broker's workers, the acceptors and loadgen run on it; the backend is chosen once per loop.
//
// Model (the same for both backends):
//   - A socket is added with add(fd, user): the loop owns the descriptor from then on, receives
//     from it, and calls the handler with the bytes. A SocketId names the socket until it is
//     closed or detached (slot and generation: an id of a closed socket is recognized as stale).
//   - Input is pushed to the handler: onReceive(id, user, bytes), the bytes valid only during the
//     call (a provided buffer or the loop's read buffer). Whatever the handler does not consume it
//     copies. pauseReceive/resumeReceive implement flow control; after pauseReceive the handler
//     may still get bytes the kernel had already received (at most the socket's receive buffer).
//   - Output: the handler appends to output(id) (a ByteBuffer owned by the loop, charged to the
//     loop's MemoryAccount) and calls flush(id); every flushed socket is written at the start of
//     the next runOnce(), right before its wait (uring: its send submitted with the turn's
//     io_uring_enter). unsentBytes(id) is what the socket still holds (queued and in flight), for
//     the handler's bounds. A send that fails (the peer reset the connection) drops the socket's
//     output (and ends a notifyWhenDrained() wait); the failure itself is reported on the input
//     side, as onInputEnd (a reset socket's receive ends too), once the handler receives from it.
//   - End of input (EOF or an error) is onInputEnd(id, user, error), once per socket; the loop
//     stops receiving, and the socket stays open until the handler closes it (to flush a last
//     reply first: notifyWhenDrained(), then close() in onDrained(), with a deadline of the
//     handler's own).
//   - A socket moves to another loop with detach(id): its I/O stops (uring: asynchronously, once
//     the kernel has finished with it), then onDetached(id, user, fd, unsent, received) hands the
//     handler the descriptor, the output not yet sent and the bytes received after detach() was
//     called (to be handled before anything read later); the other loop's add() takes them.
//   - One turn: runOnce(timeout) submits the pending output, waits for events up to `timeout`
//     (unless there is work already), dispatches every completion to the handler, and returns.
//     The handler's beforeBlock()/afterBlock() bracket the blocking part (QSBR offline/online,
//     the inbox's sleep protocol).
//
// Callbacks are never made from inside the call that caused them (add, close, detach, flush,
// notifyWhenDrained, connect): always from runOnce(), so the handler never re-enters itself.
//
// Threads: an EventLoop is owned by one thread, which makes every call, except wake() (any
// thread), wakeFrom() (the thread that owns `from`) and shedConnections() (any thread). The loop
// may be made on another thread and handed over before its first runOnce(). Handler callbacks
// run on the owning thread, inside runOnce(). Not copyable.
#pragma once

#include <sys/socket.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "tern/common/cache_line.hpp"
#include "tern/common/log_limiter.hpp"
#include "tern/net/byte_buffer.hpp"

namespace tern::net {

enum class IoBackend : std::uint8_t { kUring, kEpoll };
// What the user asked for: --io auto|uring|epoll.
enum class IoChoice : std::uint8_t { kAuto, kUring, kEpoll };

std::optional<IoChoice> parseIoChoice(std::string_view text) noexcept;
std::string_view name(IoBackend backend) noexcept;  // "io_uring" or "epoll"

// Names one socket of one loop: (slot << 32) | generation; 0 is no socket.
using SocketId = std::uint64_t;

// uring only: how the kernel runs the completion work of the loop's ring (IORING_SETUP_*).
// kAuto is kCooperative, the measured best (bench/event_loop_bench.cpp); the others are for
// measurements. A kernel without the flags gets kInterrupt. With SINGLE_ISSUER, the thread that
// first makes the loop enter the kernel (its first runOnce(), normally) is its only submitter.
enum class UringTaskRun : std::uint8_t {
  kAuto,
  kInterrupt,    // no flags: completions are posted as they happen (IPI to a running loop)
  kCooperative,  // SINGLE_ISSUER | COOP_TASKRUN | TASKRUN_FLAG: posted at the loop's next enter
  kDeferred,     // SINGLE_ISSUER | DEFER_TASKRUN | TASKRUN_FLAG: posted only when it waits
};

struct EventLoopOptions {
  IoChoice io = IoChoice::kAuto;
  // uring: the provided receive buffers of the loop (count a power of two) and their size; epoll:
  // the size of the loop's one read buffer.
  std::size_t receiveBufferBytes = 16 * 1024;
  unsigned receiveBuffers = 1024;
  // uring: submission queue entries (completion queue: twice as many).
  unsigned ringEntries = 4096;
  UringTaskRun uringTaskRun = UringTaskRun::kAuto;
  // Busy-poll for up to this long before blocking when a turn found nothing to do (0: never);
  // the handler's hasPendingWork() is polled meanwhile (uring: and the completion ring; epoll
  // has no way to poll its sockets without a system call, so only the handler and wake()).
  std::int64_t spinNanos = 0;
  // Charged for the loop's output buffers (may be null); their doubling stops at this many bytes.
  MemoryAccount* account = nullptr;
  std::size_t outputGrowthLimit = ~std::size_t{0};
};

class EventLoopHandler {
 public:
  virtual ~EventLoopHandler() = default;
  // Bytes received on `id`, valid only during the call. The handler may call any EventLoop method
  // from here, close(id) included.
  virtual void onReceive(SocketId id, void* user, std::span<const char> bytes) = 0;
  // No more input on `id`: the peer closed its side (error 0) or the socket failed (errno). The
  // socket stays open until the handler closes it.
  virtual void onInputEnd(SocketId id, void* user, int error) = 0;
  // Everything queued on `id` was handed to the kernel (or dropped by a failed send), after
  // notifyWhenDrained(id); in the next runOnce() when nothing was pending.
  virtual void onDrained(SocketId /*id*/, void* /*user*/) {}
  // detach(id) finished: the loop no longer touches `fd`, which now belongs to the handler with
  // the output not yet sent (`unsent`) and the input received after detach() (`received`); the
  // handler moves what it keeps out of both during the call.
  virtual void onDetached(SocketId /*id*/, void* /*user*/, int /*fd*/, ByteBuffer& /*unsent*/,
                          ByteBuffer& /*received*/) {}
  // A listener accepted `fd` (non-blocking, close-on-exec, TCP_NODELAY). The handler owns it.
  virtual void onAccept(int /*listenerTag*/, int /*fd*/, const sockaddr_storage& /*peer*/) {}
  // A connect() finished: error 0 means connected (the socket then receives as if add()ed, and
  // output flushed meanwhile is sent); otherwise the socket stays until the handler closes it.
  virtual void onConnected(SocketId /*id*/, void* /*user*/, int /*error*/) {}
  // wake()/wakeFrom() was called since the last turn.
  virtual void onWake() {}
  // Called before the loop blocks; returning false makes it not block this turn (e.g. an inbox
  // has items). afterBlock() follows every beforeBlock() that returned true.
  virtual bool beforeBlock() { return true; }
  virtual void afterBlock() {}
  // Polled while spinning (spinNanos): true ends the spin without blocking.
  virtual bool hasPendingWork() { return false; }
};

class EventLoop {
 public:
  // Makes a loop with the backend `options.io` asks for: kAuto tries io_uring and falls back to
  // epoll when the kernel or a sandbox refuses it (`why`, if given, says why); kUring fails
  // (returns null, `why` set) rather than fall back. Start-up only (allocates, may throw
  // std::system_error when out of descriptors).
  static std::unique_ptr<EventLoop> create(const EventLoopOptions& options,
                                           EventLoopHandler& handler, std::string* why = nullptr);
  virtual ~EventLoop();
  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;

  virtual IoBackend backend() const noexcept = 0;

  // Takes `fd` (connected, non-blocking) and starts receiving from it; `unsent`, if given, is
  // output to send first (moved from; a detached socket's). Never fails (out of slots grows; at
  // most 2^24 sockets per loop).
  virtual SocketId add(int fd, void* user, ByteBuffer* unsent = nullptr) = 0;
  // Starts a non-blocking connect of `fd` (made by the caller) to `address`; onConnected follows.
  virtual SocketId connect(int fd, void* user, const sockaddr* address, socklen_t length) = 0;
  // Accepts on `fd` (a non-blocking listening socket, owned by the caller) until
  // removeListener(); each connection goes to onAccept(tag, ...). Out of descriptors (EMFILE),
  // the loop sheds the pending connection (accept and close, with a spare descriptor it keeps for
  // that) and counts it; other accept failures pause that listener for kAcceptRetryNanos.
  virtual void addListener(int fd, int tag) = 0;
  // Stops accepting on `fd`; the caller may close it afterwards (a connection the kernel accepts
  // meanwhile is closed by the loop).
  virtual void removeListener(int fd) = 0;
  // Connections shed since creation. Any thread (a relaxed counter, for statistics).
  virtual std::uint64_t shedConnections() const noexcept {
    return shed_.load(std::memory_order_relaxed);
  }

  // The user pointer given to add(); null for a stale id.
  virtual void* user(SocketId id) const noexcept = 0;
  virtual void pauseReceive(SocketId id) = 0;
  virtual void resumeReceive(SocketId id) = 0;

  // The socket's output queue: append, then flush(id). REQUIRES: a live id.
  virtual ByteBuffer& output(SocketId id) noexcept = 0;
  // Writes what output(id) holds at the start of the next runOnce(). Idempotent within a turn.
  virtual void flush(SocketId id) = 0;
  // Bytes queued and in flight on `id`.
  virtual std::size_t unsentBytes(SocketId id) const noexcept = 0;
  // Asks for onDrained(id) the next time its output is all sent.
  virtual void notifyWhenDrained(SocketId id) = 0;
  // Frees the memory of the socket's output (and, io_uring, of its send buffer) when nothing is
  // queued or being sent; a later append allocates again. For the owner's periodic sweep of
  // quiet connections: the loop itself keeps small buffers between sends, so as not to allocate
  // per message.
  virtual void releaseIdleBuffers(SocketId id) noexcept = 0;

  // Closes the socket now: no more callbacks for `id`; unsent output is dropped.
  virtual void close(SocketId id) = 0;
  // Stops all I/O on `id` (the id is stale at once); onDetached() follows, from runOnce():
  //   epoll: at once, when the callback that called detach() returns (before the next event is
  //     dispatched), or in the next runOnce() (before it waits) when called outside runOnce();
  //     `received` is always empty (what the kernel holds stays in the socket).
  //   uring: when the kernel has completed every operation of the socket (the cancelled receive,
  //     the send in flight), within a turn or two; bytes that completed meanwhile are `received`.
  // An error or end of input that completes after detach() is not reported: the next owner's
  // receive sees the end of input again (an error as EOF).
  virtual void detach(SocketId id) = 0;

  // One turn (see the header comment). `timeoutNanos` < 0 waits without a deadline, 0 never
  // blocks. uring: submits every operation queued since the last turn even when it does not wait.
  virtual void runOnce(std::int64_t timeoutNanos) = 0;

  // Makes this loop's current or next runOnce() return soon and call onWake(). Any thread (one
  // eventfd write when the loop may be blocked, none while it is busy).
  virtual void wake() noexcept;
  // The same from the thread of another loop `from`: with two io_uring loops, a MSG_RING entry
  // in `from`'s next submission instead of a system call, so the wake-up happens when `from`
  // next submits (its next runOnce(), which submits even when it does not wait); otherwise
  // wake(). `from` must be owned by the caller.
  virtual void wakeFrom(EventLoop& from) noexcept = 0;

  // System calls this loop made (for perf figures). Owner thread only.
  struct Counters {
    std::uint64_t waits = 0;    // uring: io_uring_enter calls that waited; epoll: epoll_wait calls
    std::uint64_t submits = 0;  // uring: every io_uring_enter call; epoll: epoll_ctl calls
    std::uint64_t reads = 0;    // uring: receive completions with data; epoll: read(2) calls
    std::uint64_t sends = 0;    // uring: send operations submitted; epoll: send(2) calls
    std::uint64_t wakeWrites = 0;    // eventfd writes of wake(), by any thread
    std::uint64_t wakeMessages = 0;  // uring: MSG_RINGs this loop posted for wakeFrom(*this)
    // Every system call the owner thread made for the loop: the above (uring: enters, not its
    // reads and sends) plus eventfd reads, accept4, getpeername, setsockopt, connect, close.
    std::uint64_t syscalls = 0;
    std::uint64_t bytesSent = 0;  // bytes the kernel took from the sockets' output
  };
  virtual Counters counters() const noexcept = 0;

 protected:
  // Opens the eventfd and the spare descriptor. Throws std::system_error when out of descriptors.
  EventLoop();

  // The wake-up protocol (the inbox's, sync/inbox.hpp, on one word): the owner sets kSleeping
  // before it blocks and checks kRequested; a waker sets kRequested and signals (eventfd write
  // or MSG_RING) only when the word had kSleeping and not yet kRequested. Every access is an RMW
  // on the same word, so they are totally ordered: a request before the owner's announcement is
  // seen by it (it does not block); one after it finds kSleeping and signals. No lost wake-up,
  // at most one signal per sleep, and a busy loop costs a waker one uncontended RMW. RMWs rather
  // than fences because ThreadSanitizer does not model fences; acq_rel so that what the waker
  // wrote before wake() is visible to the owner's onWake().
  static constexpr std::uint32_t kSleeping = 1;
  static constexpr std::uint32_t kRequested = 2;
  // Any thread: records a request; true when the caller must signal the owner.
  bool requestWake() noexcept {
    const std::uint32_t before = wake_.state.fetch_or(kRequested, std::memory_order_acq_rel);
    return (before & (kSleeping | kRequested)) == kSleeping;
  }
  // Owner: about to block; false (and not sleeping) when a request is pending.
  bool prepareToSleep() noexcept;
  // Owner: back from blocking.
  void finishSleep() noexcept { wake_.state.fetch_and(~kSleeping, std::memory_order_acq_rel); }
  // Owner: a relaxed peek for the spin (the decisive check is prepareToSleep's RMW).
  bool wakePending() const noexcept {
    return (wake_.state.load(std::memory_order_relaxed) & kRequested) != 0;
  }
  // Owner: takes the pending request; true when onWake() is due.
  bool takeWake() noexcept {
    return (wake_.state.fetch_and(~kRequested, std::memory_order_acq_rel) & kRequested) != 0;
  }
  int wakeFd() const noexcept { return wakeFd_; }
  // Any thread: one eventfd write (after requestWake() returned true).
  void writeWakeFd() noexcept;
  std::uint64_t wakeWrites() const noexcept { return wake_.writes.load(std::memory_order_relaxed); }

  // A listener failed with EMFILE/ENFILE: frees the spare descriptor, accepts one pending
  // connection and closes it, takes the spare back, counts and logs (once per interval). Owner
  // thread only. `syscalls` counts what it made.
  enum class Shed : std::uint8_t { kShed, kNothingPending, kNoSpare };
  Shed shedPending(int listenFd, int error, std::uint64_t& syscalls) noexcept;
  // Retakes the spare after kNoSpare; true when it is held again.
  bool retakeSpare() noexcept;
  void logAcceptPause(int error) noexcept;
  // After kNoSpare or ENOMEM/ENOBUFS, listeners retry after this long (the acceptor's pause).
  static constexpr std::int64_t kAcceptRetryNanos = 10'000'000;

 private:
  int wakeFd_ = -1;
  int spareFd_ = -1;
  common::LogLimiter outOfDescriptors_;
  std::atomic<std::uint64_t> shed_{0};  // statistics only: relaxed
  // Written by wakers on other threads and by the owner around each sleep: a cache line of its
  // own, with the count of the wakers' eventfd writes (statistics only: relaxed).
  struct alignas(common::kCacheLine) WakeWord {
    std::atomic<std::uint32_t> state{0};  // kSleeping | kRequested, see requestWake()
    std::atomic<std::uint64_t> writes{0};
  };
  WakeWord wake_;
};

}  // namespace tern::net
