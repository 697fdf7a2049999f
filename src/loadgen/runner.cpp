#include "tern/loadgen/runner.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <netdb.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <ctime>
#include <memory>
#include <thread>
#include <vector>

#include "run_control.hpp"
#include "tern/common/clock.hpp"
#include "tern/common/log.hpp"
#include "tern/loadgen/rate.hpp"
#include "tern/loadgen/workload.hpp"
#include "worker.hpp"

namespace tern::loadgen {

namespace {

using common::monotonicNanos;
constexpr std::int64_t kMillisecond = 1'000'000;
constexpr std::int64_t kSecond = 1'000'000'000;
// Loopback connections from one source address to one broker port are limited by the ephemeral
// port range (about 28k by default); above this many sockets loadgen spreads its sources.
constexpr std::uint64_t kSocketsPerSourceAddress = 20'000;

double processCpuSeconds() {
  timespec now{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &now);
  return static_cast<double>(now.tv_sec) + static_cast<double>(now.tv_nsec) / 1e9;
}

bool isIpv4Loopback(const BrokerAddress& broker) {
  if (broker.address.ss_family != AF_INET) return false;
  const auto* in = reinterpret_cast<const sockaddr_in*>(&broker.address);
  return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
}

// Sums one counter over every worker's live snapshot.
std::uint64_t liveSum(const std::vector<std::unique_ptr<Worker>>& workers, Counter which) {
  std::uint64_t sum = 0;
  for (const auto& worker : workers) {
    sum += worker->live().values[which].load(std::memory_order_relaxed);
  }
  return sum;
}

}  // namespace

std::vector<std::vector<std::uint32_t>> dealSessions(const Workload& workload,
                                                     std::uint32_t threads) {
  std::vector<std::vector<std::uint32_t>> dealt(threads);
  // Publishers in contiguous blocks, so that client i and its receivers i+1..i+K mostly share a
  // thread: a publish's acknowledgement and its deliveries then come back to one loop, in one
  // wake-up instead of one per thread (which on a VM costs about 20 us of CPU each).
  const std::uint32_t clients = workload.clients();
  const std::uint32_t blocks = std::min(threads, clients);
  for (std::uint32_t c = 0; c < clients; ++c) {
    dealt[static_cast<std::uint64_t>(c) * blocks / clients].push_back(c);
  }
  // Wildcard subscribers receive from every publisher: spread over all threads, those without
  // publishers first, so that no thread is left without a session.
  for (std::uint32_t s = clients; s < workload.sessions(); ++s) {
    dealt[(blocks + (s - clients)) % threads].push_back(s);
  }
  return dealt;
}

BrokerAddress resolveBroker(const std::string& host, std::uint16_t port) {
  BrokerAddress result;
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  const std::string service = std::to_string(port);
  const int status = ::getaddrinfo(host.c_str(), service.c_str(), &hints, &found);
  if (status != 0 || found == nullptr) {
    result.error = fmt::format("cannot resolve {}: {}", host, ::gai_strerror(status));
    return result;
  }
  std::memcpy(&result.address, found->ai_addr, found->ai_addrlen);
  result.length = found->ai_addrlen;
  ::freeaddrinfo(found);
  return result;
}

std::string probeBroker(const BrokerAddress& broker, int timeoutMs) {
  const int fd = ::socket(broker.address.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return fmt::format("socket: {}", std::strerror(errno));
  std::string error;
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&broker.address), broker.length) != 0) {
    if (errno != EINPROGRESS) {
      error = std::strerror(errno);
    } else {
      pollfd wait{fd, POLLOUT, 0};
      const int ready = ::poll(&wait, 1, timeoutMs);
      int soError = 0;
      socklen_t length = sizeof soError;
      if (ready == 0) {
        error = fmt::format("no answer within {} ms", timeoutMs);
      } else if (ready < 0) {
        error = std::strerror(errno);
      } else if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &soError, &length) == 0 && soError != 0) {
        error = std::strerror(soError);
      }
    }
  }
  ::close(fd);
  return error;
}

std::uint64_t descriptorsNeeded(const Options& options) noexcept {
  const std::uint64_t sessions = std::uint64_t{options.clients} + options.wildcardSubscribers;
  // The sockets of every session, an event loop per thread (ring or epoll, an eventfd, a spare
  // descriptor), and headroom for stdio, logs and the JSON file.
  return options.socketsPerSession() * sessions + 3 * effectiveThreads(options) + 64;
}

