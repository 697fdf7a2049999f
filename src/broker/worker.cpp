#include "worker.hpp"

#include <unistd.h>

#include <algorithm>
#include <limits>
#include <stdexcept>

#include "tern/common/clock.hpp"
#include "tern/common/log.hpp"

namespace tern::broker {
namespace {

// The largest receive on top of the largest frame: what a connection's input buffer may need.
constexpr std::size_t kInputSlack = 64 * 1024;
// The buffers of connections found empty by this periodic sweep are freed, so that an idle
// connection holds no buffer memory; the same sweep enforces --frame-timeout and --session-expiry
// (a second late at most).
constexpr std::int64_t kSweepNanos = 1'000'000'000;
constexpr std::int64_t kShutdownFlushNanos = 2'000'000'000;
// While another worker is overloaded this one handles no input; it looks again this often.
constexpr std::int64_t kThrottleCheckNanos = 200'000;
// While this worker's writes wait for room in the store's queue, it looks again this often.
constexpr std::int64_t kStoreRetryNanos = 1'000'000;

std::int64_t secondsToNanos(double seconds) noexcept {
  return static_cast<std::int64_t>(seconds * 1e9);
}

// The event loop of the worker running on this thread, if any: another worker's wake-up posted
// from here goes through it (io_uring: MSG_RING, no system call). Set by Worker::run.
thread_local net::EventLoop* tThreadLoop = nullptr;

}  // namespace

Worker::Worker(BrokerContext& context, unsigned index)
    : context_(context),
      config_(context.config),
      index_(index),
      core_(context, index, context.config.workers, *this),
      line_(core_),
      mqtt_(core_) {
  core_.setHandlers(line_, mqtt_);
  net::EventLoopOptions options;
  options.io = config_.io;
  options.spinNanos = config_.spinNanos;
  // io_uring: 64 provided buffers of 16 KiB (1 MiB per worker, resident once the ring has cycled
  // through them). Each goes back to the ring right after its bytes are handled, and a receive
  // that finds the ring empty is re-armed (nothing is lost). 256 cost 4.6 KiB of RSS per
  // connection at 1000 MQTT connections against 3.0 with 64 (perf/compare --scenarios memory),
  // for no CPU per message measured at 100k/s (perf/syscalls).
  options.receiveBuffers = 64;
  options.receiveBufferBytes = 16 * 1024;
  options.account = &core_.memory;
  options.outputGrowthLimit = config_.maxQueuedBytes;
  std::string why;
  loop_ = net::EventLoop::create(options, *this, &why);
  if (!loop_) throw std::runtime_error("cannot start an event loop: " + why);
  if (index == 0 && !why.empty()) TERN_LOG_INFO("{}", why);
  inbox_.setWaker([this] { wakeLoop(); });
  if (index == 0 && config_.sysIntervalSeconds > 0)
    sys_ = std::make_unique<SysTopics>(TERN_VERSION);
}

Worker::~Worker() {
  join();
  // Items still queued (only when the thread never ran): close sockets, free batches.
  InboxItem items[kInboxBatch];
  std::size_t n = 0;
  while ((n = inbox_.popBulk(items, kInboxBatch)) != 0) {
    for (std::size_t k = 0; k < n; ++k) {
      if (items[k].kind == InboxItem::Kind::kAccepted) {
        ::close(items[k].fd);
        context_.connections.release(items[k].peer, true);
      }
      if (items[k].connection != nullptr) {
        ::close(items[k].connection->fd);
        context_.connections.release(items[k].connection->peer,
                                     items[k].connection->unauthenticated);
        delete items[k].connection;
      }
      delete items[k].batch;
      if (items[k].message != nullptr) items[k].message->release();
    }
  }
  // Connections of a thread that never ran its shutdown (it always does once started).
  for (Connection* c : connections_)
    delete c;
}

std::size_t Worker::restoreSessions(
    std::vector<persist::LoadedSession>& sessions,
    const std::unordered_map<std::uint64_t, MqttProtocol::RestoredMessage>& messages) {
  std::size_t made = 0;
  for (persist::LoadedSession& loaded : sessions)
    made += mqtt_.restore(std::move(loaded), messages) ? 1 : 0;
  core_.sessions.reap();
  return made;
}

void Worker::start() {
  thread_ = std::thread([this] { run(); });
}

void Worker::join() {
  if (thread_.joinable()) thread_.join();
}

void Worker::run() {
  owner_.bind();
  tThreadLoop = loop_.get();
  reader_ = std::make_unique<sync::QsbrDomain::Reader>(sync::QsbrDomain::global());
  core_.stats.startedAt.store(common::monotonicNanos(), std::memory_order_relaxed);
  while (context_.stopStage.load(std::memory_order_acquire) == 0) {
    loopTurn(core_.jobs.runnable() ? 0 : nextTimeoutNanos());
  }
  shutdown();
  reader_.reset();
  tThreadLoop = nullptr;
}

void Worker::wakeLoop() noexcept {
  if (tThreadLoop != nullptr && tThreadLoop != loop_.get()) {
    loop_->wakeFrom(*tThreadLoop);
  } else {
    loop_->wake();
  }
}

std::int64_t Worker::nextTimeoutNanos() const {
  if (throttled_) return kThrottleCheckNanos;
  // Requests wait for room in the store's queue; a completion of another worker's may make it.
  if (core_.store.backlogged()) return kStoreRetryNanos;
  const bool sweep =
      !connections_.empty() || core_.sessions.expiriesPending() || mqtt_.timersPending();
  if (deadlines_.empty() && !sweep && !sys_) return -1;
  std::int64_t when =
      deadlines_.empty() ? std::numeric_limits<std::int64_t>::max() : deadlines_.top().when;
  if (sweep) when = std::min(when, nextSweep_);
  if (sys_) when = std::min(when, nextSys_);
  return std::max<std::int64_t>(0, when - common::monotonicNanos());
}

void Worker::loopTurn(std::int64_t timeoutNanos) {
  turnStart_ = common::monotonicNanos();  // afterBlock() moves it to the wake-up
  const std::uint64_t framesBefore = framesHandled_;
  const std::uint64_t batchesBefore = handledBatches_;
  core_.memoryBudget.startTurn(core_.memory.bytes);
  const bool wasThrottled = throttled_;
  throttled_ = core_.fanout.destinationsOverloaded();
  if (wasThrottled && !throttled_) releaseThrottled();
  core_.fanout.collectReturned();
  // Sends what the last turn queued, waits (offline from QSBR while blocked: beforeBlock), and
  // hands every completion to the callbacks below.
  loop_->runOnce(timeoutNanos);
  drainInbox();
  pollStore();
  checkDeadlines();
  sweep();
  publishSys();
  core_.jobs.runAll();
  core_.fanout.flush(core_.store);
  sealPending();
  reapClosed();
  publishMemory();
  reader_->quiescent();
  // Turns that only ran timers or sent are not counted: the histogram is about deliveries.
  if (framesHandled_ != framesBefore || handledBatches_ != batchesBefore) {
    core_.stats.turnLatency.observe(common::monotonicNanos() - turnStart_);
  }
}

bool Worker::beforeBlock() {
  // A job woken during this turn's sends (onDrained) runs next turn: no sleeping now.
  if (core_.jobs.runnable()) return false;
  // Block only when nothing is waiting in the inbox (the inbox's sleep protocol); while blocked,
  // this thread is offline for QSBR so that it never delays a grace period.
  if (!inbox_.prepareToSleep()) return false;
  reader_->offline();
  // Asleep, the worker is between turns: it publishes what it holds now (the loop has just
  // released the buffers of the sockets closed last turn) and claims no more.
  publishMemory();
  core_.stats.startSleep(common::monotonicNanos());
  return true;
}

void Worker::afterBlock() {
  turnStart_ = common::monotonicNanos();
  core_.stats.endSleep(turnStart_);
  core_.memoryBudget.startTurn(core_.memory.bytes);
  reader_->online();
  inbox_.finishSleep();
}

void Worker::publishMemory() noexcept {
  core_.stats.memoryBytes.store(core_.memory.bytes, std::memory_order_relaxed);
  core_.stats.bytesSent.store(loop_->counters().bytesSent, std::memory_order_relaxed);
  core_.memoryBudget.endTurn(core_.memory.bytes);
}

// ---------------------------------------------------------------------------------------------
// Connections

Connection* Worker::attach(std::unique_ptr<Connection> owned) {
  TERN_ASSERT_OWNER(owner_);
  Connection* c = owned.release();
  c->owner.bind();
  // The input buffer is charged to this worker; its growth stops at the largest frame plus one
  // receive. (The output is the loop's, charged to the same account.)
  c->in.setAccount(&core_.memory);
  c->in.setGrowthLimit(std::max(config_.maxLine, config_.maxPacketSize) + kInputSlack);
  if (c->tls != nullptr) {
    c->tlsOut.setAccount(&core_.memory);
    c->tlsOut.setGrowthLimit(config_.maxQueuedBytes);
  }
  if (c->ws != nullptr) {
    c->wsOut.setAccount(&core_.memory);
    c->wsOut.setGrowthLimit(config_.maxQueuedBytes);
  }
  c->index = static_cast<std::uint32_t>(connections_.size());
  connections_.push_back(c);
  c->socket = loop_->add(c->fd, c, c->carried.empty() ? nullptr : &c->carried);
  c->fd = -1;  // the loop's now
  c->receivePaused = false;
  c->moving = false;
  WorkerStats::add(core_.stats.sockets, std::int64_t{1});
  if (c->protocol == Protocol::kMqtt) WorkerStats::add(core_.stats.mqttSockets, std::int64_t{1});
  WorkerStats::add(core_.stats.connections, std::uint64_t{1});
  if (c->role == SocketRole::kUnbound) deadlines_.push({c->deadline, c->socket});
  return c;
}

void Worker::forget(Connection& c) noexcept {
  Connection* last = connections_.back();
  connections_[c.index] = last;
  last->index = c.index;
  connections_.pop_back();
  if (c.throttled) {
    throttledList_.erase(std::remove(throttledList_.begin(), throttledList_.end(), &c),
                         throttledList_.end());
    c.throttled = false;
  }
  if (c.sealQueued) {
    sealQueue_.erase(std::remove(sealQueue_.begin(), sealQueue_.end(), &c), sealQueue_.end());
    c.sealQueued = false;
  }
}

void Worker::onReceive(net::SocketId, void* user, std::span<const char> bytes) {
  Connection& c = *static_cast<Connection*>(user);
  WorkerStats::add(core_.stats.bytesReceived, static_cast<std::uint64_t>(bytes.size()));
  if (c.closed || c.closing) return;
  if (c.tls != nullptr) {
    receiveTls(c, bytes);
    return;
  }
  receivePlain(c, bytes);
}

bool Worker::handleReceived(Connection& c, std::span<const char> bytes) {
  if (c.closed || c.closing) return true;
  if (c.inputHeld() || throttled_ || !core_.reading) {
    // Not handled now: kept, and the socket stops receiving until the input is released (what the
    // kernel had already received may still arrive: at most the socket's receive buffer).
    c.in.append({bytes.data(), bytes.size()});
    holdReceive(c);
    if (throttled_ && !c.throttled) {
      c.throttled = true;
      throttledList_.push_back(&c);
    }
    return true;
  }
  const std::uint64_t framesBefore = framesHandled_;
  InputState state;
  if (c.in.empty() && c.role != SocketRole::kUnbound) {
    // A bound socket with nothing pending is handled in place, in the loop's buffer; only an
    // incomplete frame at the end is copied into the connection.
    state = processDirect(c, {bytes.data(), bytes.size()});
  } else {
    // An unbound socket (whose CONNECT/ATTACH may hand it to another worker with its unhandled
    // bytes) or one with a partial frame pending goes through its own buffer. What it held
    // before is one incomplete frame, already searched for a frame end.
    const std::size_t searched = c.in.size();
    c.in.append({bytes.data(), bytes.size()});
    state = processInput(c, searched);
  }
  if (state == InputState::kGone) return false;  // handed over: `c` is another worker's now
  noteFrameProgress(c, framesHandled_ != framesBefore);
  return true;
}

void Worker::holdReceive(Connection& c) {
  if (c.receivePaused) return;
  c.receivePaused = true;
  loop_->pauseReceive(c.socket);
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
  // an incomplete frame, or the rest when input was held.
  if (!c.closing && !c.closed && used < data.size()) c.in.append(data.substr(used));
  return state;
}

void Worker::resumeInput(Connection& c) {
  if (c.closed || c.closing || c.inputHeld() || throttled_ || !core_.reading) return;
  if (c.receivePaused) {
    c.receivePaused = false;
    loop_->resumeReceive(c.socket);
  }
  // Frames may already be buffered; nothing would announce them.
  const std::uint64_t framesBefore = framesHandled_;
  processInput(c);
  noteFrameProgress(c, framesHandled_ != framesBefore);
}

void Worker::releaseThrottled() {
  std::vector<Connection*> list;
  list.swap(throttledList_);
  for (Connection* c : list) {
    c->throttled = false;
    if (!c->closed) resumeInput(*c);
  }
}

void Worker::onInputEnd(net::SocketId, void* user, int error) {
  Connection& c = *static_cast<Connection*>(user);
  if (c.closed) return;
  if (error == 0) {
    // The peer finished sending. Replies to what it sent are flushed, then the socket closes.
    closeAfterFlush(c);
    return;
  }
  TERN_LOG_DEBUG("connection from {} failed: {}", net::toString(c.peer), std::strerror(error));
  closeNow(c);
}

void Worker::onDrained(net::SocketId, void* user) {
  Connection& c = *static_cast<Connection*>(user);
  if (c.closed) return;
  if (c.closing) {
    closeNow(c);
    return;
  }
  if (c.readPaused) {
    c.readPaused = false;
    resumeInput(c);
  }
  core_.jobs.wakeIfRoom();
}

void Worker::pauseInput(Connection& c) {
  c.readPaused = true;
  holdReceive(c);
  loop_->notifyWhenDrained(c.socket);
}

void Worker::startKeepAlive(Connection& c, std::int64_t nanos) {
  c.keepAliveNanos = nanos;
  c.lastActivity = common::monotonicNanos();
  deadlines_.push({c.lastActivity + nanos, c.socket});
}

void Worker::closeAfterFlush(Connection& c) {
  if (c.closing || c.closed) return;
  c.closing = true;
  holdReceive(c);  // nothing it sends from now on is handled
  c.deadline = common::monotonicNanos() + secondsToNanos(config_.closeLingerSeconds);
  deadlines_.push({c.deadline, c.socket});
  if (c.ws != nullptr && c.ws->open) {
    // The close handshake (RFC 6455 5.5.1), after the last replies; the client answers it or
    // the linger ends the connection.
    frameWs(c);
    wsControl_.clear();
    c.ws->stream.close(1000, wsControl_);
    belowWs(c).append(wsControl_);
  }
  if (c.tls != nullptr) {
    sealNow(c);
    c.tls->shutdown(loop_->output(c.socket));  // close_notify, after the last replies
  }
  loop_->flush(c.socket);
  loop_->notifyWhenDrained(c.socket);
  // Nothing to send: close at the end of this turn (not here, inside a handler's frame loop).
  if (unsent(c) == 0) deadlines_.push({0, c.socket});
}

void Worker::closeNow(Connection& c) {
  if (c.closed) return;
  c.closed = true;
  loop_->close(c.socket);
  context_.connections.release(c.peer, c.unauthenticated);
  if (c.jobs) core_.jobs.drop(c);
  WorkerStats::add(core_.stats.sockets, std::int64_t{-1});
  if (c.protocol == Protocol::kMqtt) WorkerStats::add(core_.stats.mqttSockets, std::int64_t{-1});
  forget(c);
  core_.connectionGone(c);
  graveyard_.push_back(&c);
}

void Worker::handOver(Connection& c, unsigned worker) {
  // The socket leaves this worker's loop; onDetached (at once with epoll, once the kernel is done
  // with it with io_uring) sends it on. Nothing here touches `c` afterwards.
  // TLS, WebSocket: what the protocols wrote this turn is framed and encrypted now, so that it
  // leaves with the socket's unsent output, in order.
  if (c.tls != nullptr || c.ws != nullptr) sealNow(c);
  forget(c);
  WorkerStats::add(core_.stats.sockets, std::int64_t{-1});
  if (c.protocol == Protocol::kMqtt) WorkerStats::add(core_.stats.mqttSockets, std::int64_t{-1});
  c.moveTo = worker;
  c.moving = true;
  loop_->detach(c.socket);
}

void Worker::onDetached(net::SocketId, void* user, int fd, net::ByteBuffer& unsent,
                        net::ByteBuffer& received) {
  Connection& c = *static_cast<Connection*>(user);
  c.fd = fd;
  c.carried.takeFrom(unsent);
  // After what was buffered: the order the client sent.
  decodeDetached(c, received);
  received.consume(received.size());
  c.in.setAccount(nullptr);  // the new owner charges it to itself
  c.carried.setAccount(nullptr);
  c.tlsOut.setAccount(nullptr);
  c.wsOut.setAccount(nullptr);
  InboxItem item;
  item.kind = InboxItem::Kind::kHandover;
  item.connection = &c;
  context_.workers[c.moveTo]->post(std::move(item));
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
  mqtt_.onSweep(now);
  const std::int64_t frameTimeout = secondsToNanos(config_.frameTimeoutSeconds);
  std::uint64_t held = 0;
  // Backwards: closeNow() moves the last connection into the closed one's place.
  for (std::size_t k = connections_.size(); k-- > 0;) {
    Connection* c = connections_[k];
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
    c->tlsOut.releaseIfIdle(0);
    c->wsOut.releaseIfIdle(0);
    loop_->releaseIdleBuffers(c->socket);
    held += c->in.capacity() + c->tlsOut.capacity() + c->wsOut.capacity() +
            loop_->unsentBytes(c->socket);
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

void Worker::publishSys() {
  if (!sys_ || !core_.reading) return;
  const std::int64_t now = common::monotonicNanos();
  if (now < nextSys_) return;
  nextSys_ = now + secondsToNanos(config_.sysIntervalSeconds);
  const std::int64_t started = core_.stats.startedAt.load(std::memory_order_relaxed);
  const SysFigures figures = SysFigures::gather(context_, (now - started) / 1'000'000'000);
  sys_->update(now, figures, [this](std::string_view topic, std::string_view payload) {
    core_.publishOwn(common::Message::make(topic, payload, true));
  });
}

void Worker::noteFrameProgress(Connection& c, bool completedFrame) noexcept {
  if (c.unauthenticated && c.role != SocketRole::kUnbound) {
    c.unauthenticated = false;  // bound by what was just handled
    context_.connections.authenticated(c.peer);
  }
  if (!completedFrame && (c.in.empty() || c.frameStarted != 0)) return;  // the common cases
  const std::int64_t now = common::monotonicNanos();
  // A complete MQTT packet is what keeps the connection alive, not bytes [MQTT-3.1.2-24].
  if (completedFrame && c.keepAliveNanos != 0) c.lastActivity = now;
  c.frameStarted = c.in.empty() ? 0 : now;
}

void Worker::checkDeadlines() {
  if (deadlines_.empty()) return;
  const std::int64_t now = common::monotonicNanos();
  while (!deadlines_.empty() && deadlines_.top().when <= now) {
    const Deadline d = deadlines_.top();
    deadlines_.pop();
    auto* c = static_cast<Connection*>(loop_->user(d.socket));
    if (c == nullptr || c->closed || c->moving) continue;  // closed or leaving since
    if (c->closing) {
      // The peer does not read its last bytes in time, or there was nothing left to send.
      if (c->deadline <= now || unsent(*c) == 0) closeNow(*c);
    } else if (c->role == SocketRole::kUnbound) {
      if (c->deadline <= now) {
        TERN_LOG_DEBUG(
            "closing a connection from {}: no CONNECT/ATTACH within the handshake "
            "timeout",
            net::toString(c->peer));
        closeNow(*c);
      }
    } else if (c->keepAliveNanos != 0) {
      // MQTT keep-alive: checked lazily; each check schedules the next one. While the broker
      // itself does not handle input (flow control), the client's packets wait: not its fault.
      if (c->inputHeld() || c->throttled) c->lastActivity = now;
      const std::int64_t expiry = c->lastActivity + c->keepAliveNanos;
      if (expiry <= now) {
        TERN_LOG_DEBUG("closing MQTT connection from {}: keep-alive expired",
                       net::toString(c->peer));
        WorkerStats::add(core_.stats.closedKeepAlive, std::uint64_t{1});
        // The will is published at once; a 5.0 client is told why (DISCONNECT 0x8D) if it reads
        // it within the linger time.
        core_.handler(c->protocol)
            .serverClosing(*c, ProtocolHandler::ServerClose::kKeepAliveTimeout);
        core_.connectionGone(*c);
        closeAfterFlush(*c);
      } else {
        deadlines_.push({expiry, c->socket});
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Shutdown

void Worker::shutdown() {
  // Stage 1: stop handling input, send what this worker routed to the others, and report.
  core_.reading = false;
  for (Connection* c : connections_)
    holdReceive(*c);
  // --data-dir: the acknowledgements still held go out once their writes are durable (before an
  // MQTT 5.0 DISCONNECT), for a bounded time.
  const std::int64_t storeGiveUp = common::monotonicNanos() + kShutdownFlushNanos;
  while (!core_.store.idle() && common::monotonicNanos() < storeGiveUp)
    loopTurn(1'000'000);
  for (Connection* c : connections_) {
    // Flushed in stage 2 with everything else (MQTT 5.0: DISCONNECT 0x8B).
    if (c->session != nullptr) {
      core_.handler(c->protocol).serverClosing(*c, ProtocolHandler::ServerClose::kShuttingDown);
    }
  }
  core_.fanout.flush(core_.store);
  context_.stoppedReading.fetch_add(1, std::memory_order_acq_rel);
  while (context_.stopStage.load(std::memory_order_acquire) < 2)
    loopTurn(50'000'000);
  // Stage 2: no worker produces deliveries any more. Deliver what arrived and flush every socket
  // for a bounded time, then close everything.
  const std::int64_t giveUp = common::monotonicNanos() + kShutdownFlushNanos;
  for (;;) {
    bool pending = inbox_.sizeApprox() != 0;
    for (Connection* c : connections_) {
      if (!c->closed && unsent(*c) != 0) pending = true;
    }
    if (!pending || common::monotonicNanos() >= giveUp) break;
    loopTurn(10'000'000);
  }
  while (!connections_.empty())
    closeNow(*connections_.back());
  reapClosed();
  loop_->runOnce(0);  // lets the loop finish what the closes started
}

}  // namespace tern::broker
