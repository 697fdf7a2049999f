#include "worker.hpp"

#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <system_error>

#include "tern/common/clock.hpp"
#include "tern/common/log.hpp"
#include "tern/protocol/json_writer.hpp"
#include "tern/protocol/line_framing.hpp"

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
constexpr std::size_t kSpareBatches = 16;
constexpr std::int64_t kShutdownFlushNanos = 2'000'000'000;
// Flow control between workers: while another worker has more than this many deliveries waiting
// in its inbox, this worker stops reading input (TCP then holds the publishers back) and only
// delivers and flushes. Bounds the memory a slow worker can pile up, without dropping anything.
constexpr std::int64_t kMaxBacklog = 128 * 1024;
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
      mqttDecoder_(protocol::mqtt::DecoderConfig{context.config.maxPacketSize,
                                                 protocol::mqtt::Role::kServer}),
      readBuffer_(new char[kReadChunk]) {
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
  outboxes_.resize(context_.workers.size());
  thread_ = std::thread([this] { run(); });
}

void Worker::join() {
  if (thread_.joinable()) thread_.join();
}

void Worker::run() {
  owner_.bind();
  reader_ = std::make_unique<sync::QsbrDomain::Reader>(sync::QsbrDomain::global());
  while (context_.stopStage.load(std::memory_order_acquire) == 0) {
    loopTurn(jobsRunnable_ ? 0 : nextTimeoutMs(), true);
  }
  shutdown();
  reader_.reset();
}

int Worker::nextTimeoutMs() const {
  const bool sweep = connections_.size() > freeConnectionSlots_.size() || !sessionExpiries_.empty();
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
  throttled_ = destinationsOverloaded();
  checkMemory();
  for (int k = 0; k < n; ++k) {
    if (events[k].data.u64 == kWakeTag) continue;  // the inbox is drained below
    onEvent(events[k].data.u64, events[k].events);
  }
  drainInbox();
  checkDeadlines();
  sweep();
  runJobs();
  flushOutboxes();
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
  flushOutboxes();
  wakeJobsWithRoom();
  reapClosed();
  // Published before this worker may sleep, so that the others never judge the memory limit by
  // a figure older than this worker's last turn.
  stats_.memoryBytes.store(memory_.bytes, std::memory_order_relaxed);
  reader_->quiescent();
  // Throttled: the unread sockets stay readable, so epoll would return at once; give the
  // overloaded worker the CPU instead of spinning.
  if (throttled_ && inbox_.sizeApprox() == 0) std::this_thread::sleep_for(kThrottlePause);
}

bool Worker::destinationsOverloaded() const noexcept {
  for (const auto& w : context_.workers) {
    if (w.get() != this && w->backlog() > kMaxBacklog) return true;
  }
  return false;
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
  c->in.setAccount(&memory_);
  c->in.setGrowthLimit(std::max(config_.maxLine, config_.maxPacketSize) + kInputSlack);
  c->out.setAccount(&memory_);
  c->out.setGrowthLimit(config_.maxQueuedBytes);
  c->slot = slot;
  c->generation = ++slotGeneration_[slot];
  c->interest = 0;
  c->registered = false;
  connections_[slot] = c;
  WorkerStats::add(stats_.sockets, std::int64_t{1});
  WorkerStats::add(stats_.connections, std::uint64_t{1});
  setInterest(*c);
  if (c->role == SocketRole::kUnbound) deadlines_.push({c->deadline, slot, c->generation});
  return c;
}

