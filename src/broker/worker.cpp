#include "worker.hpp"

#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <system_error>

#include "tern/common/clock.hpp"
#include "tern/common/log.hpp"

namespace tern::broker {
namespace {

constexpr std::uint64_t kWakeTag = ~std::uint64_t{0};
constexpr int kMaxEvents = 256;
constexpr std::size_t kReadChunk = 64 * 1024;
constexpr int kMaxReadsPerEvent = 4;      // then let other sockets have a turn
constexpr std::size_t kInboxBatch = 256;  // inbox items taken per pop
constexpr std::size_t kIdleBufferKeep = 64 * 1024;
// The largest read into a connection's own buffer (kReadChunk) on top of the largest frame.
constexpr std::size_t kInputSlack = kReadChunk;
// An unbound socket reads its handshake into its own buffer: small, since CONNECT/ATTACH are.
constexpr std::size_t kHandshakeReadChunk = 512;
// Buffers of connections found empty by this periodic sweep are freed, so that an idle
// connection holds no buffer memory (10k idle MQTT connections held 10 KiB each before); the same
// sweep enforces --frame-timeout and --session-expiry (a second late at most).
constexpr std::int64_t kSweepNanos = 1'000'000'000;
constexpr std::int64_t kShutdownFlushNanos = 2'000'000'000;
constexpr auto kThrottlePause = std::chrono::microseconds(200);

std::uint64_t tagOf(const Connection& c) noexcept {
  return (std::uint64_t{c.slot} << 32) | c.generation;
}

std::int64_t secondsToNanos(double seconds) noexcept {
  return static_cast<std::int64_t>(seconds * 1e9);
}

}  // namespace

Worker::Worker(BrokerContext& context, unsigned index)
    : context_(context),
      config_(context.config),
      index_(index),
      core_(context, index, context.config.workers, *this),
      line_(core_),
      mqtt_(core_),
      readBuffer_(new char[kReadChunk]) {
  core_.setHandlers(line_, mqtt_);
  epoll_ = ::epoll_create1(EPOLL_CLOEXEC);
  if (epoll_ < 0) throw std::system_error(errno, std::generic_category(), "epoll_create1");
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = kWakeTag;
  if (::epoll_ctl(epoll_, EPOLL_CTL_ADD, inbox_.wakeFd(), &ev) != 0) {
    throw std::system_error(errno, std::generic_category(), "epoll_ctl");
  }
}

Worker::~Worker() {
  join();
  if (epoll_ >= 0) ::close(epoll_);
  // Items still queued (only when the thread never ran): close sockets, free batches.
  InboxItem items[kInboxBatch];
  std::size_t n = 0;
  while ((n = inbox_.popBulk(items, kInboxBatch)) != 0) {
    for (std::size_t k = 0; k < n; ++k) {
      if (items[k].kind == InboxItem::Kind::kAccepted) {
        ::close(items[k].fd);
        context_.connections.release(items[k].peer);
      }
      if (items[k].connection != nullptr) {
        ::close(items[k].connection->fd);
        context_.connections.release(items[k].connection->peer);
        delete items[k].connection;
      }
      delete items[k].batch;
    }
  }
}

void Worker::start() {
  thread_ = std::thread([this] { run(); });
}

void Worker::join() {
  if (thread_.joinable()) thread_.join();
}

void Worker::run() {
  owner_.bind();
  reader_ = std::make_unique<sync::QsbrDomain::Reader>(sync::QsbrDomain::global());
  while (context_.stopStage.load(std::memory_order_acquire) == 0) {
    loopTurn(core_.jobs.runnable() ? 0 : nextTimeoutMs(), true);
  }
  shutdown();
  reader_.reset();
}

int Worker::nextTimeoutMs() const {
  const bool sweep =
      connections_.size() > freeConnectionSlots_.size() || core_.sessions.expiriesPending();
  if (deadlines_.empty() && !sweep) return -1;
  std::int64_t when = deadlines_.empty() ? nextSweep_ : deadlines_.top().when;
  if (sweep) when = std::min(when, nextSweep_);
  const std::int64_t wait = when - common::monotonicNanos();
  if (wait <= 0) return 0;
  return static_cast<int>(std::min<std::int64_t>(wait / 1'000'000 + 1, 60'000));
}

void Worker::loopTurn(int timeoutMs, bool mayBlock) {
  epoll_event events[kMaxEvents];
  int n = 0;
  // Block only when nothing is waiting in the inbox; while blocked, this thread is offline for
  // QSBR so that it never delays a grace period.
  if (mayBlock && timeoutMs != 0 && inbox_.prepareToSleep()) {
    reader_->offline();
    n = ::epoll_wait(epoll_, events, kMaxEvents, timeoutMs);
    reader_->online();
    inbox_.finishSleep();
  } else {
    n = ::epoll_wait(epoll_, events, kMaxEvents, 0);
  }
  throttled_ = core_.fanout.destinationsOverloaded();
  checkMemory();
  core_.fanout.collectReturned();
  for (int k = 0; k < n; ++k) {
    if (events[k].data.u64 == kWakeTag) continue;  // the inbox is drained below
    onEvent(events[k].data.u64, events[k].events);
  }
  drainInbox();
  checkDeadlines();
  sweep();
  core_.jobs.runAll();
  core_.fanout.flush();
  // Flushing can close connections, and closing can end sessions and mark more sockets dirty.
  while (!dirty_.empty()) {
    flushing_.swap(dirty_);
    for (Connection* c : flushing_) {
      c->dirty = false;
      if (!c->closed) flush(*c);
    }
    flushing_.clear();
  }
  // Closing a connection above can publish an MQTT will: send what it routed to other workers now,
  // not after this worker's next wake-up.
  core_.fanout.flush();
  core_.jobs.wakeIfRoom();
  reapClosed();
  // Published before this worker may sleep, so that the others never judge the memory limit by
  // a figure older than this worker's last turn.
  core_.stats.memoryBytes.store(core_.memory.bytes, std::memory_order_relaxed);
  reader_->quiescent();
  // Throttled: the unread sockets stay readable, so epoll would return at once; give the
  // overloaded worker the CPU instead of spinning.
  if (throttled_ && inbox_.sizeApprox() == 0) std::this_thread::sleep_for(kThrottlePause);
}

// ---------------------------------------------------------------------------------------------
// Connections

Connection* Worker::attach(std::unique_ptr<Connection> owned) {
  TERN_ASSERT_OWNER(owner_);
  std::uint32_t slot;
  if (!freeConnectionSlots_.empty()) {
    slot = freeConnectionSlots_.back();
    freeConnectionSlots_.pop_back();
  } else {
    slot = static_cast<std::uint32_t>(connections_.size());
    connections_.push_back(nullptr);
    slotGeneration_.push_back(0);
  }
  Connection* c = owned.release();
  c->owner.bind();
  // Buffers are charged to this worker; their growth stops at the bounds their users keep (the
  // largest frame plus one read for input, the output bound for output).
  c->in.setAccount(&core_.memory);
  c->in.setGrowthLimit(std::max(config_.maxLine, config_.maxPacketSize) + kInputSlack);
  c->out.setAccount(&core_.memory);
  c->out.setGrowthLimit(config_.maxQueuedBytes);
  c->slot = slot;
  c->generation = ++slotGeneration_[slot];
  c->interest = 0;
  c->registered = false;
  connections_[slot] = c;
  WorkerStats::add(core_.stats.sockets, std::int64_t{1});
  WorkerStats::add(core_.stats.connections, std::uint64_t{1});
  setInterest(*c);
  if (c->role == SocketRole::kUnbound) deadlines_.push({c->deadline, slot, c->generation});
  return c;
}

void Worker::setInterest(Connection& c) {
  std::uint32_t want = 0;
  if (core_.reading && !c.closing && !c.inputHeld()) want |= EPOLLIN;
  if (!c.out.empty()) want |= EPOLLOUT;
  if (c.registered && want == c.interest) return;
  epoll_event ev{};
  ev.events = want;  // level-triggered; a registered socket with no interest stays in the set
  ev.data.u64 = tagOf(c);
  if (::epoll_ctl(epoll_, c.registered ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, c.fd, &ev) != 0) {
    TERN_LOG_ERROR("epoll_ctl on fd {} failed: {}", c.fd, std::strerror(errno));
  }
  c.registered = true;
  c.interest = want;
}

void Worker::onEvent(std::uint64_t tag, std::uint32_t events) {
  const auto slot = static_cast<std::uint32_t>(tag >> 32);
  const auto generation = static_cast<std::uint32_t>(tag);
  if (slot >= connections_.size()) return;
  Connection* c = connections_[slot];
  if (c == nullptr || c->generation != generation || c->closed) return;  // stale event
  if ((events & EPOLLOUT) != 0) {
    flush(*c);
    if (c->closed) return;
  }
  if ((c->interest & EPOLLIN) != 0 && (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) != 0) {
    if (!throttled_) readFrom(*c);  // a hang-up or error shows up as a read of 0 or -1
  } else if ((events & (EPOLLHUP | EPOLLERR)) != 0) {
    // Not reading (closing, paused or shutting down) and the peer is gone: nothing can be
    // delivered any more, and level-triggered HUP would fire every turn.
    closeNow(*c);
  }
}

void Worker::readFrom(Connection& c) {
  for (int i = 0; i < kMaxReadsPerEvent; ++i) {
    // A bound socket with nothing pending is read into the worker's buffer and handled in place;
    // only an incomplete frame at the end is copied into the connection. So busy sockets share
    // one 64 KiB buffer instead of holding one each. An unbound socket (whose CONNECT/ATTACH may
    // hand it to another worker with its unread bytes) or one with a partial frame pending reads
    // into its own buffer.
    const bool direct = c.in.empty() && c.role != SocketRole::kUnbound;
    // What c.in holds before this read is one incomplete frame: input is read only after the
    // previous processInput ended wanting more (paused, closing or handed-over connections are
    // not read). Those bytes were already searched for a frame end.
    const std::size_t searched = c.in.size();
    std::span<char> space =
        direct ? std::span<char>(readBuffer_.get(), kReadChunk)
               : c.in.writable(c.role == SocketRole::kUnbound ? kHandshakeReadChunk : kReadChunk);
    const ssize_t n = ::read(c.fd, space.data(), space.size());
    if (n > 0) {
      const std::uint64_t framesBefore = framesHandled_;
      const InputState state =
          direct ? processDirect(c, {space.data(), static_cast<std::size_t>(n)})
                 : (c.in.commit(static_cast<std::size_t>(n)), processInput(c, searched));
      // Handed over: `c` belongs to another worker now and must not be touched.
      if (state == InputState::kGone) return;
      noteFrameProgress(c, framesHandled_ != framesBefore);
      // Closed or paused: stop here.
      if (state != InputState::kMore) return;
      if (static_cast<std::size_t>(n) < space.size()) return;  // drained the socket
      continue;
    }
    if (n == 0) {
      // The peer finished sending. Replies to what it sent are flushed, then the socket closes.
      closeAfterFlush(c);
      return;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return;
    TERN_LOG_DEBUG("read failed on fd {}: {}", c.fd, std::strerror(errno));
    closeNow(c);
    return;
  }
}

InputState Worker::processInput(Connection& c, std::size_t searched) {
  const auto drop = [this, &c](std::size_t n) {
    c.in.consume(n);
    ++framesHandled_;
  };
  return core_.handler(c.protocol).onInput(c, c.in.view(), searched, drop);
}

InputState Worker::processDirect(Connection& c, std::string_view data) {
  std::size_t used = 0;
  const auto advance = [this, &used](std::size_t n) {
    used += n;
    ++framesHandled_;
  };
  const InputState state = core_.handler(c.protocol).onInput(c, data, 0, advance);
  // A bound connection is never handed over, so `c` is still ours. Keep what was not handled:
  // an incomplete frame, or the rest of the read when reading paused.
  if (!c.closing && !c.closed && used < data.size()) c.in.append(data.substr(used));
  return state;
}

void Worker::pauseInput(Connection& c) {
  c.readPaused = true;
  setInterest(c);
  send(c);
}

void Worker::resumeInput(Connection& c) {
  setInterest(c);
  // Frames may already be buffered; no new read event would announce them.
  const std::uint64_t framesBefore = framesHandled_;
  processInput(c);
  noteFrameProgress(c, framesHandled_ != framesBefore);
}

void Worker::releaseInput(Connection& c) {
  resumeInput(c);
}

void Worker::send(Connection& c) {
  if (c.dirty || c.closed) return;
  c.dirty = true;
  dirty_.push_back(&c);
}

void Worker::startKeepAlive(Connection& c, std::int64_t nanos) {
  c.keepAliveNanos = nanos;
  c.lastActivity = common::monotonicNanos();
  deadlines_.push({c.lastActivity + nanos, c.slot, c.generation});
}

void Worker::flush(Connection& c) {
  while (!c.out.empty()) {
    const std::string_view pending = c.out.view();
    const ssize_t n = ::send(c.fd, pending.data(), pending.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      c.out.consume(static_cast<std::size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      setInterest(c);  // wait for EPOLLOUT
      return;
    }
    TERN_LOG_DEBUG("write failed on fd {}: {}", c.fd, std::strerror(errno));
    closeNow(c);
    return;
  }
  c.out.releaseIfIdle(kIdleBufferKeep);
  if (c.closing) {
    closeNow(c);
    return;
  }
  setInterest(c);
  if (c.readPaused && c.out.size() <= config_.maxQueuedBytes / 2) {
    c.readPaused = false;
    resumeInput(c);
  }
}

void Worker::closeAfterFlush(Connection& c) {
  if (c.closing || c.closed) return;
  c.closing = true;
  // Half-close our reading side is not needed: we stop polling for input instead.
  c.deadline = common::monotonicNanos() + secondsToNanos(config_.closeLingerSeconds);
  deadlines_.push({c.deadline, c.slot, c.generation});
  setInterest(c);
  send(c);
}

void Worker::closeNow(Connection& c) {
  if (c.closed) return;
  c.closed = true;
  ::epoll_ctl(epoll_, EPOLL_CTL_DEL, c.fd, nullptr);
  ::close(c.fd);
  c.fd = -1;
  context_.connections.release(c.peer);
  if (c.jobs) core_.jobs.drop(c);
  WorkerStats::add(core_.stats.sockets, std::int64_t{-1});
  connections_[c.slot] = nullptr;
  ++slotGeneration_[c.slot];
  freeConnectionSlots_.push_back(c.slot);
  core_.connectionGone(c);
  graveyard_.push_back(&c);
}

void Worker::handOver(Connection& c, unsigned worker) {
  // Leave no trace here: after the push below the connection belongs to the other worker.
  ::epoll_ctl(epoll_, EPOLL_CTL_DEL, c.fd, nullptr);
  c.interest = 0;
  c.registered = false;
  if (c.dirty) {
    dirty_.erase(std::remove(dirty_.begin(), dirty_.end(), &c), dirty_.end());
    c.dirty = false;
  }
  connections_[c.slot] = nullptr;
  ++slotGeneration_[c.slot];
  freeConnectionSlots_.push_back(c.slot);
  WorkerStats::add(core_.stats.sockets, std::int64_t{-1});
  c.in.setAccount(nullptr);  // the new owner charges them to itself
  c.out.setAccount(nullptr);
  InboxItem item;
  item.kind = InboxItem::Kind::kHandover;
  item.connection = &c;
  context_.workers[worker]->post(std::move(item));
}

void Worker::reapClosed() {
  for (Connection* c : graveyard_)
    delete c;
  graveyard_.clear();
  core_.sessions.reap();
}

void Worker::sweep() {
  const std::int64_t now = common::monotonicNanos();
  if (now < nextSweep_) return;
  nextSweep_ = now + kSweepNanos;
  const std::int64_t frameTimeout = secondsToNanos(config_.frameTimeoutSeconds);
  std::uint64_t held = 0;
  for (Connection* c : connections_) {
    if (c == nullptr || c->closed) continue;
    if (c->frameStarted != 0 && now - c->frameStarted > frameTimeout && !c->closing) {
      WorkerStats::add(core_.stats.closedFrameTimeout, std::uint64_t{1});
      if (const std::uint64_t times = frameTimeoutLog_.admit(now)) {
        TERN_LOG_WARN(
            "closed {} connection(s) (last from {}): a frame took longer than "
            "--frame-timeout ({} s) to arrive",
            times, net::toString(c->peer), config_.frameTimeoutSeconds);
      }
      closeNow(*c);
      continue;
    }
    c->in.releaseIfIdle(0);
    c->out.releaseIfIdle(0);
    held += c->in.capacity() + c->out.capacity();
    if (c->session != nullptr && c->session->mqtt != nullptr) {
      c->session->mqtt->awaitingRelease.releaseIfEmpty();
      c->session->mqtt->outboundIds.releaseIfEmpty();
    }
  }
  core_.stats.bufferBytes.store(held, std::memory_order_relaxed);
  core_.sessions.expire(now, [this](Session& expired) {
    TERN_LOG_INFO("MQTT session {} expired after {} s offline (--session-expiry)", expired.clientId,
                  config_.sessionExpirySeconds);
    WorkerStats::add(core_.stats.expiredSessions, std::uint64_t{1});
    core_.endSession(expired);
  });
}

void Worker::noteFrameProgress(Connection& c, bool completedFrame) noexcept {
  if (!completedFrame && (c.in.empty() || c.frameStarted != 0)) return;  // the common cases
  const std::int64_t now = common::monotonicNanos();
  // A complete MQTT packet is what keeps the connection alive, not bytes [MQTT-3.1.2-24].
  if (completedFrame && c.keepAliveNanos != 0) c.lastActivity = now;
  c.frameStarted = c.in.empty() ? 0 : now;
}

void Worker::checkMemory() noexcept {
  std::int64_t total = 0;
  for (const auto& w : context_.workers)
    total += w->stats().memoryBytes.load(std::memory_order_relaxed);
  core_.overMemory = total > static_cast<std::int64_t>(config_.memoryLimit);
}

void Worker::checkDeadlines() {
  if (deadlines_.empty()) return;
  const std::int64_t now = common::monotonicNanos();
  while (!deadlines_.empty() && deadlines_.top().when <= now) {
    const Deadline d = deadlines_.top();
    deadlines_.pop();
    if (d.slot >= connections_.size()) continue;
    Connection* c = connections_[d.slot];
    if (c == nullptr || c->generation != d.generation || c->closed) continue;
    if (c->closing) {
      if (c->deadline <= now) closeNow(*c);  // the peer does not read its last bytes
    } else if (c->role == SocketRole::kUnbound) {
      if (c->deadline <= now) {
        TERN_LOG_DEBUG("closing fd {}: no CONNECT/ATTACH within the handshake timeout", c->fd);
        closeNow(*c);
      }
    } else if (c->keepAliveNanos != 0) {
      // MQTT keep-alive: checked lazily; each check schedules the next one. While the broker
      // itself does not read (flow control), the client's packets wait in the socket: not its
      // fault.
      if (c->inputHeld()) c->lastActivity = now;
      const std::int64_t expiry = c->lastActivity + c->keepAliveNanos;
      if (expiry <= now) {
        TERN_LOG_DEBUG("closing MQTT fd {}: keep-alive expired", c->fd);
        WorkerStats::add(core_.stats.closedKeepAlive, std::uint64_t{1});
        closeNow(*c);
      } else {
        deadlines_.push({expiry, c->slot, c->generation});
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Inbox and cross-worker delivery

void Worker::drainInbox() {
  InboxItem items[kInboxBatch];
  for (;;) {
    const std::size_t n = inbox_.popBulk(items, kInboxBatch);
    for (std::size_t k = 0; k < n; ++k) {
      InboxItem& item = items[k];
      switch (item.kind) {
        case InboxItem::Kind::kAccepted: {
          auto c = std::make_unique<Connection>();
          c->fd = item.fd;
          c->protocol = item.protocol;
          c->peer = item.peer;
          c->deadline = common::monotonicNanos() + secondsToNanos(config_.handshakeTimeoutSeconds);
          attach(std::move(c));
          break;
        }
        case InboxItem::Kind::kHandover: {
          Connection* c = attach(std::unique_ptr<Connection>(item.connection));
          if (!c->out.empty()) send(*c);
          // The CONNECT/ATTACH that sent it here is still buffered (and maybe more after it).
          if (core_.reading) {
            const std::uint64_t framesBefore = framesHandled_;
            if (processInput(*c) != InputState::kGone) {
              noteFrameProgress(*c, framesHandled_ != framesBefore);
            }
          }
          break;
        }
        case InboxItem::Kind::kDeliveries:
          core_.fanout.receive(item.batch,
                               [this](routing::SubscriberId id, const common::Message& m) {
                                 core_.deliverTo(id, m);
                               });
          break;
      }
    }
    if (n < kInboxBatch) return;
  }
}

// ---------------------------------------------------------------------------------------------
// Shutdown

void Worker::shutdown() {
  // Stage 1: stop reading, send what this worker routed to the others, and report.
  core_.reading = false;
  for (Connection* c : connections_) {
    if (c != nullptr && !c->closed) setInterest(*c);
  }
  core_.fanout.flush();
  context_.stoppedReading.fetch_add(1, std::memory_order_acq_rel);
  while (context_.stopStage.load(std::memory_order_acquire) < 2)
    loopTurn(50, true);
  // Stage 2: no worker produces deliveries any more. Deliver what arrived and flush every socket
  // for a bounded time, then close everything.
  const std::int64_t giveUp = common::monotonicNanos() + kShutdownFlushNanos;
  for (;;) {
    bool pending = inbox_.sizeApprox() != 0;
    for (Connection* c : connections_) {
      if (c != nullptr && !c->closed && !c->out.empty()) {
        send(*c);
        pending = true;
      }
    }
    if (!pending || common::monotonicNanos() >= giveUp) break;
    loopTurn(10, true);
  }
  for (Connection* c : connections_) {
    if (c != nullptr && !c->closed) closeNow(*c);
  }
  reapClosed();
}

}  // namespace tern::broker
