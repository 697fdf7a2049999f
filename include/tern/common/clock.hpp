// Monotonic time in nanoseconds, for deadlines and latency measurement.
//
// Thread-safe (a plain clock_gettime(CLOCK_MONOTONIC) through std::chrono::steady_clock).
#pragma once

#include <chrono>
#include <cstdint>

namespace tern::common {

using Clock = std::chrono::steady_clock;

// Nanoseconds since an arbitrary fixed point (boot on Linux). Never allocates. Thread-safe.
inline std::int64_t monotonicNanos() noexcept {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch())
      .count();
}

// Milliseconds since the Unix epoch (the wall clock, which may jump). Thread-safe.
inline std::int64_t unixMillisNow() noexcept {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Converts deadlines between the monotonic clock the event loops use and the wall clock they are
// stored in on disk (a monotonic value means nothing after a reboot). It reads each clock once,
// when constructed, so that every conversion made with one instance agrees with the others.
// A value type: use it on one thread, for one batch of conversions.
class DeadlineClocks {
 public:
  DeadlineClocks() noexcept : monotonic_(monotonicNanos()), unixMs_(unixMillisNow()) {}

  std::int64_t monotonicNow() const noexcept { return monotonic_; }

  // Unix milliseconds of a monotonic deadline. 0 (none) stays 0; a passed deadline becomes 1,
  // one millisecond after the epoch, still passed when read back.
  std::uint64_t unixMillisOf(std::int64_t monotonicDeadline) const noexcept {
    if (monotonicDeadline == 0) return 0;
    const std::int64_t left = (monotonicDeadline - monotonic_) / 1'000'000;
    return static_cast<std::uint64_t>(left + unixMs_ > 1 ? left + unixMs_ : 1);
  }

  // Milliseconds from now to a stored wall-clock deadline (negative or 0 once it passed).
  std::int64_t millisUntil(std::uint64_t unixMs) const noexcept {
    return static_cast<std::int64_t>(unixMs) - unixMs_;
  }

  // The monotonic deadline `millis` milliseconds from now.
  std::int64_t monotonicIn(std::int64_t millis) const noexcept {
    return monotonic_ + millis * 1'000'000;
  }

 private:
  std::int64_t monotonic_;
  std::int64_t unixMs_;
};

}  // namespace tern::common
