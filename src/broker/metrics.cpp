#include "metrics.hpp"

#include <dirent.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <string_view>

#include "broker_context.hpp"
#include "tern/common/clock.hpp"
#include "tern/common/metrics_text.hpp"
#include "tern/net/acceptor.hpp"
#include "worker.hpp"
#include "worker_totals.hpp"

namespace tern::broker {
namespace {

using common::MetricsText;
constexpr auto kCounter = MetricsText::Type::kCounter;
constexpr auto kGauge = MetricsText::Type::kGauge;

struct ProcessFigures {
  double cpuSeconds = 0;  // user + system, all threads
  std::uint64_t residentBytes = 0;
  std::uint64_t virtualBytes = 0;
  std::int64_t openFds = -1;  // -1: unknown (no /proc)
  std::uint64_t maxFds = 0;
};

ProcessFigures readProcess() {
  ProcessFigures p;
  const long ticks = ::sysconf(_SC_CLK_TCK);
  const long page = ::sysconf(_SC_PAGESIZE);
  if (std::FILE* f = std::fopen("/proc/self/stat", "r")) {
    char buffer[1024];
    const std::size_t n = std::fread(buffer, 1, sizeof buffer - 1, f);
    std::fclose(f);
    buffer[n] = '\0';
    // Fields after the command name, which is in parentheses and may hold spaces: state is
    // field 3, utime 14, stime 15, vsize 23, rss 24 (proc(5)).
    const std::string_view text(buffer, n);
    const std::size_t close = text.rfind(')');
    unsigned long utime = 0, stime = 0, vsize = 0;
    long rss = 0;
    if (close != std::string_view::npos &&
        std::sscanf(buffer + close + 2,
                    "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu %*d %*d %*d %*d %*d %*d "
                    "%*u %lu %ld",
                    &utime, &stime, &vsize, &rss) == 4 &&
        ticks > 0 && page > 0) {
      p.cpuSeconds = static_cast<double>(utime + stime) / static_cast<double>(ticks);
      p.virtualBytes = vsize;
      p.residentBytes = static_cast<std::uint64_t>(rss) * static_cast<std::uint64_t>(page);
    }
  }
  // Since Linux 6.2 the size of /proc/self/fd is the number of open descriptors: one stat()
  // instead of a listing, which costs about 1.3 us per descriptor here (13 ms at 10k
  // connections, perf/metrics). Older kernels report 0 there and get the listing.
  struct stat fds {};
  if (::stat("/proc/self/fd", &fds) == 0 && fds.st_size > 0) {
    p.openFds = static_cast<std::int64_t>(fds.st_size);
  } else if (DIR* d = ::opendir("/proc/self/fd")) {
    std::int64_t count = 0;
    while (const dirent* e = ::readdir(d)) {
      if (e->d_name[0] != '.') ++count;
    }
    ::closedir(d);
    p.openFds = count - 1;  // not the descriptor opendir itself holds
  }
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) == 0) p.maxFds = limit.rlim_cur;
  return p;
}

}  // namespace