void Worker::setInterest(Connection& c) {
  std::uint32_t want = 0;
  if (reading_ && !c.closing && !c.inputHeld()) want |= EPOLLIN;
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

Worker::InputState Worker::processInput(Connection& c, std::size_t searched) {
  const auto drop = [this, &c](std::size_t n) {
    c.in.consume(n);
    ++framesHandled_;
  };
  if (c.protocol == Protocol::kMqtt) return handlePackets(c, c.in.view(), drop);
  return handleLines(c, c.in.view(), searched, drop);
}

Worker::InputState Worker::processDirect(Connection& c, std::string_view data) {
  std::size_t used = 0;
  const auto advance = [this, &used](std::size_t n) {
    used += n;
    ++framesHandled_;
  };
  const InputState state = c.protocol == Protocol::kMqtt ? handlePackets(c, data, advance)
                                                         : handleLines(c, data, 0, advance);
  // A bound connection is never handed over, so `c` is still ours. Keep what was not handled:
  // an incomplete frame, or the rest of the read when reading paused.
  if (!c.closing && !c.closed && used < data.size()) c.in.append(data.substr(used));
  return state;
}

Worker::InputState Worker::handleLines(Connection& c, std::string_view data, std::size_t searched,
                                       common::FunctionRef<void(std::size_t)> commit) {
  for (;;) {
    if (c.closing || c.closed || c.inputHeld()) return InputState::kStopped;
    if (data.empty()) return InputState::kMore;
    const protocol::LineFrame next = protocol::nextLineFrame(data, config_.maxLine, searched);
    searched = 0;  // the hint covers the first frame only
    if (next.status == protocol::LineFrame::Status::kNeedMore) return InputState::kMore;
    if (next.status == protocol::LineFrame::Status::kTooLong) {
      replyError(c, protocol::LineError::kTooLong, "frame longer than the limit (--max-line)");
      closeAfterFlush(c);
      return InputState::kStopped;
    }
    // The frame stays in place while it is handled: a hand-over carries it along unconsumed.
    if (!next.frame.empty() && onLineFrame(c, next.frame) == Outcome::kHandedOver) {
      return InputState::kGone;
    }
    commit(next.consumed);
    data.remove_prefix(next.consumed);
    if (c.out.size() > config_.maxQueuedBytes && !c.closing) pauseReading(c);
  }
}

void Worker::pauseReading(Connection& c) {
  c.readPaused = true;
  setInterest(c);
  markDirty(c);
}

void Worker::resumeReading(Connection& c) {
  c.readPaused = false;
  setInterest(c);
  // Frames may already be buffered; no new read event would announce them.
  const std::uint64_t framesBefore = framesHandled_;
  processInput(c);
  noteFrameProgress(c, framesHandled_ != framesBefore);
}

void Worker::markDirty(Connection& c) {
  if (c.dirty || c.closed) return;
  c.dirty = true;
  dirty_.push_back(&c);
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
  if (c.readPaused && c.out.size() <= config_.maxQueuedBytes / 2) resumeReading(c);
}

void Worker::closeAfterFlush(Connection& c) {
  if (c.closing || c.closed) return;
  c.closing = true;
  // Half-close our reading side is not needed: we stop polling for input instead.
  c.deadline = common::monotonicNanos() + secondsToNanos(config_.closeLingerSeconds);
  deadlines_.push({c.deadline, c.slot, c.generation});
  setInterest(c);
  markDirty(c);
}

void Worker::closeNow(Connection& c) {
  if (c.closed) return;
  c.closed = true;
  ::epoll_ctl(epoll_, EPOLL_CTL_DEL, c.fd, nullptr);
  ::close(c.fd);
  c.fd = -1;
  context_.connections.release(c.peer);
  if (c.jobs) dropJobs(c);
  WorkerStats::add(stats_.sockets, std::int64_t{-1});
  connections_[c.slot] = nullptr;
  ++slotGeneration_[c.slot];
  freeConnectionSlots_.push_back(c.slot);
  detachFromSession(c);
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
  WorkerStats::add(stats_.sockets, std::int64_t{-1});
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
  endedSessions_.clear();
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
      WorkerStats::add(stats_.closedFrameTimeout, std::uint64_t{1});
      if (const std::uint64_t times = limitLog_.admit(now)) {
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
  }
  stats_.bufferBytes.store(held, std::memory_order_relaxed);
  while (!sessionExpiries_.empty() && sessionExpiries_.top().when <= now) {
    const Deadline d = sessionExpiries_.top();
    sessionExpiries_.pop();
    if (d.slot >= sessions_.size() || sessionGeneration_[d.slot] != d.generation) continue;
    Session& expired = *sessions_[d.slot];
    // Still offline since that deadline was set (a reconnect clears expiresAt; going offline again
    // pushes a later deadline)?
    if (expired.mqtt->expiresAt == 0 || expired.mqtt->expiresAt > now) continue;
    TERN_LOG_INFO("MQTT session {} expired after {} s offline (--session-expiry)", expired.clientId,
                  config_.sessionExpirySeconds);
    WorkerStats::add(stats_.expiredSessions, std::uint64_t{1});
    endSession(expired);
  }
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
  overMemory_ = total > static_cast<std::int64_t>(config_.memoryLimit);
}

void Worker::countDrop(Session& s, std::atomic<std::uint64_t>& reason) {
  ++s.dropped;
  WorkerStats::add(stats_.dropped, std::uint64_t{1});
  WorkerStats::add(reason, std::uint64_t{1});
  if (&reason == &stats_.droppedMemory) {
    if (const std::uint64_t times = memoryLog_.admit(common::monotonicNanos())) {
      TERN_LOG_WARN("memory limit ({} bytes, --memory-limit) reached: dropped {} deliveries",
                    config_.memoryLimit, times);
    }
  }
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
        WorkerStats::add(stats_.closedKeepAlive, std::uint64_t{1});
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
          if (!c->out.empty()) markDirty(*c);
          // The CONNECT/ATTACH that sent it here is still buffered (and maybe more after it).
          if (reading_) {
            const std::uint64_t framesBefore = framesHandled_;
            if (processInput(*c) != InputState::kGone) {
              noteFrameProgress(*c, framesHandled_ != framesBefore);
            }
          }
          break;
        }
        case InboxItem::Kind::kDeliveries:
          deliverBatch(*item.batch);
          item.batch->clear();
          if (sparePool_.size() < kSpareBatches) {
            sparePool_.emplace_back(item.batch);
          } else {
            delete item.batch;
          }
          break;
      }
    }
    if (n < kInboxBatch) return;
  }
}

