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

namespace tern::broker {
namespace {

constexpr std::uint64_t kWakeTag = ~std::uint64_t{0};
constexpr int kMaxEvents = 256;
constexpr std::size_t kReadChunk = 64 * 1024;
constexpr int kMaxReadsPerEvent = 4;      // then let other sockets have a turn
constexpr std::size_t kInboxBatch = 256;  // inbox items taken per pop
constexpr std::size_t kIdleBufferKeep = 64 * 1024;
// An unbound socket reads its handshake into its own buffer: small, since CONNECT/ATTACH are.
constexpr std::size_t kHandshakeReadChunk = 512;
// Buffers of connections found empty by this periodic sweep are freed, so that an idle
// connection holds no buffer memory (10k idle MQTT connections held 10 KiB each before).
constexpr std::int64_t kBufferSweepNanos = 1'000'000'000;
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
      if (items[k].kind == InboxItem::Kind::kAccepted) ::close(items[k].fd);
      if (items[k].connection != nullptr) {
        ::close(items[k].connection->fd);
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
    loopTurn(nextTimeoutMs(), true);
  }
  shutdown();
  reader_.reset();
}

int Worker::nextTimeoutMs() const {
  const bool sweep = connections_.size() > freeConnectionSlots_.size();
  if (deadlines_.empty() && !sweep) return -1;
  std::int64_t when = deadlines_.empty() ? nextBufferSweep_ : deadlines_.top().when;
  if (sweep) when = std::min(when, nextBufferSweep_);
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
  for (int k = 0; k < n; ++k) {
    if (events[k].data.u64 == kWakeTag) continue;  // the inbox is drained below
    onEvent(events[k].data.u64, events[k].events);
  }
  drainInbox();
  checkDeadlines();
  releaseIdleBuffers();
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
  reapClosed();
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
  if (reading_ && !c.closing && !c.readPaused) want |= EPOLLIN;
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
    std::span<char> space =
        direct ? std::span<char>(readBuffer_.get(), kReadChunk)
               : c.in.writable(c.role == SocketRole::kUnbound ? kHandshakeReadChunk : kReadChunk);
    const ssize_t n = ::read(c.fd, space.data(), space.size());
    if (n > 0) {
      if (c.keepAliveNanos != 0) c.lastActivity = common::monotonicNanos();
      const InputState state = direct
                                   ? processDirect(c, {space.data(), static_cast<std::size_t>(n)})
                                   : (c.in.commit(static_cast<std::size_t>(n)), processInput(c));
      // Handed over (`c` belongs to another worker now), closed or paused: stop here.
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

Worker::InputState Worker::processInput(Connection& c) {
  const auto drop = [&c](std::size_t n) { c.in.consume(n); };
  if (c.protocol == Protocol::kMqtt) return handlePackets(c, c.in.view(), drop);
  const InputState state = handleLines(c, c.in.view(), c.scanned, drop);
  if (state != InputState::kGone) c.scanned = state == InputState::kMore ? c.in.size() : 0;
  return state;
}

Worker::InputState Worker::processDirect(Connection& c, std::string_view data) {
  std::size_t used = 0;
  const auto advance = [&used](std::size_t n) { used += n; };
  const InputState state = c.protocol == Protocol::kMqtt ? handlePackets(c, data, advance)
                                                         : handleLines(c, data, 0, advance);
  // A bound connection is never handed over, so `c` is still ours. Keep what was not handled:
  // an incomplete frame, or the rest of the read when reading paused.
  if (!c.closing && !c.closed && used < data.size()) {
    c.in.append(data.substr(used));
    c.scanned = state == InputState::kMore ? c.in.size() : 0;
  }
  return state;
}

Worker::InputState Worker::handleLines(Connection& c, std::string_view data, std::size_t scanned,
                                       common::FunctionRef<void(std::size_t)> commit) {
  const std::size_t maxLine = config_.maxLine;
  for (;;) {
    if (c.closing || c.closed || c.readPaused) return InputState::kStopped;
    if (data.empty()) return InputState::kMore;
    const void* lf = std::memchr(data.data() + scanned, '\n', data.size() - scanned);
    if (lf == nullptr) {
      if (data.size() <= maxLine) return InputState::kMore;
      replyError(c, protocol::LineError::kTooLong,
                 "frame longer than the limit (--max-line) without a line feed");
      closeAfterFlush(c);
      return InputState::kStopped;
    }
    const auto end = static_cast<std::size_t>(static_cast<const char*>(lf) - data.data());
    if (end > maxLine) {
      replyError(c, protocol::LineError::kTooLong, "frame longer than the limit (--max-line)");
      closeAfterFlush(c);
      return InputState::kStopped;
    }
    std::string_view frame = data.substr(0, end);
    if (!frame.empty() && frame.back() == '\r') frame.remove_suffix(1);
    // The frame stays in place while it is handled: a hand-over carries it along unconsumed.
    if (!frame.empty() && onLineFrame(c, frame) == Outcome::kHandedOver) return InputState::kGone;
    commit(end + 1);
    data.remove_prefix(end + 1);
    scanned = 0;
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
  processInput(c);  // frames may already be buffered; no new read event would announce them
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

void Worker::releaseIdleBuffers() {
  const std::int64_t now = common::monotonicNanos();
  if (now < nextBufferSweep_) return;
  nextBufferSweep_ = now + kBufferSweepNanos;
  std::uint64_t held = 0;
  for (Connection* c : connections_) {
    if (c == nullptr || c->closed) continue;
    c->in.releaseIfIdle(0);
    c->out.releaseIfIdle(0);
    held += c->in.capacity() + c->out.capacity();
  }
  stats_.bufferBytes.store(held, std::memory_order_relaxed);
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
      // MQTT keep-alive: checked lazily; each check schedules the next one.
      const std::int64_t expiry = c->lastActivity + c->keepAliveNanos;
      if (expiry <= now) {
        TERN_LOG_DEBUG("closing MQTT fd {}: keep-alive expired", c->fd);
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
          c->deadline = common::monotonicNanos() + secondsToNanos(config_.handshakeTimeoutSeconds);
          attach(std::move(c));
          break;
        }
        case InboxItem::Kind::kHandover: {
          Connection* c = attach(std::unique_ptr<Connection>(item.connection));
          if (!c->out.empty()) markDirty(*c);
          // The CONNECT/ATTACH that sent it here is still buffered (and maybe more after it).
          if (reading_) processInput(*c);
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
  if (!message.lineSafe()) {
    // An MQTT message the line protocol cannot frame ('@' in the topic, LF in the payload): it
    // is not delivered to line sessions, and counted as dropped for them.
    ++s.dropped;
    WorkerStats::add(stats_.dropped, std::uint64_t{1});
    return;
  }
  pushFrame(s, retained ? "RETAINED@" : "MESSAGE@", message.lineTail());
}

void Worker::pushFrame(Session& s, std::string_view prefix, std::string_view tail) {
  net::ByteBuffer& out = s.pushTarget();
  if (out.size() + prefix.size() + tail.size() > config_.maxQueuedBytes) {
    if (s.dropped++ == 0) {
      TERN_LOG_WARN("session {}: push queue full ({} bytes): dropping messages until it drains",
                    s.clientId, out.size());
    }
    WorkerStats::add(stats_.dropped, std::uint64_t{1});
    return;
  }
  out.append(prefix, tail);
  WorkerStats::add(stats_.delivered, std::uint64_t{1});
  if (s.push != nullptr) markDirty(*s.push);
}

// ---------------------------------------------------------------------------------------------
// Sessions

Session* Worker::sessionFor(routing::SubscriberId id) const noexcept {
  const std::uint32_t slot = id.slot();
  if (slot >= sessions_.size() || sessionGeneration_[slot] != id.generation()) return nullptr;
  return sessions_[slot].get();
}

Session* Worker::createSession(std::string clientId, Protocol protocol) {
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
