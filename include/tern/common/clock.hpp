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

}  // namespace tern::common