void Worker::deliverBatch(DeliveryBatch& batch) {
  std::size_t next = 0;
  for (const DeliveryBatch::Run& run : batch.runs) {
    for (std::uint32_t k = 0; k < run.count; ++k) {
      const routing::SubscriberId id = batch.targets[next++];
      if (Session* s = sessionFor(id)) deliver(*s, *run.message, id.qos(), false);
    }
  }
  backlog_.value.fetch_sub(static_cast<std::int64_t>(batch.targets.size()),
                           std::memory_order_relaxed);
}

void Worker::flushOutboxes() {
  for (std::size_t w = 0; w < outboxes_.size(); ++w) {
    std::unique_ptr<DeliveryBatch>& batch = outboxes_[w];
    if (!batch || batch->empty()) continue;
    Worker& destination = *context_.workers[w];
    destination.backlog_.value.fetch_add(static_cast<std::int64_t>(batch->targets.size()),
                                         std::memory_order_relaxed);
    InboxItem item;
    item.kind = InboxItem::Kind::kDeliveries;
    item.batch = batch.release();
    destination.post(std::move(item));
  }
}

void Worker::route(const common::Message& message) {
  context_.trie.match(message.topic(), match_);
  for (const routing::SubscriberId id : match_.subscribers()) {
    const unsigned worker = id.worker();
    if (worker == index_) {
      if (Session* s = sessionFor(id)) deliver(*s, message, id.qos(), false);
      continue;
    }
    std::unique_ptr<DeliveryBatch>& batch = outboxes_[worker];
    if (!batch) {
      if (!sparePool_.empty()) {
        batch = std::move(sparePool_.back());
        sparePool_.pop_back();
      } else {
        batch = std::make_unique<DeliveryBatch>();
      }
    }
    batch->add(message, id);
  }
}

void Worker::deliver(Session& s, const common::Message& message, unsigned grantedQos,
                     bool retained) {
  if (s.protocol == Protocol::kMqtt) {
    mqttDeliver(s, message, grantedQos, retained);
    return;
  }
  pushMessage(s, message, retained);
}

void Worker::pushMessage(Session& s, const common::Message& message, bool retained) {
  if (!message.lineSafe()) {
    // An MQTT message the line protocol cannot frame ('@' or LF in the topic, LF in the payload):
    // writing it would forge frames, so it is not delivered to line sessions, and counted as
    // dropped for them.
    countDrop(s, stats_.droppedUnframable);
    return;
  }
  const std::string_view prefix = retained ? "RETAINED@" : "MESSAGE@";
  net::ByteBuffer& out = s.pushTarget();
  if (out.size() + prefix.size() + message.lineTail().size() > config_.maxQueuedBytes) {
    if (s.dropped == 0) {
      TERN_LOG_WARN("session {}: push queue full ({} bytes): dropping messages until it drains",
                    s.clientId, out.size());
    }
    countDrop(s, stats_.droppedQueueFull);
    return;
  }
  if (overMemory_ && out.size() > kOverMemoryAllowance) {
    countDrop(s, stats_.droppedMemory);  // a consumer that keeps up is not held back
    return;
  }
  out.append(prefix, message.lineTail());
  WorkerStats::add(stats_.delivered, std::uint64_t{1});
  if (s.push != nullptr) markDirty(*s.push);
}

