// UringLoop, part 1: sockets (slots, receives, sends, close and detach) and the turn. Part 2,
// uring_ring.cpp: the ring itself and the listeners.
#include "net/uring_loop.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "tern/common/clock.hpp"
#include "tern/common/log.hpp"

namespace tern::net {
namespace {

// A drained in-flight buffer keeps this much capacity (a busy socket's next send reuses it).
constexpr std::size_t kIdleBufferKeep = 64 * 1024;
// Completions copied out of the ring per batch (then the ring space is given back).
constexpr unsigned kBatch = 64;
// flushDirty passes per turn: onDrained callbacks may flush again; the rest waits a turn.
constexpr int kFlushPasses = 4;

void cpuRelax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Sockets

SocketId UringLoop::newSlot(int fd, void* user, State state) {
  TERN_ASSERT_OWNER(owner_);
  return slots_.claim(fd, user, state, [this](Slot& fresh) {
    for (ByteBuffer* b : {&fresh.output, &fresh.inflight}) {
      b->setAccount(options_.account);
      b->setGrowthLimit(options_.outputGrowthLimit);
    }
  });
}

SocketId UringLoop::add(int fd, void* user, ByteBuffer* unsent) {
  const SocketId id = newSlot(fd, user, State::kOpen);
  const std::uint32_t index = slotOf(id);
  Slot& s = slots_[index];
  if (unsent != nullptr && !unsent->empty()) {
    s.output.takeFrom(*unsent);
    s.flushWanted = true;
    markDirty(index);
  }
  armRecv(index);
  return id;
}

SocketId UringLoop::connect(int fd, void* user, const sockaddr* address, socklen_t length) {
  const SocketId id = newSlot(fd, user, State::kConnecting);
  const std::uint32_t index = slotOf(id);
  Slot& s = slots_[index];
  s.connectTo = std::make_unique<sockaddr_storage>();
  const auto bytes = std::min<socklen_t>(length, sizeof(sockaddr_storage));
  std::memcpy(s.connectTo.get(), address, bytes);
  io_uring_sqe* e = nextSqe();
  io_uring_prep_connect(e, fd, reinterpret_cast<sockaddr*>(s.connectTo.get()), bytes);
  io_uring_sqe_set_data64(e, tag(Op::kConnect, index, s.generation));
  s.connectInFlight = true;
  return id;
}

void* UringLoop::user(SocketId id) const noexcept {
  return slots_.user(id);
}

void UringLoop::pauseReceive(SocketId id) {
  Slot* s = slots_.live(id);
  if (s == nullptr || s->paused) return;
  s->paused = true;
  if (!s->recvArmed) return;
  // Completions that beat the cancel still reach onReceive (the contract allows it).
  io_uring_sqe* e = nextSqe();
  io_uring_prep_cancel64(e, tag(Op::kRecv, slotOf(id), s->generation), 0);
  e->flags |= IOSQE_CQE_SKIP_SUCCESS;
  io_uring_sqe_set_data64(e, tag(Op::kIgnore, 0, 0));
}

void UringLoop::resumeReceive(SocketId id) {
  Slot* s = slots_.live(id);
  if (s == nullptr || !s->paused) return;
  s->paused = false;
  maybeRearm(slotOf(id));  // an armed receive whose cancel is on its way re-arms when it ends
}

ByteBuffer& UringLoop::output(SocketId id) noexcept {
  return slots_[slotOf(id)].output;
}

void UringLoop::flush(SocketId id) {
  Slot* s = slots_.live(id);
  if (s == nullptr) return;
  s->flushWanted = true;
  markDirty(slotOf(id));
}

std::size_t UringLoop::unsentBytes(SocketId id) const noexcept {
  const Slot* s = slots_.live(id);
  return s != nullptr ? s->inflight.size() + s->output.size() : 0;
}

void UringLoop::releaseIdleBuffers(SocketId id) noexcept {
  Slot* s = slots_.live(id);
  // The kernel reads `inflight` until the send completes: not while one is in flight.
  if (s == nullptr || s->sendInFlight) return;
  s->inflight.releaseIfIdle(0);
  s->output.releaseIfIdle(0);
}

void UringLoop::notifyWhenDrained(SocketId id) {
  Slot* s = slots_.live(id);
  if (s == nullptr) return;
  s->wantDrained = true;
  markDirty(slotOf(id));
}

void UringLoop::close(SocketId id) {
  Slot* s = slots_.live(id);
  if (s == nullptr) return;
  s->state = State::kClosing;
  slots_.makeStale(*s);
  if (!s->busy()) {
    // No operation (submitted or queued) names the descriptor: close it now.
    ::close(s->fd);
    ++counters_.syscalls;
    s->fd = -1;
    settle(slotOf(id));
    return;
  }
  // Cancel, then close, in one submission and in that order (a hard link runs the close even
  // when there was nothing left to cancel): the descriptor number is not reused before the
  // cancel has matched the old socket's operations. No system call now.
  if (io_uring_sq_space_left(&ring_) < 2) enter(false, 0);
  io_uring_sqe* cancel = nextSqe();
  io_uring_prep_cancel_fd(cancel, s->fd, IORING_ASYNC_CANCEL_ALL);
  cancel->flags |= IOSQE_IO_HARDLINK | IOSQE_CQE_SKIP_SUCCESS;
  io_uring_sqe_set_data64(cancel, tag(Op::kIgnore, 0, 0));
  io_uring_sqe* closing = nextSqe();
  io_uring_prep_close(closing, s->fd);
  closing->flags |= IOSQE_CQE_SKIP_SUCCESS;
  io_uring_sqe_set_data64(closing, tag(Op::kIgnore, 0, 0));
  unsubmittedCloses_.push_back(s->fd);  // closed by the destructor if never submitted
  s->fd = -1;
}

void UringLoop::detach(SocketId id) {
  Slot* s = slots_.live(id);
  if (s == nullptr) return;
  s->state = State::kDetaching;
  slots_.makeStale(*s);
  if (s->busy()) {
    io_uring_sqe* cancel = nextSqe();
    io_uring_prep_cancel_fd(cancel, s->fd, IORING_ASYNC_CANCEL_ALL);
    cancel->flags |= IOSQE_CQE_SKIP_SUCCESS;
    io_uring_sqe_set_data64(cancel, tag(Op::kIgnore, 0, 0));
  } else {
    settle(slotOf(id));
  }
}

void UringLoop::settle(std::uint32_t index) {
  settled_.push_back(index);
}

void UringLoop::runSettled() {
  for (std::size_t k = 0; k < settled_.size(); ++k) {  // callbacks may append
    const std::uint32_t index = settled_[k];
    Slot& s = slots_[index];
    if (s.state == State::kDetaching) {
      s.inflight.takeFrom(s.output);  // the unsent rest, then what was queued after it
      handler_.onDetached(s.id, s.user, s.fd, s.inflight, s.received);
    }
    release(s, index);
  }
  settled_.clear();
}

void UringLoop::release(Slot& s, std::uint32_t index) {
  s.recvArmed = s.sendInFlight = s.connectInFlight = false;
  s.paused = s.inputEnded = s.sendFailed = s.flushWanted = s.wantDrained = false;
  for (ByteBuffer* b : {&s.output, &s.inflight, &s.received}) {
    b->consume(b->size());
    b->releaseIfIdle(0);
  }
  s.connectTo.reset();
  slots_.release(index);
}

// ---------------------------------------------------------------------------------------------
// Receives and sends

void UringLoop::armRecv(std::uint32_t index) {
  Slot& s = slots_[index];
  io_uring_sqe* e = nextSqe();
  io_uring_prep_recv_multishot(e, s.fd, nullptr, 0, 0);
  e->flags |= IOSQE_BUFFER_SELECT;
  e->buf_group = 0;
  io_uring_sqe_set_data64(e, tag(Op::kRecv, index, s.generation));
  s.recvArmed = true;
}

void UringLoop::maybeRearm(std::uint32_t index) {
  Slot& s = slots_[index];
  if (s.state == State::kOpen && !s.paused && !s.inputEnded && !s.recvArmed) armRecv(index);
}

void UringLoop::startSend(std::uint32_t index) {
  Slot& s = slots_[index];
  if (s.inflight.empty()) {
    if (s.output.empty()) return;
    s.inflight.takeFrom(s.output);  // empty target: swaps the memory, no copy
    s.flushWanted = false;
  }
  const std::string_view bytes = s.inflight.view();
  io_uring_sqe* e = nextSqe();
  io_uring_prep_send(e, s.fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
  io_uring_sqe_set_data64(e, tag(Op::kSend, index, s.generation));
  s.sendInFlight = true;
  ++counters_.sends;
}

void UringLoop::markDirty(std::uint32_t index) {
  Slot& s = slots_[index];
  if (s.dirty) return;
  s.dirty = true;
  dirty_.push_back(index);
}

void UringLoop::flushDirty() {
  for (int pass = 0; pass < kFlushPasses && !dirty_.empty(); ++pass) {
    flushing_.swap(dirty_);
    for (const std::uint32_t index : flushing_) {
      Slot& s = slots_[index];
      s.dirty = false;
      if (s.state != State::kOpen || s.sendInFlight) continue;  // onSend/onConnect go on
      if (s.sendFailed) {
        s.output.consume(s.output.size());
        s.flushWanted = false;
      }
      if (s.flushWanted && !s.output.empty()) {
        startSend(index);
      } else if (s.wantDrained && s.output.empty()) {
        s.wantDrained = false;
        handler_.onDrained(s.id, s.user);
      }
    }
    flushing_.clear();
  }
}

// ---------------------------------------------------------------------------------------------
// The turn

void UringLoop::runOnce(std::int64_t timeoutNanos) {
  if (!bound_) {
    owner_.bind();
    bound_ = true;
  }
  TERN_ASSERT_OWNER(owner_);
  runSettled();
  const std::int64_t start = common::monotonicNanos();
  retryListeners(start);
  flushDirty();
  bool block = timeoutNanos != 0 && io_uring_cq_ready(&ring_) == 0 && settled_.empty() &&
               dirty_.empty() && !wakePending();
  if (block && options_.spinNanos > 0) {
    // The spin watches the completion ring: what this turn sends must be in the kernel first.
    if (io_uring_sq_ready(&ring_) > 0) enter(false, 0);
    const std::int64_t spin =
        timeoutNanos < 0 ? options_.spinNanos : std::min(options_.spinNanos, timeoutNanos);
    for (;;) {
      if (io_uring_cq_ready(&ring_) > 0 || wakePending() || handler_.hasPendingWork()) {
        block = false;
        break;
      }
      if (taskRunFlag_ && ringTaskRunPending()) {
        enter(false, 0);  // completions wait for an enter (COOP/DEFER_TASKRUN)
        continue;
      }
      if (common::monotonicNanos() - start >= spin) break;
      cpuRelax();
    }
  }
  bool blocked = false;
  if (block && handler_.beforeBlock()) {
    if (prepareToSleep()) {
      const std::int64_t now = common::monotonicNanos();
      const std::int64_t left =
          timeoutNanos < 0 ? -1 : std::max<std::int64_t>(0, start + timeoutNanos - now);
      enter(true, waitLimit(left, now));
      finishSleep();
      blocked = true;
    }
    handler_.afterBlock();
  }
  if (!blocked) submitPending();
  dispatch();
  runSettled();
  if (takeWake()) handler_.onWake();
}

void UringLoop::dispatch() {
  struct Completion {
    std::uint64_t data;
    std::int32_t res;
    std::uint32_t flags;
  };
  Completion batch[kBatch];
  // At most one ring's worth per turn, so that a flood of completions cannot starve the turn's
  // other work (sends, inbox).
  for (unsigned total = 0; total < ring_.cq.ring_entries;) {
    unsigned n = 0;
    unsigned head;
    io_uring_cqe* cqe;
    io_uring_for_each_cqe(&ring_, head, cqe) {
      batch[n++] = {cqe->user_data, cqe->res, cqe->flags};
      if (n == kBatch) break;
    }
    if (n == 0) break;
    io_uring_cq_advance(&ring_, n);  // copied out: give the space back before the callbacks
    for (unsigned i = 0; i < n; ++i)
      handle(batch[i].data, batch[i].res, batch[i].flags);
    total += n;
  }
}

void UringLoop::handle(std::uint64_t data, std::int32_t res, std::uint32_t flags) {
  const auto op = static_cast<Op>(data >> 56);
  const auto index = static_cast<std::uint32_t>(data >> 32) & kSlotMask;
  const auto generation = static_cast<std::uint32_t>(data);
  switch (op) {
    case Op::kRecv:
      onRecv(index, res, flags);
      break;
    case Op::kSend:
      onSend(index, res);
      break;
    case Op::kConnect:
      onConnect(index, res);
      break;
    case Op::kAccept:
      onAccept(index, generation, res, flags);
      break;
    case Op::kListenPoll: {
      Listener& l = listeners_[index];
      l.pollArmed = false;
      if (l.active && l.generation == generation && !l.acceptArmed) armAccept(index);
      break;
    }
    case Op::kWakeRead:
      // The wake-up itself is the word in EventLoop; this only keeps the eventfd read armed.
      if (res > 0 || res == -EAGAIN || res == -EINTR) {
        armWakeRead();
      } else if (res != -ECANCELED) {
        TERN_LOG_ERROR("io_uring: the wake eventfd read failed: {}", std::strerror(-res));
      }
      break;
    case Op::kWakeMsg:
    case Op::kIgnore:
      break;
  }
}

void UringLoop::onRecv(std::uint32_t index, std::int32_t res, std::uint32_t flags) {
  Slot& s = slots_[index];
  const bool more = (flags & IORING_CQE_F_MORE) != 0;
  if (!more) s.recvArmed = false;
  const bool hasBuffer = (flags & IORING_CQE_F_BUFFER) != 0;
  const auto buffer = static_cast<std::uint16_t>(flags >> IORING_CQE_BUFFER_SHIFT);
  const char* bytes = buffers_ + std::size_t{buffer} * options_.receiveBufferBytes;
  if (s.state != State::kOpen) {  // closing or detaching: the id is stale
    if (res > 0 && hasBuffer && s.state == State::kDetaching) {
      s.received.append({bytes, static_cast<std::size_t>(res)});
    }
    if (hasBuffer) recycle(buffer);
    if (!s.busy()) settle(index);
    return;
  }
  if (res > 0 && hasBuffer) {
    ++counters_.reads;
    const SocketId id = s.id;
    if (!s.inputEnded) handler_.onReceive(id, s.user, {bytes, static_cast<std::size_t>(res)});
    recycle(buffer);
    if (!more && s.id == id) maybeRearm(index);  // the handler may have closed or detached it
    return;
  }
  if (hasBuffer) recycle(buffer);
  if (res == 0) {
    endInput(s, 0);
  } else if (res == -ENOBUFS || res == -ECANCELED || res == -EINTR) {
    // Out of buffers (they are all back in the ring by the next submit), or paused.
    maybeRearm(index);
  } else if (res < 0) {
    endInput(s, -res);
  }
}

void UringLoop::endInput(Slot& s, int error) {
  if (s.inputEnded) return;
  s.inputEnded = true;
  handler_.onInputEnd(s.id, s.user, error);
}

void UringLoop::onSend(std::uint32_t index, std::int32_t res) {
  Slot& s = slots_[index];
  s.sendInFlight = false;
  if (res > 0) counters_.bytesSent += static_cast<std::uint64_t>(res);
  if (res > 0 && s.state != State::kClosing) s.inflight.consume(static_cast<std::size_t>(res));
  if (s.state != State::kOpen) {
    if (!s.busy()) settle(index);
    return;
  }
  if (res < 0) {
    // The peer is gone (EPIPE, ECONNRESET): nothing queued can be delivered. The receive side
    // reports the end of the connection.
    s.sendFailed = true;
    s.inflight.consume(s.inflight.size());
    s.output.consume(s.output.size());
    s.flushWanted = false;
    if (s.wantDrained) {
      s.wantDrained = false;
      handler_.onDrained(s.id, s.user);  // nothing will ever be sent: the wait is over
    }
    return;
  }
  if (!s.inflight.empty() || (s.flushWanted && !s.output.empty())) {
    startSend(index);  // the rest, or what was flushed meanwhile: with the next submit
    return;
  }
  s.inflight.releaseIfIdle(kIdleBufferKeep);
  if (s.wantDrained && s.output.empty()) {
    s.wantDrained = false;
    handler_.onDrained(s.id, s.user);
  }
}

void UringLoop::onConnect(std::uint32_t index, std::int32_t res) {
  Slot& s = slots_[index];
  s.connectInFlight = false;
  s.connectTo.reset();
  if (s.state != State::kConnecting) {
    if (!s.busy()) settle(index);
    return;
  }
  const SocketId id = s.id;
  if (res < 0) {
    handler_.onConnected(id, s.user, -res);  // stays until the handler closes it
    return;
  }
  s.state = State::kOpen;
  handler_.onConnected(id, s.user, 0);
  if (s.id != id || s.state != State::kOpen) return;
  maybeRearm(index);
  if (s.flushWanted || s.wantDrained) markDirty(index);
}

}  // namespace tern::net
