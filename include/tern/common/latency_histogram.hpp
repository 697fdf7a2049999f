// LatencyHistogram: counts of durations in fixed buckets (10 µs .. 1 s), for the histograms of
// /metrics (Prometheus `histogram`: cumulative `le` buckets, `_sum`, `_count`).
//
// The bounds are fixed so that the histograms of all workers add up bucket by bucket, and a
// reader sums them on scrape: the writer gains no shared atomic. The count is not stored: it is
// the sum of the buckets (derived, so a reader never sees a count that disagrees with them).
//
// Ownership: embedded in a per-worker structure (WorkerStats). Threads: one writer, the owner,
// which updates with a relaxed load and store (no read-modify-write: nobody else writes); any
// thread reads. Relaxed everywhere: these are statistics, and a reader that sees one bucket a
// moment later than another is fine (Prometheus tolerates a scrape that catches a histogram
// mid-update, and each bucket never decreases).
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>

namespace tern::common {

class LatencyHistogram {
 public:
  // Upper bounds (inclusive, as Prometheus's `le`) in nanoseconds; a last bucket takes the rest.
  static constexpr std::array<std::int64_t, 15> kBoundsNanos = {
      10'000,     25'000,     50'000,      100'000,     250'000,
      500'000,    1'000'000,  2'500'000,   5'000'000,   10'000'000,
      25'000'000, 50'000'000, 100'000'000, 250'000'000, 1'000'000'000};
  static constexpr std::size_t kBuckets = kBoundsNanos.size() + 1;

  // Owner thread only. A negative duration (a clock read before its start on another core)
  // counts as 0.
  void observe(std::int64_t nanos) noexcept {
    if (nanos < 0) nanos = 0;
    std::size_t i = 0;
    while (i < kBoundsNanos.size() && nanos > kBoundsNanos[i])
      ++i;
    bump(buckets_[i], 1);
    bump(sumNanos_, static_cast<std::uint64_t>(nanos));
  }

  // What a reader adds up: per-bucket counts (not cumulative) and the sum.
  struct Totals {
    std::array<std::uint64_t, kBuckets> buckets{};
    std::uint64_t sumNanos = 0;
    std::uint64_t count() const noexcept {
      std::uint64_t n = 0;
      for (const std::uint64_t b : buckets)
        n += b;
      return n;
    }
  };
  // Any thread: adds this histogram into `totals`.
  void addTo(Totals& totals) const noexcept {
    for (std::size_t i = 0; i < kBuckets; ++i)
      totals.buckets[i] += buckets_[i].load(std::memory_order_relaxed);
    totals.sumNanos += sumNanos_.load(std::memory_order_relaxed);
  }

 private:
  static void bump(std::atomic<std::uint64_t>& counter, std::uint64_t delta) noexcept {
    counter.store(counter.load(std::memory_order_relaxed) + delta, std::memory_order_relaxed);
  }

  std::array<std::atomic<std::uint64_t>, kBuckets> buckets_{};
  std::atomic<std::uint64_t> sumNanos_{0};
};

}  // namespace tern::common