// ---------------------------------------------------------------------------------------------
// Jobs: retained replay and LIST, a bounded slice per loop turn

void Worker::startJob(Connection& c, Job&& job) {
  if (!c.jobs) c.jobs = std::make_unique<JobQueue>();
  if (c.jobs->empty()) busy_.push_back(&c);
  if (job.kind == Job::Kind::kList) {
    c.out.append("LIST@{");
    job.listOpened = true;
    markDirty(c);
  }
  c.jobs->push_back(std::move(job));
  // A line request socket handles one request at a time; an MQTT connection goes on reading
  // (its jobs may wait for acknowledgements behind in its input) until it has kMaxJobs.
  c.heldByJobs = c.protocol == Protocol::kLine || c.jobs->size() >= kMaxJobs;
  // The first slice runs now: most replays are small and finish here, and the request that
  // started the job (being handled by our caller) is followed by the next one at once.
  if (runJobsOf(c)) {
    busy_.erase(std::remove(busy_.begin(), busy_.end(), &c), busy_.end());
    c.jobs.reset();  // an idle connection holds no queue (a deque allocates ~600 bytes)
    c.heldByJobs = false;
  }
}

void Worker::runJobs() {
  jobsRunnable_ = false;
  if (busy_.empty()) return;
  busyScratch_.swap(busy_);
  busy_.clear();
  for (Connection* c : busyScratch_) {
    if (c->closed || !c->jobs || c->jobs->empty()) continue;
    if (c->closing || c->session == nullptr) {
      dropJobs(*c);
      continue;
    }
    busy_.push_back(c);
    if (runJobsOf(*c)) finishJobs(*c);
  }
  busyScratch_.clear();
}

bool Worker::runJobsOf(Connection& c) {
  std::size_t budget = kJobSliceUnits;
  while (!c.jobs->empty() && budget > 0) {
    Job& job = c.jobs->front();
    bool refused = false;
    const bool done = job.cursor.resume(context_.retained, budget, [&](const common::Message& m) {
      refused = !takeForJob(c, job, m);
      return !refused;
    });
    const std::size_t used = job.cursor.lastSlice().units;
    budget = used >= budget ? 0 : budget - used;
    const std::size_t held = job.cursor.memoryBytes();
    memory_.bytes += static_cast<std::int64_t>(held) - static_cast<std::int64_t>(job.charged);
    job.charged = held;
    if (!done) {
      // Out of budget: come back next turn without sleeping. Refused: the output is full, and
      // its draining (or the acknowledgements that free the MQTT window) wakes the loop.
      if (!refused) jobsRunnable_ = true;
      return false;
    }
    if (job.kind == Job::Kind::kList) {
      c.out.append("}\n");
      markDirty(c);
    }
    memory_.bytes -= static_cast<std::int64_t>(job.charged);
    c.jobs->pop_front();
  }
  if (!c.jobs->empty()) {
    jobsRunnable_ = true;
    return false;
  }
  return true;
}

void Worker::wakeJobsWithRoom() noexcept {
  // Output that the flush above emptied does not announce itself (no EPOLLOUT is armed while
  // writes succeed): jobs that wait for room must look.
  for (Connection* c : busy_) {
    if (jobsRunnable_) return;
    if (c->closed || !c->jobs || c->jobs->empty() || c->session == nullptr) continue;
    const Job& job = c->jobs->front();
    if (job.waitingFor != Job::Wait::kOutput) continue;
    const net::ByteBuffer& target =
        job.kind == Job::Kind::kLineReplay ? c->session->pushTarget() : c->out;
    if (target.size() <= config_.maxQueuedBytes / 2) jobsRunnable_ = true;
  }
}

