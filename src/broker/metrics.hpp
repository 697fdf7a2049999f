// renderMetrics: the broker's state in the Prometheus text format (common/metrics_text.hpp), for
// GET /metrics (MetricsServer). docs/operations.md lists every metric.
//
// Cost: it reads each worker's WorkerStats and the shared structures' counters (relaxed atomic
// loads, a handful per worker) and a few /proc files; it takes no lock that a worker takes, posts
// nothing to a worker and never waits for one, so a scrape costs the workers no time at all.
// Counters are per worker and summed here: the publish path gains no shared atomic.
//
// Threads: any thread, while the workers exist (between Broker's constructor and destructor).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace tern::broker {

struct BrokerContext;

// What one scraper keeps from one scrape to the next: the largest busy time reported per worker,
// so that tern_worker_busy_seconds_total never goes back (WorkerStats::busyNanos says why it
// could by a few ns; Prometheus takes any decrease of a counter for a restart).
struct MetricsMemory {
  std::vector<std::int64_t> busyNanos;
};

// `startedAtSeconds`: the Unix time the broker started (process_start_time_seconds).
// REQUIRES: one caller at a time per `memory`.
std::string renderMetrics(const BrokerContext& context, double startedAtSeconds,
                          MetricsMemory& memory);

}  // namespace tern::broker
