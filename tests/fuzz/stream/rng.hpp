// Rng: the fuzzer's only source of randomness, so that one --seed gives one sequence of cases.
//
// xoshiro256** seeded through SplitMix64, with its own bounded draws: std::uniform_int_distribution
// is implementation-defined, and a reproducer must not change with the standard library.
//
// Not thread-safe; the fuzzer is single-threaded. Never allocates.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

namespace tern::fuzz {

// One SplitMix64 step: advances `state` and returns the next output. Also used on its own to
// expand a `rand:N:SEED` piece into bytes.
inline std::uint64_t splitMix64(std::uint64_t& state) noexcept {
  std::uint64_t z = (state += 0x9E3779B97F4A7C15ULL);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

class Rng {
 public:
  explicit Rng(std::uint64_t seed) noexcept {
    for (std::uint64_t& word : state_)
      word = splitMix64(seed);
  }

  std::uint64_t next() noexcept {
    const std::uint64_t result = rotl(state_[1] * 5, 7) * 9;
    const std::uint64_t t = state_[1] << 17;
    state_[2] ^= state_[0];
    state_[3] ^= state_[1];
    state_[1] ^= state_[2];
    state_[0] ^= state_[3];
    state_[2] ^= t;
    state_[3] = rotl(state_[3], 45);
    return result;
  }

  // Uniform in [0, n); 0 when n == 0. Lemire's multiply-shift (bias below 2^-32 for our n).
  std::uint64_t below(std::uint64_t n) noexcept {
    if (n == 0) return 0;
    return static_cast<std::uint64_t>((static_cast<unsigned __int128>(next()) * n) >> 64);
  }
  // Uniform in [lo, hi]. REQUIRES: lo <= hi.
  std::uint64_t range(std::uint64_t lo, std::uint64_t hi) noexcept {
    return lo + below(hi - lo + 1);
  }
  // True with probability percent/100.
  bool chance(unsigned percent) noexcept { return below(100) < percent; }
  // Small values much more often than large ones: uniform in [0, 2^k) for k uniform in [0, bits].
  std::uint64_t skewed(unsigned bits) noexcept {
    return below(std::uint64_t{1} << below(bits + 1));
  }

  // REQUIRES: !items.empty().
  template <typename T>
  const T& pick(std::span<const T> items) noexcept {
    return items[below(items.size())];
  }
  template <typename T, std::size_t N>
  const T& pick(const T (&items)[N]) noexcept {
    return items[below(N)];
  }
  // Index drawn with the given relative weights. REQUIRES: some weight > 0.
  std::size_t weighted(std::span<const unsigned> weights) noexcept {
    std::uint64_t total = 0;
    for (unsigned w : weights)
      total += w;
    std::uint64_t draw = below(total);
    for (std::size_t i = 0; i < weights.size(); ++i) {
      if (draw < weights[i]) return i;
      draw -= weights[i];
    }
    return weights.size() - 1;
  }

 private:
  static std::uint64_t rotl(std::uint64_t x, int k) noexcept { return (x << k) | (x >> (64 - k)); }
  std::uint64_t state_[4];
};

}  // namespace tern::fuzz