bool Worker::takeForJob(Connection& c, Job& job, const common::Message& m) {
  job.waitingFor = Job::Wait::kNothing;
  Session& s = *c.session;
  switch (job.kind) {
    case Job::Kind::kLineReplay: {
      // Waits while the push queue is full instead of dropping (a message larger than the whole
      // bound goes to pushMessage, which drops and counts it).
      const net::ByteBuffer& target = s.pushTarget();
      const std::size_t frame = 9 + m.lineTail().size();
      if (!target.empty() && target.size() + frame > config_.maxQueuedBytes) {
        job.waitingFor = Job::Wait::kOutput;
        return false;
      }
      pushMessage(s, m, true);
      return true;
    }
    case Job::Kind::kMqttReplay: {
      if (c.out.size() > config_.maxQueuedBytes / 2) {
        job.waitingFor = Job::Wait::kOutput;
        return false;
      }
      // QoS 1/2: at the pace of the client's acknowledgements, unless its input is held (then
      // the acknowledgements cannot arrive, and the session's queue bound decides).
      const bool acknowledged = std::min<unsigned>(m.qos(), job.qos) > 0;
      if (acknowledged && !c.heldByJobs && s.mqtt->queue.size() >= config_.maxInflight) {
        job.waitingFor = Job::Wait::kAcknowledgement;
        return false;
      }
      mqttDeliver(s, m, job.qos, true);
      return true;
    }
    case Job::Kind::kList: {
      if (c.out.size() > config_.maxQueuedBytes / 2) {
        job.waitingFor = Job::Wait::kOutput;
        return false;
      }
      scratch_.clear();
      if (job.listMembers) scratch_.push_back(',');
      job.listMembers = true;
      protocol::appendJsonString(scratch_, m.topic());
      scratch_.push_back(':');
      protocol::appendJsonString(scratch_, m.contents());
      c.out.append(scratch_);
      markDirty(c);
      if (scratch_.capacity() > (1u << 20)) std::string().swap(scratch_);
      return true;
    }
  }
  return true;
}

void Worker::finishJobs(Connection& c) {
  busy_.erase(std::remove(busy_.begin(), busy_.end(), &c), busy_.end());
  c.jobs.reset();
  const bool wasHeld = c.heldByJobs;
  c.heldByJobs = false;
  if (!wasHeld || c.closing || c.closed) return;
  setInterest(c);
  // The requests that waited are already buffered; no read event would announce them.
  const std::uint64_t framesBefore = framesHandled_;
  processInput(c);
  noteFrameProgress(c, framesHandled_ != framesBefore);
}

void Worker::dropJobs(Connection& c) {
  for (const Job& job : *c.jobs)
    memory_.bytes -= static_cast<std::int64_t>(job.charged);
  c.jobs.reset();
  c.heldByJobs = false;
  busy_.erase(std::remove(busy_.begin(), busy_.end(), &c), busy_.end());
}

// ---------------------------------------------------------------------------------------------
// Sessions

Session* Worker::sessionFor(routing::SubscriberId id) const noexcept {
  const std::uint32_t slot = id.slot();
  if (slot >= sessions_.size() || sessionGeneration_[slot] != id.generation()) return nullptr;
  return sessions_[slot].get();
}

Session* Worker::createSession(std::string clientId, Protocol protocol) {
  // Relaxed: see BrokerContext::sessions.
  const std::int64_t live = context_.sessions.fetch_add(1, std::memory_order_relaxed) + 1;
  const bool slotsLeft =
      !freeSessionSlots_.empty() || sessions_.size() < routing::SubscriberId::kMaxSlots;
  if (live > static_cast<std::int64_t>(config_.maxSessions) || !slotsLeft) {
    context_.sessions.fetch_sub(1, std::memory_order_relaxed);
    WorkerStats::add(stats_.refusedSessions, std::uint64_t{1});
    if (const std::uint64_t times = sessionLimitLog_.admit(common::monotonicNanos())) {
      TERN_LOG_WARN("refused {} new session(s): {} sessions live (--max-sessions {})", times,
                    live - 1, config_.maxSessions);
    }
    return nullptr;
  }
  std::uint32_t slot;
  if (!freeSessionSlots_.empty()) {
    slot = freeSessionSlots_.back();
    freeSessionSlots_.pop_back();
  } else {
    slot = static_cast<std::uint32_t>(sessions_.size());
    sessions_.emplace_back();
    sessionGeneration_.push_back(0);
  }
  std::uint32_t generation = ++sessionGeneration_[slot];
  if (generation == 0) generation = ++sessionGeneration_[slot];  // 0 marks an empty id
  auto s = std::make_unique<Session>();
  s->protocol = protocol;
  s->id = routing::SubscriberId::make(index_, slot, generation);
  s->clientId = std::move(clientId);
  s->pending.setAccount(&memory_);
  s->pending.setGrowthLimit(config_.maxQueuedBytes);
  Session* raw = s.get();
  sessions_[slot] = std::move(s);
  if (protocol == Protocol::kMqtt) {
    byMqttClientId_.emplace(raw->clientId, raw);
  } else {
    raw->token = newToken();
    byClientId_.emplace(raw->clientId, raw);
    byToken_.emplace(raw->token, raw);
  }
  WorkerStats::add(stats_.sessions, std::int64_t{1});
  return raw;
}