std::string renderMetrics(const BrokerContext& context, double startedAtSeconds,
                          MetricsMemory& memory) {
  const auto load = [](const auto& counter) { return counter.load(std::memory_order_relaxed); };
  const auto total = [&context](const auto WorkerStats::*counter) {
    return sumWorkers(context, counter);
  };
  MetricsText m;
  m.family("tern_build_info", kGauge, "Always 1; the version of the broker is its label");
  m.sample({{"version", TERN_VERSION}}, std::int64_t{1});
  m.single("tern_workers", kGauge, "Worker event loops", std::int64_t(context.workers.size()));

  // Connections and sessions.
  const std::int64_t sockets = total(&WorkerStats::sockets);
  const std::int64_t mqttSockets = total(&WorkerStats::mqttSockets);
  m.family("tern_connections", kGauge,
           "Open client connections by protocol (TLS included; a line-protocol session has up "
           "to three)");
  m.sample({{"protocol", "line"}}, sockets - mqttSockets);
  m.sample({{"protocol", "mqtt"}}, mqttSockets);
  m.single("tern_connections_accepted_total", kCounter,
           "Connections accepted on every listener, refused ones included",
           context.acceptor != nullptr ? context.acceptor->accepted() : std::uint64_t{0});
  m.family("tern_connections_refused_total", kCounter,
           "Connections closed at accept by a limit (docs/limits.md)");
  m.sample({{"reason", "max_connections"}}, load(context.refusedConnections));
  m.sample({{"reason", "max_connections_per_address"}}, load(context.refusedConnectionsPerAddress));
  m.sample({{"reason", "max_unauthenticated_per_address"}},
           load(context.refusedConnectionsUnauthenticated));
  m.sample({{"reason", "out_of_descriptors"}},
           context.acceptor != nullptr ? context.acceptor->shed() : std::uint64_t{0});
  m.family("tern_connections_closed_total", kCounter,
           "Connections the broker closed because a client broke a limit");
  m.sample({{"reason", "frame_timeout"}}, total(&WorkerStats::closedFrameTimeout));
  m.sample({{"reason", "keep_alive"}}, total(&WorkerStats::closedKeepAlive));
  m.sample({{"reason", "max_awaiting_rel"}}, total(&WorkerStats::closedAwaitingRelease));
  const std::int64_t sessions = total(&WorkerStats::sessions);
  const std::int64_t mqttSessions = total(&WorkerStats::mqttSessions);
  m.family("tern_sessions", kGauge,
           "Sessions by protocol, persistent MQTT sessions of offline clients included");
  m.sample({{"protocol", "line"}}, sessions - mqttSessions);
  m.sample({{"protocol", "mqtt"}}, mqttSessions);
  m.single("tern_sessions_expired_total", kCounter,
           "Persistent MQTT sessions ended by --session-expiry",
           total(&WorkerStats::expiredSessions));
  m.single("tern_auth_failures_total", kCounter,
           "CONNECTs refused by --password-file or --allow-anonymous",
           total(&WorkerStats::refusedAuth));
  m.single("tern_tls_handshakes_total", kCounter, "TLS handshakes completed",
           total(&WorkerStats::tlsHandshakes));
  m.single("tern_tls_failures_total", kCounter, "TLS connections closed by a TLS error",
           total(&WorkerStats::tlsFailures));
  m.single("tern_websocket_handshakes_total", kCounter,
           "WebSocket upgrades accepted (MQTT over WebSockets)", total(&WorkerStats::wsHandshakes));
  m.single("tern_websocket_refused_total", kCounter,
           "WebSocket upgrades refused with an HTTP error (bad request, Origin not allowed, ...)",
           total(&WorkerStats::wsRefused));
  m.family("tern_refusals_total", kCounter,
           "Requests refused at a limit or by a rule, each counted once per refusal");
  m.sample({{"reason", "max_sessions"}}, total(&WorkerStats::refusedSessions));
  m.sample({{"reason", "max_subscriptions"}}, total(&WorkerStats::refusedSubscriptions));
  m.sample({{"reason", "max_retained"}}, total(&WorkerStats::refusedRetained));
  m.sample({{"reason", "sys_topic"}}, total(&WorkerStats::refusedSysTopic));
  m.sample({{"reason", "acl"}}, total(&WorkerStats::refusedAcl));

  // Messages.
  m.single("tern_messages_received_total", kCounter, "Publishes received from clients",
           total(&WorkerStats::received));
  m.single("tern_messages_delivered_total", kCounter,
           "Messages written to subscribers (MQTT resends not counted again)",
           total(&WorkerStats::delivered));
  m.family("tern_messages_dropped_total", kCounter,
           "Deliveries not made, by reason (docs/limits.md)");
  m.sample({{"reason", "queue_full"}}, total(&WorkerStats::droppedQueueFull));
  m.sample({{"reason", "unframable"}}, total(&WorkerStats::droppedUnframable));
  m.sample({{"reason", "memory_limit"}}, total(&WorkerStats::droppedMemory));
  m.sample({{"reason", "expired"}}, total(&WorkerStats::droppedExpired));
  m.sample({{"reason", "too_large"}}, total(&WorkerStats::droppedTooLarge));
  m.single("tern_queued_messages", kGauge,
           "MQTT messages waiting in session queues for their client (not yet in flight)",
           total(&WorkerStats::queuedMessages));
  m.single("tern_bytes_received_total", kCounter, "Bytes read from client connections",
           total(&WorkerStats::bytesReceived));
  m.single("tern_bytes_sent_total", kCounter, "Bytes written to client connections",
           total(&WorkerStats::bytesSent));
  m.single("tern_subscriptions", kGauge, "Subscriptions of both protocols, shared ones excluded",
           std::uint64_t(context.trie.size()));
  m.single("tern_shared_groups", kGauge, "Shared subscription groups ($share/<name>/<filter>)",
           std::uint64_t(context.shared.groups()));
  m.single("tern_shared_memberships", kGauge, "Sessions' memberships of shared groups",
           std::uint64_t(context.shared.memberships()));
  m.single("tern_retained_messages", kGauge, "Retained messages",
           std::uint64_t(context.retained.size()));
  m.single("tern_retained_bytes", kGauge, "Bytes the retained messages hold",
           std::uint64_t(context.retained.bytes()));
  if (context.store != nullptr) {
    // --data-dir (docs/durability.md). Relaxed reads of the store's statistics.
    const persist::StoreCounters& sc = context.store->counters();
    const auto get = [](const std::atomic<std::uint64_t>& a) {
      return a.load(std::memory_order_relaxed);
    };
    m.single("tern_store_queue_depth", kGauge,
             "Writes queued for the persistence thread and not yet taken",
             get(sc.queueDepth.value));
    m.single("tern_store_refused_total", kCounter,
             "Writes the full store queue refused (their connections stopped being read until "
             "it drained)",
             get(sc.refused.value));
    m.single("tern_store_batches_total", kCounter,
             "Batches written (group commit: one log write, and in sync mode one fdatasync, each)",
             get(sc.batches));
    m.single("tern_store_writes_total", kCounter, "Writes committed", get(sc.commits));
    m.single("tern_store_failed_writes_total", kCounter,
             "Writes that failed (storage errors: not acknowledged to clients)",
             get(sc.failedRequests));
    m.single("tern_store_errors_total", kCounter, "Batch writes or log syncs that failed",
             get(sc.errors));
    m.single("tern_store_syncs_total", kCounter, "fdatasync calls of the write-ahead log",
             get(sc.syncs));
    m.single("tern_store_commit_seconds_total", kCounter,
             "Time spent writing batches (with their sync); divided by the batches, the mean",
             static_cast<double>(get(sc.totalCommitNanos)) / 1e9);
    m.single("tern_store_key_writes_total", kCounter,
             "Puts and erases of keys the writes asked for (range erasures not counted)",
             get(sc.keyWrites));
    m.single("tern_store_folded_key_writes_total", kCounter,
             "Puts and erases left out of their batch: replaced by a later write of the same key, "
             "or created and erased within the batch (an entry acknowledged before it was "
             "written)",
             get(sc.foldedKeyWrites));
  }
  m.single("tern_memory_bytes", kGauge,
           "Bytes of buffers, queued messages and sliced work the workers hold (--memory-limit)",
           total(&WorkerStats::memoryBytes));

  // Workers.
  m.family("tern_worker_busy_seconds_total", kCounter,
           "Time each worker's event loop was not asleep waiting for events (its utilisation "
           "is the rate)");
  memory.busyNanos.resize(context.workers.size(), 0);
  for (const auto& w : context.workers) {
    std::int64_t& busy = memory.busyNanos[w->index()];
    busy = std::max(busy, w->stats().busyNanos(common::monotonicNanos));
    m.sample({{"worker", std::to_string(w->index())}}, static_cast<double>(busy) / 1e9);
  }
  m.family("tern_worker_inbox_items", kGauge,
           "Items waiting in each worker's inbox (sockets, deliveries from other workers)");
  for (const auto& w : context.workers) {
    const std::string index = std::to_string(w->index());
    m.sample({{"worker", index}}, std::uint64_t(w->inboxBacklog()));
  }
  // Latency histograms, every worker's added bucket by bucket.
  const auto histogram = [&](std::string_view name, std::string_view help,
                             common::LatencyHistogram WorkerStats::*field) {
    common::LatencyHistogram::Totals totals;
    for (const auto& w : context.workers)
      (w->stats().*field).addTo(totals);
    std::array<double, common::LatencyHistogram::kBoundsNanos.size()> bounds{};
    for (std::size_t i = 0; i < bounds.size(); ++i)
      bounds[i] = static_cast<double>(common::LatencyHistogram::kBoundsNanos[i]) / 1e9;
    m.histogram(name, help, bounds, totals.buckets, static_cast<double>(totals.sumNanos) / 1e9);
  };
  histogram("tern_worker_turn_seconds",
            "Event-loop turns that handled input or deliveries, from the loop's wake-up to the "
            "end of the turn: how long a delivery made in the turn waited for its write",
            &WorkerStats::turnLatency);
  histogram("tern_inbox_wait_seconds",
            "Batches of deliveries between workers, from the publishing worker's post to their "
            "handling by the subscriber's worker (its wake-up included)",
            &WorkerStats::inboxWait);

  // The process, under the names Prometheus's client libraries use.
  const ProcessFigures p = readProcess();
  m.single("process_cpu_seconds_total", kCounter, "User and system CPU time of the broker",
           p.cpuSeconds);
  m.single("process_resident_memory_bytes", kGauge, "Resident memory", p.residentBytes);
  m.single("process_virtual_memory_bytes", kGauge, "Virtual memory", p.virtualBytes);
  if (p.openFds >= 0) m.single("process_open_fds", kGauge, "Open file descriptors", p.openFds);
  m.single("process_max_fds", kGauge, "The open-file limit", p.maxFds);
  m.single("process_start_time_seconds", kGauge, "When the broker started, in Unix time",
           startedAtSeconds);
  return m.take();
}

}  // namespace tern::broker
