// UringLoop, part 2: the ring itself (set-up, submission and waiting, the provided buffers,
// wake-ups) and the listeners. Part 1, uring_loop.cpp: sockets and the turn.
#include "net/uring_loop.hpp"

#include <liburing/barrier.h>
#include <poll.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "tern/common/clock.hpp"
#include "tern/common/log.hpp"
#include "tern/net/socket.hpp"

namespace tern::net {
namespace {

// What setUp() picks for UringTaskRun::kAuto. bench/event_loop_bench.cpp on 6.18 (2-core VM):
// without COOP/DEFER_TASKRUN every completion for a running loop is an IPI (a VM exit here),
// which made the interrupt mode cost 50% more CPU per echo at 100k/s; cooperative and deferred
// measured the same within noise, cooperative with fewer system calls.
constexpr UringTaskRun kBestTaskRun = UringTaskRun::kCooperative;

std::string errorText(const char* what, int negativeErrno) {
  return std::string(what) + ": " + std::strerror(-negativeErrno);
}

}  // namespace

std::unique_ptr<UringLoop> UringLoop::tryCreate(const EventLoopOptions& options,
                                                EventLoopHandler& handler, std::string& why) {
  const unsigned count = options.receiveBuffers;
  if (count == 0 || count > 32768 || (count & (count - 1)) != 0 ||
      options.receiveBufferBytes == 0 || options.receiveBufferBytes > (1u << 30)) {
    why = "receiveBuffers must be a power of two up to 32768, receiveBufferBytes 1 B to 1 GiB";
    return nullptr;
  }
  std::unique_ptr<UringLoop> loop(new UringLoop(options, handler));
  if (!loop->setUp(why)) return nullptr;
  return loop;
}

UringLoop::UringLoop(const EventLoopOptions& options, EventLoopHandler& handler)
    : options_(options), handler_(handler) {}

bool UringLoop::setUp(std::string& why) {
  const UringTaskRun mode =
      options_.uringTaskRun == UringTaskRun::kAuto ? kBestTaskRun : options_.uringTaskRun;
  unsigned flags = 0;
  // SINGLE_ISSUER binds the ring to the thread that enables it: R_DISABLED until the owner's
  // first enter, because a loop may be made on one thread and run on another.
  if (mode == UringTaskRun::kCooperative) {
    flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG |
            IORING_SETUP_R_DISABLED;
  } else if (mode == UringTaskRun::kDeferred) {
    flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_TASKRUN_FLAG |
            IORING_SETUP_R_DISABLED;
  }
  io_uring_params params{};
  const unsigned entries = options_.ringEntries == 0 ? 4096 : options_.ringEntries;
  params.flags = flags | IORING_SETUP_CQSIZE | IORING_SETUP_SUBMIT_ALL;
  params.cq_entries = 2 * entries;
  int r = io_uring_queue_init_params(entries, &ring_, &params);
  if (r == -EINVAL && flags != 0) {  // an older kernel without these flags
    params = io_uring_params{};
    params.flags = IORING_SETUP_CQSIZE | IORING_SETUP_SUBMIT_ALL;
    params.cq_entries = 2 * entries;
    flags = 0;
    r = io_uring_queue_init_params(entries, &ring_, &params);
  }
  if (r < 0) {
    why = errorText("io_uring_queue_init", r);
    return false;
  }
  ringUp_ = true;
  disabled_ = (flags & IORING_SETUP_R_DISABLED) != 0;
  deferred_ = (flags & IORING_SETUP_DEFER_TASKRUN) != 0;
  taskRunFlag_ = (flags & IORING_SETUP_TASKRUN_FLAG) != 0;
  if ((params.features & IORING_FEAT_NODROP) == 0 || (params.features & IORING_FEAT_EXT_ARG) == 0) {
    why = "kernel too old (no IORING_FEAT_NODROP/EXT_ARG)";
    return false;
  }
  io_uring_probe* probe = io_uring_get_probe_ring(&ring_);
  if (probe == nullptr) {
    why = "io_uring probe refused";
    return false;
  }
  // IORING_OP_SEND_ZC came with multishot receive (6.0), which the probe cannot show.
  bool supported = true;
  for (int op : {IORING_OP_RECV, IORING_OP_SEND, IORING_OP_ACCEPT, IORING_OP_CONNECT,
                 IORING_OP_ASYNC_CANCEL, IORING_OP_MSG_RING, IORING_OP_POLL_ADD, IORING_OP_READ,
                 IORING_OP_CLOSE, IORING_OP_SEND_ZC}) {
    supported = supported && io_uring_opcode_supported(probe, op);
  }
  io_uring_free_probe(probe);
  if (!supported) {
    why = "kernel lacks an io_uring operation (multishot receive, MSG_RING need 6.0)";
    return false;
  }

  const unsigned count = options_.receiveBuffers;
  const std::size_t page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  bufferRingBytes_ = (count * sizeof(io_uring_buf) + page - 1) / page * page;
  buffersBytes_ = count * options_.receiveBufferBytes;
  void* ringMemory =
      ::mmap(nullptr, bufferRingBytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  void* bufferMemory =
      ::mmap(nullptr, buffersBytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (ringMemory == MAP_FAILED || bufferMemory == MAP_FAILED) {
    if (ringMemory != MAP_FAILED) ::munmap(ringMemory, bufferRingBytes_);
    if (bufferMemory != MAP_FAILED) ::munmap(bufferMemory, buffersBytes_);
    why = "cannot map the receive buffers";
    return false;
  }
  bufferRing_ = static_cast<io_uring_buf_ring*>(ringMemory);
  buffers_ = static_cast<char*>(bufferMemory);
  io_uring_buf_reg reg{};
  reg.ring_addr = reinterpret_cast<std::uintptr_t>(ringMemory);
  reg.ring_entries = count;
  reg.bgid = 0;
  r = io_uring_register_buf_ring(&ring_, &reg, 0);
  if (r < 0) {
    why = errorText("io_uring_register_buf_ring", r);
    return false;
  }
  io_uring_buf_ring_init(bufferRing_);
  bufferMask_ = static_cast<unsigned>(io_uring_buf_ring_mask(count));
  for (unsigned i = 0; i < count; ++i) {
    io_uring_buf_ring_add(bufferRing_, buffers_ + i * options_.receiveBufferBytes,
                          static_cast<unsigned>(options_.receiveBufferBytes),
                          static_cast<unsigned short>(i), static_cast<int>(bufferMask_),
                          static_cast<int>(i));
  }
  io_uring_buf_ring_advance(bufferRing_, static_cast<int>(count));
  armWakeRead();
  return true;
}

UringLoop::~UringLoop() {
  // Closing the ring cancels every operation; the kernel writes no buffer after that.
  if (ringUp_) io_uring_queue_exit(&ring_);
  for (const int fd : unsubmittedCloses_)
    ::close(fd);
  for (Slot& s : slots_) {
    if (s.state != State::kFree && s.fd >= 0) ::close(s.fd);
  }
  if (buffers_ != nullptr) ::munmap(buffers_, buffersBytes_);
  if (bufferRing_ != nullptr) ::munmap(bufferRing_, bufferRingBytes_);
}

// ---------------------------------------------------------------------------------------------
// Submission and waiting

io_uring_sqe* UringLoop::nextSqe() {
  for (int attempt = 0; attempt < 8; ++attempt) {
    if (io_uring_sqe* e = io_uring_get_sqe(&ring_)) return e;
    enter(false, 0);  // the queue is full: hand it to the kernel now
  }
  TERN_LOG_ERROR("io_uring: the kernel accepts no submissions; aborting");
  std::abort();
}

bool UringLoop::ringTaskRunPending() const noexcept {
  const unsigned flags = IO_URING_READ_ONCE(*ring_.sq.kflags);
  return (flags & (IORING_SQ_TASKRUN | IORING_SQ_CQ_OVERFLOW)) != 0;
}

void UringLoop::enter(bool wait, std::int64_t timeoutNanos) {
  if (disabled_) {
    // SINGLE_ISSUER: this thread becomes the ring's only submitter.
    io_uring_register(ring_.ring_fd, IORING_REGISTER_ENABLE_RINGS, nullptr, 0);
    ++counters_.syscalls;
    disabled_ = false;
  }
  ++counters_.submits;
  ++counters_.syscalls;
  unsubmittedCloses_.clear();  // SUBMIT_ALL: every queued entry goes now
  if (!wait) {
    io_uring_submit_and_get_events(&ring_);
    return;
  }
  ++counters_.waits;
  if (timeoutNanos < 0) {
    io_uring_submit_and_wait(&ring_, 1);
    return;
  }
  __kernel_timespec ts{};
  ts.tv_sec = timeoutNanos / 1'000'000'000;
  ts.tv_nsec = timeoutNanos % 1'000'000'000;
  io_uring_cqe* ignored = nullptr;
  io_uring_submit_and_wait_timeout(&ring_, &ignored, 1, &ts, nullptr);
}

void UringLoop::submitPending() {
  if (io_uring_sq_ready(&ring_) > 0 || ringTaskRunPending()) enter(false, 0);
}

std::int64_t UringLoop::waitLimit(std::int64_t timeoutNanos, std::int64_t now) const noexcept {
  std::int64_t limit = timeoutNanos;
  for (const Listener& l : listeners_) {
    if (l.retryAt == 0) continue;
    const std::int64_t until = l.retryAt > now ? l.retryAt - now : 0;
    if (limit < 0 || until < limit) limit = until;
  }
  return limit;
}

// ---------------------------------------------------------------------------------------------
// Buffers and wake-ups

void UringLoop::recycle(std::uint16_t buffer) noexcept {
  io_uring_buf_ring_add(bufferRing_, buffers_ + std::size_t{buffer} * options_.receiveBufferBytes,
                        static_cast<unsigned>(options_.receiveBufferBytes), buffer,
                        static_cast<int>(bufferMask_), 0);
  io_uring_buf_ring_advance(bufferRing_, 1);
}

void UringLoop::armWakeRead() {
  io_uring_sqe* e = nextSqe();
  io_uring_prep_read(e, wakeFd(), &wakeValue_, sizeof wakeValue_, 0);
  io_uring_sqe_set_data64(e, tag(Op::kWakeRead, 0, 0));
}

void UringLoop::wakeFrom(EventLoop& from) noexcept {
  if (!requestWake()) return;
  if (&from == this || from.backend() != IoBackend::kUring) {
    writeWakeFd();
    return;
  }
  // A MSG_RING from `from`'s ring posts a completion into ours, which ends our wait; it leaves
  // with `from`'s next submit. Success posts nothing in `from` (CQE_SKIP_SUCCESS).
  auto& source = static_cast<UringLoop&>(from);
  io_uring_sqe* e = io_uring_get_sqe(&source.ring_);
  if (e == nullptr) {
    writeWakeFd();
    return;
  }
  io_uring_prep_msg_ring(e, ring_.ring_fd, 0, tag(Op::kWakeMsg, 0, 0), 0);
  e->flags |= IOSQE_CQE_SKIP_SUCCESS;
  io_uring_sqe_set_data64(e, tag(Op::kIgnore, 0, 0));
  ++source.counters_.wakeMessages;
}

EventLoop::Counters UringLoop::counters() const noexcept {
  Counters c = counters_;
  c.wakeWrites = wakeWrites();
  return c;
}

// ---------------------------------------------------------------------------------------------
// Listeners

void UringLoop::addListener(int fd, int listenerTag) {
  std::uint32_t index = 0;
  while (index < listeners_.size() &&
         (listeners_[index].active || listeners_[index].acceptArmed || listeners_[index].pollArmed))
    ++index;
  if (index == listeners_.size()) listeners_.emplace_back();
  Listener& l = listeners_[index];
  l.fd = fd;
  l.tag = listenerTag;
  ++l.generation;
  l.active = true;
  l.retryAt = 0;
  armAccept(index);
}

void UringLoop::removeListener(int fd) {
  for (std::uint32_t index = 0; index < listeners_.size(); ++index) {
    Listener& l = listeners_[index];
    if (!l.active || l.fd != fd) continue;
    l.active = false;
    l.retryAt = 0;
    for (const Op op : {Op::kAccept, Op::kListenPoll}) {
      if (!(op == Op::kAccept ? l.acceptArmed : l.pollArmed)) continue;
      io_uring_sqe* e = nextSqe();
      io_uring_prep_cancel64(e, tag(op, index, l.generation), 0);
      e->flags |= IOSQE_CQE_SKIP_SUCCESS;
      io_uring_sqe_set_data64(e, tag(Op::kIgnore, 0, 0));
    }
  }
}

void UringLoop::armAccept(std::uint32_t index) {
  Listener& l = listeners_[index];
  io_uring_sqe* e = nextSqe();
  io_uring_prep_multishot_accept(e, l.fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
  io_uring_sqe_set_data64(e, tag(Op::kAccept, index, l.generation));
  l.acceptArmed = true;
}

void UringLoop::retryListeners(std::int64_t now) {
  for (std::uint32_t index = 0; index < listeners_.size(); ++index) {
    Listener& l = listeners_[index];
    if (l.retryAt == 0 || now < l.retryAt) continue;
    l.retryAt = 0;
    if (l.active && !l.acceptArmed && retakeSpare()) {
      armAccept(index);
    } else if (l.active && !l.acceptArmed) {
      l.retryAt = now + kAcceptRetryNanos;
    }
  }
}

void UringLoop::onAccept(std::uint32_t index, std::uint32_t generation, std::int32_t res,
                         std::uint32_t flags) {
  Listener& l = listeners_[index];
  if ((flags & IORING_CQE_F_MORE) == 0) l.acceptArmed = false;
  if (!l.active || l.generation != generation) {
    if (res >= 0) {
      ::close(res);  // accepted after removeListener(): nobody wants it
      ++counters_.syscalls;
    }
    return;
  }
  if (res >= 0) {
    setNoDelay(res);
    // Multishot accept has no address per completion: ask for it.
    sockaddr_storage peer{};
    socklen_t length = sizeof peer;
    ::getpeername(res, reinterpret_cast<sockaddr*>(&peer), &length);
    counters_.syscalls += 2;
    handler_.onAccept(l.tag, res, peer);
  } else if (res == -EMFILE || res == -ENFILE) {
    switch (shedPending(l.fd, -res, counters_.syscalls)) {
      case Shed::kShed:
        break;  // re-armed below: more may be pending
      case Shed::kNothingPending:
        // The kernel fails the accept before it looks for a connection: wait for one.
        if (!l.acceptArmed && !l.pollArmed) {
          io_uring_sqe* e = nextSqe();
          io_uring_prep_poll_add(e, l.fd, POLLIN);
          io_uring_sqe_set_data64(e, tag(Op::kListenPoll, index, l.generation));
          l.pollArmed = true;
        }
        return;
      case Shed::kNoSpare:
        l.retryAt = common::monotonicNanos() + kAcceptRetryNanos;
        return;
    }
  } else if (res != -ECONNABORTED && res != -EINTR && res != -EAGAIN) {
    // ENOBUFS, ENOMEM, or a listener that cannot accept: try again later, not in a busy loop.
    logAcceptPause(-res);
    l.retryAt = common::monotonicNanos() + kAcceptRetryNanos;
    return;
  }
  // (ECANCELED comes only after removeListener, handled above as inactive.)
  if (l.active && l.generation == generation && !l.acceptArmed && !l.pollArmed && l.retryAt == 0)
    armAccept(index);
}

}  // namespace tern::net
