// WorkerStats: the counters of one worker, read by STATS from any worker.
//
// Ownership: embedded in its Worker. Threads: only the owning worker writes (so a plain load+store
// replaces a locked read-modify-write); any thread reads. Relaxed order everywhere: these are
// statistics, and a reader that sees a slightly stale value is fine. The struct is cache-aligned so
// that two workers' counters never share a line.
#pragma once

#include <atomic>
#include <cstdint>

#include "tern/common/cache_line.hpp"

namespace tern::broker {

struct alignas(common::kCacheLine) WorkerStats {
  std::atomic<std::int64_t> sessions{0};      // live sessions owned by this worker
  std::atomic<std::int64_t> sockets{0};       // open sockets owned by this worker
  std::atomic<std::uint64_t> received{0};     // publishes parsed by this worker
  std::atomic<std::uint64_t> delivered{0};    // frames queued to subscribers' push sockets
  std::atomic<std::uint64_t> dropped{0};      // pushes dropped because a session's queue was full
  std::atomic<std::uint64_t> connections{0};  // sockets ever opened on (or handed to) this worker
  // Bytes of connection read/write buffers still held after the last idle-buffer sweep (once a
  // second): the memory that pending input and output take, 0 when every connection is idle.
  std::atomic<std::uint64_t> bufferBytes{0};

  // Owner thread only.
  template <typename T>
  static void add(std::atomic<T>& counter, T delta) noexcept {
    counter.store(counter.load(std::memory_order_relaxed) + delta, std::memory_order_relaxed);
  }
};

}  // namespace tern::broker