std::string raiseDescriptorLimit(std::uint64_t needed) {
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) != 0) return std::strerror(errno);
  if (limit.rlim_cur >= needed) return {};
  rlimit wanted = limit;
  wanted.rlim_cur = needed;
  if (wanted.rlim_max < needed) wanted.rlim_max = needed;  // needs CAP_SYS_RESOURCE
  if (::setrlimit(RLIMIT_NOFILE, &wanted) == 0) return {};
  if (limit.rlim_max >= needed) {
    wanted.rlim_max = limit.rlim_max;
    if (::setrlimit(RLIMIT_NOFILE, &wanted) == 0) return {};
  }
  return fmt::format(
      "need {} file descriptors but the limit is {} (hard {}); raise it with ulimit -n", needed,
      limit.rlim_cur, limit.rlim_max);
}

Runner::Runner(Options options, BrokerAddress broker, SessionFactory factory,
               std::shared_ptr<const net::TlsContext> tls)
    : options_(std::move(options)), broker_(broker), factory_(factory), tls_(std::move(tls)) {}

Report Runner::run(std::FILE* progress, const std::atomic<bool>* interrupt) {
  const auto interrupted = [interrupt] {
    return interrupt != nullptr && interrupt->load(std::memory_order_relaxed);
  };
  if (options_.quiet) progress = nullptr;
  const std::string prefix = makeRunPrefix();
  const Workload workload(prefix, options_.clients, options_.fanout, options_.wildcardSubscribers,
                          options_.sharedSubscriptions);
  const std::uint32_t threadCount = effectiveThreads(options_);

  WorkerPlan plan;
  plan.options = &options_;
  plan.workload = &workload;
  plan.factory = factory_;
  plan.broker = broker_.address;
  plan.brokerLength = broker_.length;
  plan.spreadSources =
      isIpv4Loopback(broker_) &&
      std::uint64_t{options_.socketsPerSession()} * workload.sessions() > kSocketsPerSourceAddress;
  // "lg/0123abcd..." -> "lg-0123abcd...-": client ids are "[A-Za-z0-9_.-]{1,64}".
  plan.clientIdPrefix = "lg-" + prefix.substr(3) + "-";
  plan.tls = tls_;

  RunControl control;
  std::vector<std::unique_ptr<Worker>> workers;
  for (auto& sessions : dealSessions(workload, threadCount)) {
    workers.push_back(std::make_unique<Worker>(plan, control, std::move(sessions)));
  }

  Report report;
  report.options = options_.toJson();
  report.runPrefix = prefix;
  report.sessions = workload.sessions();
  report.threads = threadCount;
  report.targetRate = options_.rate;
  // Every worker asked for the same backend, and the kernel answers them alike.
  report.io = std::string(net::name(workers.front()->backend()));
  if (!workers.front()->fallbackReason().empty()) {
    TERN_LOG_INFO("loadgen: {}", workers.front()->fallbackReason());
  }

  // Timer slack is inherited by new threads: 1 ns lets epoll_pwait2 wake a worker when the next
  // publish is due rather than up to the default 50 us later (which would show as send lag);
  // io_uring's timed wait has no slack.
  ::prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL);
  control.connectStartNs = monotonicNanos();
  std::vector<std::thread> threads;
  threads.reserve(workers.size());
  for (auto& worker : workers)
    threads.emplace_back([w = worker.get()] { w->run(); });

  const auto stopAll = [&] {
    control.stop.store(true, std::memory_order_relaxed);
    for (std::thread& thread : threads)
      thread.join();
    threads.clear();
  };

  // --- connecting ---
  std::int64_t nextLine = control.connectStartNs + kSecond;
  while (control.settledWorkers.load(std::memory_order_acquire) < threadCount) {
    if (interrupted()) {
      stopAll();
      report.interrupted = true;
      for (const auto& worker : workers) {
        report.ready += worker->counter(kReady);
        report.connected += worker->counter(kConnected);
        report.failedHandshakes += worker->counter(kFailedHandshakes);
      }
      return report;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    const std::int64_t now = monotonicNanos();
    if (progress != nullptr && now >= nextLine) {
      nextLine += kSecond;
      std::fputs(fmt::format("loadgen {:6.1f}s  connecting: {} of {} sessions ready, {} failed\n",
                             static_cast<double>(now - control.connectStartNs) / 1e9,
                             liveSum(workers, kReady), workload.sessions(),
                             liveSum(workers, kFailedHandshakes))
                     .c_str(),
                 progress);
      std::fflush(progress);
    }
  }
  const std::int64_t setupEndNs = monotonicNanos();
  report.setupS = static_cast<double>(setupEndNs - control.connectStartNs) / 1e9;
  std::int64_t lastConnected = control.connectStartNs;
  for (const auto& worker : workers) {
    lastConnected =
        std::max(lastConnected, worker->live().lastConnectedNs.load(std::memory_order_relaxed));
  }
  report.connectS = static_cast<double>(lastConnected - control.connectStartNs) / 1e9;

  // Who receives each publisher's messages: only sessions that are ready count, so that a failed
  // handshake (reported as an error) does not also show up as lost messages.
  std::vector<std::uint8_t> ready(workload.sessions(), 0);
  std::uint64_t readyCount = 0;
  for (const auto& worker : workers) {
    for (std::size_t i = 0; i < worker->sessions().size(); ++i) {
      ready[worker->sessions()[i]] = worker->readyFlags()[i];
      readyCount += worker->readyFlags()[i];
    }
  }
  if (readyCount == 0) {
    stopAll();
    report.unreachable = true;
    report.failedHandshakes = 0;
    for (const auto& worker : workers) {
      report.failedHandshakes += worker->counter(kFailedHandshakes);
      if (report.firstError.empty()) report.firstError = worker->firstFailure();
    }
    return report;
  }
  control.receiversOf.assign(workload.clients(), 0);
  for (std::uint32_t p = 0; p < workload.clients(); ++p) {
    std::uint32_t receivers = 0;
    workload.forEachReceiver(p, [&](std::uint32_t s) { receivers += ready[s]; });
    control.receiversOf[p] = receivers;
  }

  // --- load ---
  // A short delay so that every worker sees the start time before the first publish is due.
  const std::int64_t startNs =
      monotonicNanos() + 20 * kMillisecond + static_cast<std::int64_t>(options_.idleS * 1e9);
  control.measureStartNs = startNs + static_cast<std::int64_t>(options_.warmupS * 1e9);
  control.measureEndNs =
      control.measureStartNs + static_cast<std::int64_t>(options_.durationS * 1e9);
  control.startNs.store(startNs, std::memory_order_release);
  std::int64_t measureEndNs = control.measureEndNs;  // earlier when interrupted

  const std::int64_t drainNs = static_cast<std::int64_t>(options_.drainS * 1e9);
  double cpuAtStart = -1;
  double cpuAtEnd = -1;
  std::int64_t measuredEndNs = 0;
  std::int64_t issuingDeadline = measureEndNs + drainNs;
  std::int64_t drainDeadline = 0;  // set once every worker has issued its last publish
  std::uint64_t lastSent = 0;
  std::uint64_t lastDelivered = 0;
  Histogram merged;
  Histogram snapshot;
  for (;;) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    const std::int64_t now = monotonicNanos();
    if (!report.interrupted && interrupted()) {
      // End the load now, then drain and report as usual.
      report.interrupted = true;
      measureEndNs = std::min(measureEndNs, now);
      issuingDeadline = measureEndNs + drainNs;
      control.cutNs.store(measureEndNs, std::memory_order_relaxed);
    }
    if (cpuAtStart < 0 && now >= control.measureStartNs) cpuAtStart = processCpuSeconds();
    if (cpuAtEnd < 0 && now >= measureEndNs) {
      cpuAtEnd = processCpuSeconds();
      measuredEndNs = now;
    }
    std::uint64_t alive = 0;
    bool doneIssuing = true;
    for (const auto& worker : workers) {
      alive += worker->live().alive.load(std::memory_order_relaxed);
      doneIssuing = doneIssuing && worker->live().doneIssuing.load(std::memory_order_acquire);
    }
    if (progress != nullptr && now >= nextLine) {
      nextLine += kSecond;
      merged.reset();
      for (const auto& worker : workers) {
        worker->copyLatencySnapshot(snapshot);
        merged.merge(snapshot);
      }
      const std::uint64_t sent = liveSum(workers, kSent);
      const std::uint64_t delivered = liveSum(workers, kDelivered);
      const char* phase = now < startNs                  ? "  (idle)"
                          : now < control.measureStartNs ? "  (warm-up)"
                          : now >= measureEndNs          ? "  (draining)"
                                                         : "";
      const std::uint64_t errors = liveSum(workers, kDisconnects) +
                                   liveSum(workers, kBrokerErrors) + liveSum(workers, kCorrupt) +
                                   liveSum(workers, kUnexpected);
      const std::string line = fmt::format(
          "loadgen {:6.1f}s  publish {}/s  deliver {}/s  p99 {}  lost {}  behind {}{}{}\n",
          static_cast<double>(now - control.connectStartNs) / 1e9,
          formatRate(static_cast<double>(sent - lastSent)),
          formatRate(static_cast<double>(delivered - lastDelivered)),
          merged.count() == 0
              ? std::string("-")
              : formatMicros(static_cast<double>(merged.valueAtPercentile(99)) / 1000),
          liveSum(workers, kGivenUp), liveSum(workers, kBehind),
          errors == 0 ? std::string() : fmt::format("  errors {}", errors), phase);
      std::fputs(line.c_str(), progress);
      std::fflush(progress);
      lastSent = sent;
      lastDelivered = delivered;
    }
    if (alive == 0) break;  // every session is gone (the broker died): nothing more can arrive
    if (now < measureEndNs) continue;
    if (drainDeadline == 0) {
      if (doneIssuing) {
        drainDeadline = now + drainNs;
      } else if (now >= issuingDeadline) {
        break;
      }
      continue;
    }
    // Acquired doneIssuing above, so kSent and kExpected are final in what follows.
    const std::uint64_t expected = liveSum(workers, kExpected);
    const std::uint64_t unique = liveSum(workers, kDelivered) - liveSum(workers, kDuplicated);
    const bool allAcked =
        !options_.acknowledged() || liveSum(workers, kAcked) >= liveSum(workers, kSent);
    if (allAcked && unique >= expected) {
      report.drained = true;
      break;
    }
    if (now >= drainDeadline) break;
  }
  const std::int64_t stopNs = monotonicNanos();
  if (cpuAtStart < 0) cpuAtStart = processCpuSeconds();
  if (cpuAtEnd < 0) {
    cpuAtEnd = processCpuSeconds();
    measuredEndNs = stopNs;
  }
  stopAll();

  // --- results (the workers are joined: their plain fields are ours to read) ---
  Histogram latency;
  Histogram puback;
  Histogram sendLag;
  Histogram connect;
  std::uint64_t counts[kCounterCount] = {};
  for (const auto& worker : workers) {
    for (unsigned c = 0; c < kCounterCount; ++c)
      counts[c] += worker->counter(static_cast<Counter>(c));
    latency.merge(worker->latency());
    puback.merge(worker->pubackLatency());
    sendLag.merge(worker->sendLag());
    connect.merge(worker->connectTime());
    if (report.firstError.empty()) report.firstError = worker->firstFailure();
  }
  report.connected = counts[kConnected];
  report.ready = counts[kReady];
  report.failedHandshakes = counts[kFailedHandshakes];
  report.connectTime = LatencySummary::fromNanos(connect);
  report.sent = counts[kSent];
  report.acked = counts[kAcked];
  report.delivered = counts[kDelivered];
  report.expected = counts[kExpected];
  report.duplicated = counts[kDuplicated];
  report.reordered = counts[kReordered];
  const std::uint64_t unique = report.delivered - report.duplicated;
  report.lost = report.expected > unique ? report.expected - unique : 0;
  report.behind = counts[kBehind];
  report.throttled = counts[kThrottled];
  report.unsent = counts[kUnsent];
  report.acknowledged = options_.acknowledged();
  report.unacked =
      report.acknowledged && report.sent > report.acked ? report.sent - report.acked : 0;
  report.disconnects = counts[kDisconnects];
  report.brokerErrors = counts[kBrokerErrors];
  report.corrupt = counts[kCorrupt];
  report.unexpected = counts[kUnexpected];

  report.measuredS = std::max(
      0.0,
      static_cast<double>(std::min(measuredEndNs, measureEndNs) - control.measureStartNs) / 1e9);
  if (report.measuredS > 0) {
    report.publishRate = static_cast<double>(counts[kMeasuredSent]) / report.measuredS;
    report.ackRate = static_cast<double>(counts[kMeasuredAcked]) / report.measuredS;
    report.deliveryRate = static_cast<double>(counts[kMeasuredDelivered]) / report.measuredS;
    report.loadgenCpuS = cpuAtEnd - cpuAtStart;
    report.loadgenCpuUtil = report.loadgenCpuS / (report.measuredS * threadCount);
    report.loadgenSpinS =
        std::min(report.loadgenCpuS, static_cast<double>(counts[kMeasuredSpinNs]) / 1e9);
    report.loadgenBusyUtil =
        (report.loadgenCpuS - report.loadgenSpinS) / (report.measuredS * threadCount);
  }
  report.measuredSent = counts[kMeasuredSent];
  report.measuredAcked = counts[kMeasuredAcked];
  report.measuredDelivered = counts[kMeasuredDelivered];
  const auto seconds = [](std::int64_t ns) { return static_cast<double>(ns) / 1e9; };
  report.timeline.connectStart = seconds(control.connectStartNs);
  report.timeline.setupEnd = seconds(setupEndNs);
  report.timeline.loadStart = seconds(startNs);
  report.timeline.measureStart = seconds(control.measureStartNs);
  report.timeline.measureEnd = seconds(std::min(measuredEndNs, measureEndNs));
  report.timeline.stop = seconds(stopNs);
  report.latencyCdf = LatencySummary::cdfMicros(latency);
  report.latency = LatencySummary::fromNanos(latency);
  report.pubackLatency = LatencySummary::fromNanos(puback);
  report.sendLag = LatencySummary::fromNanos(sendLag);
  return report;
}

}  // namespace tern::loadgen
