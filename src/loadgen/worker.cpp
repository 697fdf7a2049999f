#include "worker.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <functional>
#include <stdexcept>

#include "tern/common/clock.hpp"
#include "tern/common/log.hpp"
#include "tern/loadgen/payload.hpp"

namespace tern::loadgen {

namespace {

using common::monotonicNanos;

constexpr std::int64_t kMillisecond = 1'000'000;
constexpr std::int64_t kSecond = 1'000'000'000;
// A publish issued later than this after its intended time counts as behind (or throttled).
constexpr std::int64_t kBehindNs = kMillisecond;
// Handshakes in flight per worker when --connect-rate does not pace them: enough to keep the
// broker's accept queue busy without overflowing its listen backlog.
constexpr std::uint32_t kMaxHandshakes = 256;
// A session not connected and subscribed this long after it started is failed.
constexpr std::int64_t kSetupTimeoutNs = 10 * kSecond;
// Publishes issued per loop iteration before the loop turns again (sends them, receives).
constexpr std::size_t kIssueBatch = 1024;
// Waiting for the next publish. On this kind of machine (a 2-vCPU VM) a sleep and wake-up of the
// thread costs about 20 us of its CPU and wakes it about 15 us late, with either backend and any
// timed wait (epoll_pwait2, io_uring_enter with a timeout, clock_nanosleep measure the same within
// a microsecond). So a publish due within kSpinNs is waited for by polling without blocking
// (runOnce(0)), which is cheaper than a sleep that short, and a longer wait sleeps until
// kWakeEarlyNs before the publish is due and polls the rest, so that it still leaves on time.
// (With kSpinNs 50 us and no early wake-up, loadgen polled through most gaps between publishes up
// to 20k/s per thread: a third more CPU per publish at 20k/s, for a median send lag 5 us lower.)
constexpr std::int64_t kSpinNs = 30'000;
constexpr std::int64_t kWakeEarlyNs = 15'000;
// A client stops publishing while more than this is queued on its sockets (the broker is not
// reading) and resumes below the low mark.
constexpr std::size_t kHighWatermark = 1 << 20;
constexpr std::size_t kLowWatermark = 256 << 10;
constexpr std::uint32_t kMaxLoggedFailures = 3;
// Sessions' protocol timers (MQTT keep-alive) run this often.
constexpr std::int64_t kTickNs = kSecond;
// MQTT keep-alive announced in CONNECT: long enough that pings cost nothing, short enough that a
// broker notices a vanished loadgen.
constexpr std::uint16_t kKeepAliveS = 60;

bool laterDue(const auto& a, const auto& b) noexcept {
  return a.dueNs > b.dueNs;
}

net::EventLoopOptions loopOptions(const Options& options) {
  net::EventLoopOptions loop;
  loop.io = options.io;
  // uring: provided receive buffers (16 MiB per loop); epoll: the one read buffer, large so that
  // a busy push socket is drained in few reads.
  loop.receiveBufferBytes = options.io == net::IoChoice::kEpoll ? 256 << 10 : 64 << 10;
  loop.receiveBuffers = 256;
  // io_uring's task-run mode is left at its default (cooperative): interrupt and deferred cost
  // loadgen the same CPU per publish within noise (20k/s, 100 clients).
  return loop;
}

}  // namespace

Worker::Worker(const WorkerPlan& plan, RunControl& control, std::vector<std::uint32_t> sessions)
    : plan_(plan), control_(control), sessionIds_(std::move(sessions)) {
  loop_ = net::EventLoop::create(loopOptions(*plan_.options), *this, &fallbackReason_);
  if (!loop_) throw std::runtime_error("cannot start an event loop: " + fallbackReason_);
  backend_ = loop_->backend();
  const Workload& workload = *plan_.workload;
  clients_.resize(sessionIds_.size());
  readyFlags_.assign(sessionIds_.size(), 0);
  std::size_t trackers = 0;
  for (std::size_t i = 0; i < sessionIds_.size(); ++i) {
    Client& client = clients_[i];
    client.index = sessionIds_[i];
    client.trackerOffset = trackers;
    trackers += workload.sourceCount(client.index);
    if (workload.publishes(client.index)) client.topic = workload.topicOf(client.index);
  }
  trackers_.resize(trackers);
  parked_.reserve(clients_.size());
  if (plan_.tls) toSeal_.reserve(clients_.size() * plan_.options->socketsPerSession());
  heap_.reserve(clients_.size());
  payload_.resize(plan_.options->payloadBytes);
  encodePayload(payload_, PayloadFields{});
}

Worker::~Worker() {
  // Sessions close their sockets through the loop: before it goes.
  for (Client& client : clients_)
    client.session.reset();
  loop_.reset();
}

void Worker::copyLatencySnapshot(Histogram& into) const {
  std::lock_guard lock(snapshotMutex_);
  into = latencySnapshot_;
}

void Worker::run() {
  owner_.bind();
  connectPhase();
  waitForStart();
  if (!control_.stop.load(std::memory_order_relaxed)) loadPhase();
  for (Client& client : clients_) {
    if (client.session) {
      unacknowledged_ += client.session->unacknowledged();
      client.session->close();
    }
  }
  toSeal_.clear();    // the sessions are closed: nothing more to send
  loop_->runOnce(0);  // hands the closes to the kernel (io_uring queues them)
  countUnsent();
  publishLive(monotonicNanos());
}

// --- phases -----------------------------------------------------------------------------------

void Worker::connectPhase() {
  // --connect-rate is shared between workers in proportion to their sessions.
  const double ratePerWorker = plan_.options->connectRate * static_cast<double>(clients_.size()) /
                               static_cast<double>(plan_.workload->sessions());
  const std::int64_t periodNs =
      ratePerWorker > 0 ? static_cast<std::int64_t>(1e9 / ratePerWorker) : 0;
  std::int64_t nextStartNs = monotonicNanos();
  std::int64_t nextTimeoutCheckNs = nextStartNs + 100 * kMillisecond;
  const auto total = static_cast<std::uint32_t>(clients_.size());
  while (settled_ < total && !control_.stop.load(std::memory_order_relaxed)) {
    std::int64_t now = monotonicNanos();
    while (started_ < total && inFlight_ < kMaxHandshakes &&
           (periodNs == 0 || nextStartNs <= now)) {
      ++inFlight_;
      startSession(started_++, now);
      nextStartNs += periodNs;
    }
    if (now >= nextTimeoutCheckNs) {
      checkSetupTimeouts(now);
      nextTimeoutCheckNs = now + 100 * kMillisecond;
    }
    tickSessions(now);
    publishLive(now);
    std::int64_t timeout = 100 * kMillisecond;
    if (periodNs != 0 && started_ < total && inFlight_ < kMaxHandshakes) {
      timeout = std::clamp<std::int64_t>(nextStartNs - now, 0, timeout);
    }
    if (settled_ < total) turn(timeout);
  }
  for (std::size_t i = 0; i < clients_.size(); ++i) {
    readyFlags_[i] = clients_[i].stage == Stage::kReady ? 1 : 0;
  }
  // Release: the runner reads readyFlags_ after acquiring settledWorkers.
  control_.settledWorkers.fetch_add(1, std::memory_order_release);
}

void Worker::waitForStart() {
  while (!control_.stop.load(std::memory_order_relaxed) &&
         control_.startNs.load(std::memory_order_acquire) == 0) {
    const std::int64_t now = monotonicNanos();
    tickSessions(now);
    publishLive(now);
    turn(2 * kMillisecond);
  }
}

void Worker::loadPhase() {
  const std::int64_t startNs = control_.startNs.load(std::memory_order_acquire);
  measureStartNs_ = control_.measureStartNs;
  measureEndNs_ = control_.measureEndNs;
  const Options& options = *plan_.options;
  const Workload& workload = *plan_.workload;
  const double perClientRate = options.rate / static_cast<double>(workload.clients());
  const double spacingNs = 1e9 / options.rate;
  for (std::uint32_t local = 0; local < clients_.size(); ++local) {
    Client& client = clients_[local];
    if (client.stage != Stage::kReady || !workload.publishes(client.index)) continue;
    client.receivers = control_.receiversOf[client.index];
    client.scheduled = true;
    // Constant schedules are spread by 1/rate so that the clients together fire evenly.
    const auto phaseNs = options.arrival == Arrival::kConstant
                             ? static_cast<std::int64_t>(spacingNs * client.index)
                             : 0;
    client.schedule = Schedule(options.arrival, perClientRate, startNs, phaseNs,
                               streamSeed(options.seed, client.index));
    heap_.push_back({client.schedule.peek(), local});
  }
  std::make_heap(heap_.begin(), heap_.end(),
                 [](const Due& a, const Due& b) { return laterDue(a, b); });

  nextSnapshotNs_ = monotonicNanos();
  while (!control_.stop.load(std::memory_order_relaxed)) {
    const std::int64_t now = monotonicNanos();
    const std::int64_t cut = control_.cutNs.load(std::memory_order_relaxed);
    if (cut != 0 && cut < measureEndNs_) measureEndNs_ = cut;
    const bool more = issueDue(now);
    if (!parked_.empty()) unpark();
    tickSessions(now);
    publishLive(now);
    std::int64_t timeout = 50 * kMillisecond;
    bool spinning = false;
    if (more) {
      timeout = 0;
    } else if (!heap_.empty()) {
      const std::int64_t wait = heap_.front().dueNs - now;
      spinning = wait < kSpinNs;
      timeout = spinning ? 0 : std::min(wait - kWakeEarlyNs, timeout);
    }
    // An idle spin is waiting, not work: counted apart so that the report can tell a busy loadgen
    // from one that polls between publishes.
    if (turn(timeout) == 0 && spinning && now >= control_.measureStartNs && now < measureEndNs_) {
      counters_[kMeasuredSpinNs] += static_cast<std::uint64_t>(monotonicNanos() - now);
    }
  }
}

// --- connecting -------------------------------------------------------------------------------

void Worker::startSession(std::uint32_t local, std::int64_t nowNs) {
  Client& client = clients_[local];
  SessionConfig config;
  config.broker = plan_.broker;
  config.brokerLength = plan_.brokerLength;
  if (plan_.spreadSources) {
    auto* source = reinterpret_cast<sockaddr_in*>(&config.source);
    source->sin_family = AF_INET;
    source->sin_port = 0;
    source->sin_addr.s_addr = htonl(INADDR_LOOPBACK + client.index % 16);
    config.sourceLength = sizeof(sockaddr_in);
  }
  config.clientId = plan_.clientIdPrefix + std::to_string(client.index);
  config.client = local;
  config.qos = plan_.options->qos;
  config.keepAliveS = kKeepAliveS;
  config.mqttLevel = plan_.options->protocol == Protocol::kMqtt5 ? 5 : 4;
  config.persistent = plan_.options->persistent;
  config.sessionExpiryS = plan_.options->persistent ? kPersistentSessionExpiryS : 0;
  config.tls = plan_.tls;
  config.tlsServerName = plan_.options->effectiveTlsServerName();
  config.websocket = plan_.options->websocket;
  if (config.websocket) {
    config.wsPath = plan_.options->wsPath;
    const std::string& host = plan_.options->host;
    // An IPv6 address in the Host header is bracketed (RFC 3986 section 3.2.2).
    config.wsHost = (host.find(':') != std::string::npos ? "[" + host + "]" : host) + ":" +
                    std::to_string(plan_.options->port);
  }
  config.username = plan_.options->username;
  config.password = plan_.options->password;
  client.stage = Stage::kSetup;
  client.startedNs = nowNs;
  client.session = plan_.factory(*this, config);
  client.session->start(nowNs);
}

void Worker::checkSetupTimeouts(std::int64_t nowNs) {
  for (Client& client : clients_) {
    if (client.stage == Stage::kSetup && nowNs - client.startedNs > kSetupTimeoutNs) {
      client.session->close();
      onFailed(static_cast<std::uint32_t>(&client - clients_.data()), SessionFailure::kTimeout,
               "no handshake or SUBACK within 10 s");
    }
  }
}

void Worker::settleOne() {
  ++settled_;
  --inFlight_;
}

void Worker::onConnected(std::uint32_t local, std::int64_t nowNs) {
  TERN_ASSERT_OWNER(owner_);
  Client& client = clients_[local];
  ++counters_[kConnected];
  connect_.record(static_cast<std::uint64_t>(std::max<std::int64_t>(0, nowNs - client.startedNs)));
  live_.lastConnectedNs.store(nowNs, std::memory_order_relaxed);
  const Workload& workload = *plan_.workload;
  const std::uint32_t filters = workload.filterCount(client.index);
  filterScratch_.clear();
  for (std::uint32_t i = 0; i < filters; ++i)
    filterScratch_.push_back(workload.filter(client.index, i));
  client.session->subscribe(filterScratch_, nowNs);
}

void Worker::onSubscribed(std::uint32_t local, std::int64_t /*nowNs*/) {
  TERN_ASSERT_OWNER(owner_);
  Client& client = clients_[local];
  if (client.stage != Stage::kSetup) return;
  client.stage = Stage::kReady;
  ++counters_[kReady];
  ++alive_;
  settleOne();
}

void Worker::onFailed(std::uint32_t local, SessionFailure failure, std::string_view detail) {
  TERN_ASSERT_OWNER(owner_);
  Client& client = clients_[local];
  const Stage stage = client.stage;
  if (stage == Stage::kFailed) return;
  client.stage = Stage::kFailed;
  if (stage == Stage::kReady) --alive_;
  std::string text = fmt::format("session {}: {}: {}", client.index, describe(failure), detail);
  if (stage == Stage::kSetup) {
    ++counters_[kFailedHandshakes];
    settleOne();
    text.insert(0, "handshake failed: ");
  } else {
    ++counters_[kDisconnects];
  }
  noteFailure(text);
}

void Worker::noteFailure(std::string_view text) {
  if (firstFailure_.empty()) firstFailure_.assign(text);
  if (loggedFailures_ < kMaxLoggedFailures) {
    ++loggedFailures_;
    TERN_LOG_WARN("loadgen: {}", text);
  }
}

// --- publishing -------------------------------------------------------------------------------

bool Worker::issueDue(std::int64_t nowNs) {
  const auto later = [](const Due& a, const Due& b) { return laterDue(a, b); };
  std::size_t issued = 0;
  while (!heap_.empty() && heap_.front().dueNs <= nowNs) {
    if (issued == kIssueBatch) return true;
    const Due due = heap_.front();
    std::pop_heap(heap_.begin(), heap_.end(), later);
    heap_.pop_back();
    Client& client = clients_[due.client];
    if (client.stage != Stage::kReady || due.dueNs >= measureEndNs_) continue;
    if (client.session->queuedBytes() > kHighWatermark || !client.session->canPublish()) {
      client.parked = true;
      client.throttled = true;
      parked_.push_back(due.client);
      continue;
    }
    issue(client, client.schedule.next(), nowNs);
    heap_.push_back({client.schedule.peek(), due.client});
    std::push_heap(heap_.begin(), heap_.end(), later);
    // Keep the lag honest during a long batch (a clock read is ~20 ns; a batch can take 100 us).
    if (++issued % 128 == 0) nowNs = monotonicNanos();
  }
  return false;
}

void Worker::issue(Client& client, std::int64_t intendedNs, std::int64_t nowNs) noexcept {
  const std::int64_t lag = nowNs - intendedNs;
  if (lag > kBehindNs) {
    ++counters_[client.throttled ? kThrottled : kBehind];
  } else {
    client.throttled = false;
  }
  encodePayloadHeader(payload_, {client.index, client.nextSequence++, intendedNs});
  client.session->publish(client.topic, std::string_view(payload_.data(), payload_.size()),
                          intendedNs);
  ++counters_[kSent];
  counters_[kExpected] += client.receivers;
  if (measured(intendedNs))
    sendLag_.record(static_cast<std::uint64_t>(std::max<std::int64_t>(0, lag)));
  if (measured(nowNs)) ++counters_[kMeasuredSent];
}

void Worker::unpark() {
  const auto later = [](const Due& a, const Due& b) { return laterDue(a, b); };
  std::size_t kept = 0;
  for (const std::uint32_t local : parked_) {
    Client& client = clients_[local];
    if (client.stage != Stage::kReady) {
      client.parked = false;
      continue;
    }
    if (client.session->queuedBytes() > kLowWatermark || !client.session->canPublish()) {
      parked_[kept++] = local;
      continue;
    }
    client.parked = false;
    heap_.push_back({client.schedule.peek(), local});
    std::push_heap(heap_.begin(), heap_.end(), later);
  }
  parked_.resize(kept);
}

void Worker::countUnsent() {
  // Every publish the schedule called for before the end of the measured window and that was
  // never issued (its session died, or the broker stopped reading until the end) is reported and
  // its deliveries are expected: a broker that dies shows as loss, not as a shorter run.
  for (Client& client : clients_) {
    if (!client.scheduled) continue;
    while (client.schedule.peek() < measureEndNs_) {
      client.schedule.next();
      ++counters_[kUnsent];
      counters_[kExpected] += client.receivers;
    }
  }
  parked_.clear();
}

// --- receiving --------------------------------------------------------------------------------

void Worker::onPubAck(std::uint32_t /*client*/, std::int64_t intendedNs,
                      std::int64_t nowNs) noexcept {
  ++counters_[kAcked];
  if (measured(intendedNs)) {
    puback_.record(static_cast<std::uint64_t>(std::max<std::int64_t>(0, nowNs - intendedNs)));
  }
  if (measured(nowNs)) ++counters_[kMeasuredAcked];
}

void Worker::onMessage(std::uint32_t local, std::string_view /*topic*/, std::string_view payload,
                       std::int64_t nowNs) noexcept {
  Client& client = clients_[local];
  PayloadFields fields;
  if (payload.size() != plan_.options->payloadBytes ||
      decodePayload(payload, fields) != PayloadStatus::kOk) {
    ++counters_[kCorrupt];
    return;
  }
  const std::optional<std::uint32_t> slot =
      plan_.workload->sourceSlot(client.index, fields.publisher);
  if (!slot) {
    ++counters_[kUnexpected];
    return;
  }
  const SequenceTracker::Result result =
      trackers_[client.trackerOffset + *slot].observe(fields.sequence);
  ++counters_[kDelivered];
  counters_[kGivenUp] += result.givenUp;
  if (result.outcome == SequenceTracker::Outcome::kDuplicate) {
    ++counters_[kDuplicated];
  } else if (result.outcome == SequenceTracker::Outcome::kReordered) {
    ++counters_[kReordered];
  }
  if (measured(fields.intendedNs)) {
    latency_.record(
        static_cast<std::uint64_t>(std::max<std::int64_t>(0, nowNs - fields.intendedNs)));
  }
  if (measured(nowNs)) ++counters_[kMeasuredDelivered];
}

void Worker::onBrokerError(std::uint32_t local, std::string_view frame) noexcept {
  ++counters_[kBrokerErrors];
  if (firstFailure_.empty() || loggedFailures_ < kMaxLoggedFailures) {
    try {
      noteFailure(fmt::format("session {}: unexpected reply '{}'", clients_[local].index,
                              frame.substr(0, 200)));
    } catch (...) {
      // Out of memory while describing an error: the count above is what matters.
    }
  }
}

// --- the loop ---------------------------------------------------------------------------------

void Worker::sealBeforeTurn(std::uint32_t client) noexcept {
  // Reserved for every socket of every session at construction: no allocation here.
  toSeal_.push_back(client);
}

void Worker::sealPending() noexcept {
  // A session sealed here may fail and, through onFailed, touch nothing of this list.
  for (std::size_t i = 0; i < toSeal_.size(); ++i) {
    Client& client = clients_[toSeal_[i]];
    if (client.session && client.stage != Stage::kFailed) client.session->sealOutput();
  }
  toSeal_.clear();
}

std::uint64_t Worker::turn(std::int64_t timeoutNs) {
  const std::uint64_t before = socketEvents_;
  sealPending();
  loop_->runOnce(timeoutNs);
  return socketEvents_ - before;
}

void Worker::onReceive(net::SocketId /*id*/, void* user, std::span<const char> bytes) {
  ++socketEvents_;
  Client& client = clients_[tagClient(user)];
  // A failed session has closed its sockets (no more callbacks); this guards the rest.
  if (client.stage == Stage::kFailed || !client.session) return;
  client.session->onReceive(tagSlot(user), bytes, monotonicNanos());
}

void Worker::onInputEnd(net::SocketId /*id*/, void* user, int error) {
  ++socketEvents_;
  Client& client = clients_[tagClient(user)];
  if (client.stage == Stage::kFailed || !client.session) return;
  client.session->onInputEnd(tagSlot(user), error, monotonicNanos());
}

void Worker::onConnected(net::SocketId /*id*/, void* user, int error) {
  ++socketEvents_;
  Client& client = clients_[tagClient(user)];
  if (client.stage == Stage::kFailed || !client.session) return;
  client.session->onConnected(tagSlot(user), error, monotonicNanos());
}

void Worker::tickSessions(std::int64_t nowNs) {
  if (nowNs < nextTickNs_) return;
  nextTickNs_ = nowNs + kTickNs;
  for (Client& client : clients_) {
    if (client.session && client.stage != Stage::kFailed) client.session->tick(nowNs);
  }
}

void Worker::publishLive(std::int64_t nowNs) {
  for (unsigned i = 0; i < kCounterCount; ++i) {
    live_.values[i].store(counters_[i], std::memory_order_relaxed);
  }
  live_.alive.store(alive_, std::memory_order_relaxed);
  if (heap_.empty() && parked_.empty() && measureEndNs_ != 0) {
    // Release: the counts stored above are visible to whoever acquires doneIssuing.
    live_.doneIssuing.store(true, std::memory_order_release);
  }
  if (nowNs >= nextSnapshotNs_ && measureEndNs_ != 0) {
    nextSnapshotNs_ = nowNs + 250 * kMillisecond;
    std::lock_guard lock(snapshotMutex_);
    latencySnapshot_ = latency_;
  }
}

}  // namespace tern::loadgen