void Worker::endSession(Session& s) {
  if (s.ended) return;
  s.ended = true;
  for (const auto& [filter, qos] : s.filters)
    context_.trie.unsubscribe(filter, s.id);
  s.filters.clear();
  if (s.dropped != 0) {
    TERN_LOG_WARN("session {} ended; {} messages were dropped for it (queue full)", s.clientId,
                  s.dropped);
  }
  Connection* sockets[3] = {s.request[0], s.request[1], s.push};
  s.request[0] = s.request[1] = s.push = nullptr;
  if (s.protocol == Protocol::kMqtt) {
    byMqttClientId_.erase(s.clientId);
    sockets[0] = std::exchange(s.mqtt->connection, nullptr);
    s.mqtt->inflight.clear();
    s.mqtt->queue.clear();
    memory_.bytes -= static_cast<std::int64_t>(std::exchange(s.mqtt->queuedBytes, 0));
  } else {
    byClientId_.erase(s.clientId);
    byToken_.erase(s.token);
  }
  for (Connection* c : sockets) {
    if (c == nullptr) continue;
    c->session = nullptr;
    closeAfterFlush(*c);
  }
  const std::uint32_t slot = s.id.slot();
  ++sessionGeneration_[slot];
  freeSessionSlots_.push_back(slot);
  endedSessions_.push_back(std::move(sessions_[slot]));
  WorkerStats::add(stats_.sessions, std::int64_t{-1});
  context_.sessions.fetch_sub(1, std::memory_order_relaxed);
}

void Worker::detachFromSession(Connection& c) {
  Session* s = c.session;
  if (s == nullptr) return;
  c.session = nullptr;
  if (s->protocol == Protocol::kMqtt) {
    mqttConnectionLost(*s, c);
    return;
  }
  if (s->request[0] == &c) s->request[0] = nullptr;
  if (s->request[1] == &c) s->request[1] = nullptr;
  if (s->push == &c) s->push = nullptr;
  if (s->socketCount() == 0) endSession(*s);
}

unsigned Worker::homeWorker(std::string_view clientId) const noexcept {
  // FNV-1a: stable within the process, spreads similar ids.
  std::uint64_t hash = 1469598103934665603ULL;
  for (char ch : clientId) {
    hash ^= static_cast<unsigned char>(ch);
    hash *= 1099511628211ULL;
  }
  return static_cast<unsigned>(hash % context_.workers.size());
}

std::string Worker::newClientId() {
  // Pick an id that is homed here, so the CONNECT that asked for it needs no hand-over.
  for (;;) {
    std::uint64_t random = 0;
    if (::getrandom(&random, sizeof random, 0) != sizeof random) {
      random = static_cast<std::uint64_t>(common::monotonicNanos()) * 0x9E3779B97F4A7C15ULL;
    }
    std::string id = fmt::format("tern-{:016x}", random);
    if (homeWorker(id) == index_ && byClientId_.find(id) == byClientId_.end()) return id;
  }
}

std::string Worker::newToken() {
  // 128 bits from the kernel CSPRNG, then the home worker (4 hex digits) so that an ATTACH on any
  // worker knows where the session lives without a shared table.
  unsigned char random[16];
  std::size_t got = 0;
  while (got < sizeof random) {
    const ssize_t n = ::getrandom(random + got, sizeof random - got, 0);
    if (n > 0) got += static_cast<std::size_t>(n);
  }
  std::string token;
  token.reserve(36);
  static constexpr char kHex[] = "0123456789abcdef";
  for (unsigned char b : random) {
    token.push_back(kHex[b >> 4]);
    token.push_back(kHex[b & 15]);
  }
  fmt::format_to(std::back_inserter(token), "{:04x}", index_);
  return token;
}

// ---------------------------------------------------------------------------------------------
// Shutdown

void Worker::shutdown() {
  // Stage 1: stop reading, send what this worker routed to the others, and report.
  reading_ = false;
  for (Connection* c : connections_) {
    if (c != nullptr && !c->closed) setInterest(*c);
  }
  flushOutboxes();
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
        markDirty(*c);
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
  for (auto& batch : outboxes_)
    batch.reset();
}

}  // namespace tern::broker
