// sumWorkers: the broker-wide value of one WorkerStats counter, the sum over the workers (each
// worker counts its own, so the publish path has no shared counter; readers add them up).
//
// Threads: any thread, while the workers exist. Relaxed loads: see worker_stats.hpp.
#pragma once

#include <atomic>

#include "broker_context.hpp"
#include "worker.hpp"
#include "worker_stats.hpp"

namespace tern::broker {

template <typename T>
T sumWorkers(const BrokerContext& context, const std::atomic<T> WorkerStats::*counter) noexcept {
  T total = 0;
  for (const auto& w : context.workers)
    total += (w->stats().*counter).load(std::memory_order_relaxed);
  return total;
}

}  // namespace tern::broker
