#include "tern/loadgen/histogram.hpp"

#include <algorithm>
#include <bit>
#include <cmath>

namespace tern::loadgen {

namespace {
constexpr std::uint64_t kSubBuckets = std::uint64_t{1} << Histogram::kSubBucketBits;  // 128
constexpr unsigned kFirstOctave = Histogram::kSubBucketBits + 1;                      // 2^8
}  // namespace

Histogram::Histogram() : counts_(kBucketCount, 0) {}

std::size_t Histogram::bucketOf(std::uint64_t value) noexcept {
  if (value < kLinearLimit) return static_cast<std::size_t>(value);
  const unsigned exponent = 63 - static_cast<unsigned>(std::countl_zero(value));  // >= 8
  const unsigned shift = exponent - kSubBucketBits;
  const std::uint64_t sub = (value >> shift) - kSubBuckets;  // 0..127
  return static_cast<std::size_t>(kLinearLimit + (exponent - kFirstOctave) * kSubBuckets + sub);
}

std::uint64_t Histogram::bucketLow(std::size_t bucket) noexcept {
  if (bucket < kLinearLimit) return bucket;
  const std::uint64_t octave = (bucket - kLinearLimit) / kSubBuckets;
  const std::uint64_t sub = (bucket - kLinearLimit) % kSubBuckets;
  const unsigned shift = static_cast<unsigned>(octave) + 1;
  return (kSubBuckets + sub) << shift;
}

std::uint64_t Histogram::bucketWidth(std::size_t bucket) noexcept {
  if (bucket < kLinearLimit) return 1;
  const std::uint64_t octave = (bucket - kLinearLimit) / kSubBuckets;
  return std::uint64_t{1} << (octave + 1);
}

void Histogram::recordMany(std::uint64_t value, std::uint64_t count) noexcept {
  if (count == 0) return;
  counts_[bucketOf(value)] += count;
  count_ += count;
  min_ = std::min(min_, value);
  max_ = std::max(max_, value);
  sum_ += static_cast<long double>(value) * static_cast<long double>(count);
}

void Histogram::merge(const Histogram& other) noexcept {
  if (other.count_ == 0) return;
  for (std::size_t b = 0; b < counts_.size(); ++b)
    counts_[b] += other.counts_[b];
  count_ += other.count_;
  min_ = std::min(min_, other.min_);
  max_ = std::max(max_, other.max_);
  sum_ += other.sum_;
}

void Histogram::reset() noexcept {
  std::fill(counts_.begin(), counts_.end(), 0);
  count_ = 0;
  min_ = UINT64_MAX;
  max_ = 0;
  sum_ = 0;
}

double Histogram::mean() const noexcept {
  return count_ == 0 ? 0.0 : static_cast<double>(sum_ / static_cast<long double>(count_));
}

std::uint64_t Histogram::valueAtPercentile(double percent) const noexcept {
  if (count_ == 0) return 0;
  if (!(percent < 100.0)) return max_;
  if (!(percent > 0.0)) return min_;
  // rank: how many values must be <= the answer. ceil() so that p50 of {1,2} is 1, like the
  // nearest-rank definition the tests compute exactly.
  auto rank = static_cast<std::uint64_t>(std::ceil(percent / 100.0 * static_cast<double>(count_)));
  rank = std::clamp<std::uint64_t>(rank, 1, count_);
  std::uint64_t seen = 0;
  for (std::size_t b = 0; b < counts_.size(); ++b) {
    seen += counts_[b];
    if (seen >= rank) {
      const std::uint64_t middle = bucketLow(b) + bucketWidth(b) / 2;
      return std::clamp(middle, min(), max_);
    }
  }
  return max_;
}

}  // namespace tern::loadgen
