// LogLimiter: one log line per interval for an event that may recur at any rate (a limit reached,
// a queue full, accept failing with EMFILE), with the number of occurrences since the last line, so
// that an attacker cannot flood the log and the operator still learns how often it happened.
//
// Thread-safe: any thread may call admit(). The state is two relaxed atomics: a stale view only
// moves a line by one occurrence, and the compare-exchange on the next allowed time lets exactly
// one caller per interval through.
#pragma once

#include <atomic>
#include <cstdint>

namespace tern::common {

class LogLimiter {
 public:
  static constexpr std::int64_t kDefaultIntervalNanos = 10'000'000'000;  // 10 s

  explicit LogLimiter(std::int64_t intervalNanos = kDefaultIntervalNanos) noexcept
      : interval_(intervalNanos) {}

  // Counts one occurrence at monotonic time `now`. Returns how many occurrences the caller's log
  // line stands for (this one and those suppressed since the last line) when a line is due, else
  // 0. Never allocates. Thread-safe.
  std::uint64_t admit(std::int64_t now) noexcept {
    const std::uint64_t seen = count_.fetch_add(1, std::memory_order_relaxed) + 1;
    std::int64_t next = next_.load(std::memory_order_relaxed);
    if (now < next) return 0;
    if (!next_.compare_exchange_strong(next, now + interval_, std::memory_order_relaxed)) return 0;
    return seen - reported_.exchange(seen, std::memory_order_relaxed);
  }

 private:
  const std::int64_t interval_;
  std::atomic<std::int64_t> next_{0};
  std::atomic<std::uint64_t> count_{0};
  std::atomic<std::uint64_t> reported_{0};
};

}  // namespace tern::common
