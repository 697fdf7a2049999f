// EventLoop: one thread's sockets, their input and output, its wake-ups and its wait, behind one
// interface with two backends (issue 10):
//   - io_uring (liburing; the default where the kernel allows it): a multishot receive per socket
//     into a ring of provided buffers, sends submitted in one batch per turn (one send in flight per
//     socket; what is written meanwhile goes into the next), multishot accept for listeners, and
//     one io_uring_enter per turn that both submits and waits. Wake-ups from another loop's thread
//     are IORING_OP_MSG_RING completions posted from that loop's own ring (no extra system call);
//     from any other thread, an eventfd write.
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
//     loop's MemoryAccount) and calls flush(id); every flushed socket is written at the end of the
//     turn (uring: its send submitted with the turn's io_uring_enter). unsentBytes(id) is what the
//     socket still holds (queued and in flight), for the handler's bounds.
//   - End of input (EOF or an error) is onInputEnd(id, user, error); the socket stays open until
//     the handler closes it (to flush a last reply first: notifyWhenDrained(), then close() in
//     onDrained(), with a deadline of the handler's own).
//   - A socket moves to another loop with detach(id): its I/O stops (uring: asynchronously, once
//     the kernel has finished with it), then onDetached(id, user, fd, unsent, received) hands the
//     handler the descriptor, the output not yet sent and the bytes received after detach() was
//     called (to be handled before anything read later); the other loop's add() takes them.
//   - One turn: runOnce(timeout) submits the pending output, waits for events up to `timeout`
//     (unless there is work already), dispatches every completion to the handler, and returns.
//     The handler's beforeBlock()/afterBlock() bracket the blocking part (QSBR offline/online,
//     the inbox's sleep protocol).
//
// Threads: an EventLoop is owned by one thread, which makes every call, except wake() and
// wakeFrom(), which any thread may call. Handler callbacks run on the owning thread, inside
// runOnce(). Not copyable.
#pragma once

#include <sys/socket.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "tern/net/byte_buffer.hpp"

namespace tern::net {

enum class IoBackend : std::uint8_t { kUring, kEpoll };
// What the user asked for: --io auto|uring|epoll.
enum class IoChoice : std::uint8_t { kAuto, kUring, kEpoll };

std::optional<IoChoice> parseIoChoice(std::string_view text) noexcept;
std::string_view name(IoBackend backend) noexcept;  // "io_uring" or "epoll"

// Names one socket of one loop: (slot << 32) | generation; 0 is no socket.
using SocketId = std::uint64_t;

struct EventLoopOptions {
  IoChoice io = IoChoice::kAuto;
  // uring: the provided receive buffers of the loop (count a power of two) and their size; epoll:
  // the size of the loop's one read buffer.
  std::size_t receiveBufferBytes = 16 * 1024;
  unsigned receiveBuffers = 1024;
  // uring: submission queue entries (completion queue: twice as many).
  unsigned ringEntries = 4096;
  // Busy-poll for up to this long before blocking when a turn found nothing to do (0: never);
  // the handler's hasPendingWork() is polled meanwhile.
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
  // Everything queued on `id` was handed to the kernel (only after a flush(id) that had bytes to
  // send, and only when the handler asked with notifyWhenDrained()).
  virtual void onDrained(SocketId /*id*/, void* /*user*/) {}
  // detach(id) finished: the loop no longer touches `fd`, which now belongs to the handler with
  // the output not yet sent (`unsent`) and the input received after detach() (`received`); the
  // handler moves what it keeps out of both during the call.
  virtual void onDetached(SocketId /*id*/, void* /*user*/, int /*fd*/, ByteBuffer& /*unsent*/,
                          ByteBuffer& /*received*/) {}
  // A listener accepted `fd` (non-blocking, close-on-exec). The handler owns it.
  virtual void onAccept(int /*listenerTag*/, int /*fd*/, const sockaddr_storage& /*peer*/) {}
  // A connect() finished: error 0 means connected (the socket then receives as if add()ed).
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
  virtual ~EventLoop() = default;
  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;

  virtual IoBackend backend() const noexcept = 0;

  // Takes `fd` (connected, non-blocking) and starts receiving from it; `unsent`, if given, is
  // output to send first (moved from; a detached socket's). Never fails (out of slots grows).
  virtual SocketId add(int fd, void* user, ByteBuffer* unsent = nullptr) = 0;
  // Starts a non-blocking connect of `fd` (made by the caller) to `address`; onConnected follows.
  virtual SocketId connect(int fd, void* user, const sockaddr* address, socklen_t length) = 0;
  // Accepts on `fd` (a listening socket, owned by the caller) until removeListener(); each
  // connection goes to onAccept(tag, ...). Out of descriptors (EMFILE), the loop sheds the
  // pending connection (accept and close, with a spare descriptor it keeps for that) and counts it.
  virtual void addListener(int fd, int tag) = 0;
  virtual void removeListener(int fd) = 0;
  virtual std::uint64_t shedConnections() const noexcept = 0;

  // The user pointer given to add(); null for a stale id.
  virtual void* user(SocketId id) const noexcept = 0;
  virtual void pauseReceive(SocketId id) = 0;
  virtual void resumeReceive(SocketId id) = 0;

  // The socket's output queue: append, then flush(id). REQUIRES: a live id.
  virtual ByteBuffer& output(SocketId id) noexcept = 0;
  // Writes what output(id) holds at the end of this turn. Idempotent within a turn.
  virtual void flush(SocketId id) = 0;
  // Bytes queued and in flight on `id`.
  virtual std::size_t unsentBytes(SocketId id) const noexcept = 0;
  // Asks for onDrained(id) the next time its output is all sent.
  virtual void notifyWhenDrained(SocketId id) = 0;

  // Closes the socket now: no more callbacks for `id`; unsent output is dropped.
  virtual void close(SocketId id) = 0;
  // Stops all I/O on `id`; onDetached() follows (at once with epoll, after the kernel has
  // completed the socket's operations with io_uring). No other callback for `id` meanwhile.
  virtual void detach(SocketId id) = 0;

  // One turn (see the header comment). `timeoutNanos` < 0 waits without a deadline, 0 never
  // blocks.
  virtual void runOnce(std::int64_t timeoutNanos) = 0;

  // Makes this loop's current or next runOnce() return soon and call onWake(). Any thread (one
  // eventfd write when the loop may be blocked).
  virtual void wake() noexcept = 0;
  // The same from the thread of another loop `from`: with two io_uring loops, a MSG_RING entry
  // in `from`'s next submission instead of a system call. `from` must be owned by the caller.
  virtual void wakeFrom(EventLoop& from) noexcept = 0;

  // System calls this loop made (for perf figures): enters or epoll_waits, reads, sends. Owner
  // thread only.
  struct Counters {
    std::uint64_t waits = 0;
    std::uint64_t submits = 0;
    std::uint64_t reads = 0;
    std::uint64_t sends = 0;
    std::uint64_t wakeWrites = 0;
  };
  virtual Counters counters() const noexcept = 0;

 protected:
  EventLoop() = default;
};

}  // namespace tern::net
