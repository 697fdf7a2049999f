// Schedule: the intended send times of one publisher, constant-spaced or Poisson, deterministic.
//
// loadgen is open loop: every publish has an intended time taken from its publisher's schedule,
// whether or not loadgen or the broker keeps up, and latency is measured from that time. Each
// simulated client has its own Schedule at rate R/N: N constant schedules whose phases are spread
// by 1/R add up to one constant stream of rate R, and N Poisson processes of rate R/N add up to a
// Poisson process of rate R. Because a client's times depend only on (seed, client index), the
// workload is the same whatever the number of threads.
//
// Times are absolute steady-clock nanoseconds (tern::common::monotonicNanos()).
//
// Ownership: a plain value owned by one thread. Never allocates. Not thread-safe.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace tern::loadgen {

enum class Arrival { kConstant, kPoisson };

// "constant" or "poisson" (any case); nullopt otherwise.
std::optional<Arrival> parseArrival(std::string_view text) noexcept;
std::string_view arrivalName(Arrival arrival) noexcept;

// SplitMix64 (Steele, Lea, Flood 2014): a tiny, fast generator whose output passes BigCrush;
// enough for inter-arrival gaps, and fully determined by its 64-bit seed.
class SplitMix64 {
 public:
  explicit SplitMix64(std::uint64_t seed = 0) noexcept : state_(seed) {}
  std::uint64_t next() noexcept {
    std::uint64_t z = (state_ += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  // Uniform in [0, 1) with 53 random bits.
  double nextUnit() noexcept { return static_cast<double>(next() >> 11) * 0x1.0p-53; }

 private:
  std::uint64_t state_;
};

// Mixes a run seed and a stream number (the client index) into an independent stream seed.
std::uint64_t streamSeed(std::uint64_t seed, std::uint64_t stream) noexcept;

class Schedule {
 public:
  // An empty schedule; assign a real one before use.
  Schedule() noexcept = default;
  // Events at `eventsPerSecond` (> 0) from `startNs`: constant schedules fire at startNs + phaseNs
  // + k / rate for k = 0, 1, ...; Poisson ones at startNs + phaseNs + the running sum of
  // exponential gaps drawn from `seed` (the first event one gap after the start).
  Schedule(Arrival arrival, double eventsPerSecond, std::int64_t startNs, std::int64_t phaseNs,
           std::uint64_t seed) noexcept;

  // The intended time of the next event, without consuming it.
  std::int64_t peek() const noexcept { return nextNs_; }
  // Consumes the next event and returns its intended time. Never allocates.
  std::int64_t next() noexcept;
  // Events consumed so far.
  std::uint64_t consumed() const noexcept { return index_; }

 private:
  std::int64_t computeNext() noexcept;

  Arrival arrival_ = Arrival::kConstant;
  double periodNs_ = 0;  // mean gap
  std::int64_t originNs_ = 0;
  // Poisson: offset of the next event from origin, in ns, kept in double so that rounding never
  // accumulates; constant: computed from index_ directly for the same reason.
  double offsetNs_ = 0;
  std::uint64_t index_ = 0;
  std::int64_t nextNs_ = 0;
  SplitMix64 random_;
};

}  // namespace tern::loadgen
