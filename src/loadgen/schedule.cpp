#include "tern/loadgen/schedule.hpp"

#include <cctype>
#include <cmath>

namespace tern::loadgen {

namespace {

bool equalsIgnoreCase(std::string_view a, std::string_view b) noexcept {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(a[i])) != b[i]) return false;
  }
  return true;
}

}  // namespace

std::optional<Arrival> parseArrival(std::string_view text) noexcept {
  if (equalsIgnoreCase(text, "constant")) return Arrival::kConstant;
  if (equalsIgnoreCase(text, "poisson")) return Arrival::kPoisson;
  return std::nullopt;
}

std::string_view arrivalName(Arrival arrival) noexcept {
  return arrival == Arrival::kPoisson ? "poisson" : "constant";
}

std::uint64_t streamSeed(std::uint64_t seed, std::uint64_t stream) noexcept {
  // Two SplitMix steps: nearby (seed, stream) pairs give unrelated seeds.
  SplitMix64 mix(seed ^ (stream * 0xd1b54a32d192ed03ULL));
  mix.next();
  return mix.next();
}

Schedule::Schedule(Arrival arrival, double eventsPerSecond, std::int64_t startNs,
                   std::int64_t phaseNs, std::uint64_t seed) noexcept
    : arrival_(arrival),
      periodNs_(1e9 / eventsPerSecond),
      originNs_(startNs + phaseNs),
      random_(seed) {
  nextNs_ = computeNext();
}

std::int64_t Schedule::computeNext() noexcept {
  if (arrival_ == Arrival::kConstant) {
    return originNs_ + std::llround(static_cast<double>(index_) * periodNs_);
  }
  // Inverse transform: -ln(1 - U) is exponential with mean 1; log1p keeps precision for small U.
  offsetNs_ += -std::log1p(-random_.nextUnit()) * periodNs_;
  return originNs_ + std::llround(offsetNs_);
}

std::int64_t Schedule::next() noexcept {
  const std::int64_t current = nextNs_;
  ++index_;
  nextNs_ = computeNext();
  return current;
}

}  // namespace tern::loadgen
