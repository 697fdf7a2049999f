// Histogram: a log-linear latency histogram (HdrHistogram-like) with <= 1% relative error.
//
// Values are unsigned integers in any unit (loadgen records nanoseconds). Values below 256 get a
// bucket each (exact); above, every power of two [2^e, 2^(e+1)) is cut into 128 equal buckets, so
// a bucket is at most 1/128 of its lower bound wide. Queries answer the middle of the bucket,
// clamped to the exact min and max: the answer is within 1/256 (0.4%) of the true value. All of
// uint64 is covered (7424 buckets, 59 KiB), so nothing is ever clamped or dropped.
//
// Ownership: a plain value owned by one thread. record() touches one counter and never allocates,
// so each event-loop thread keeps its own histograms and they are merged (merge()) or copied (copy
// assignment reuses the storage) under whatever synchronization the owner chooses. Not
// thread-safe.
#pragma once

#include <cstdint>
#include <vector>

namespace tern::loadgen {

class Histogram {
 public:
  // Allocates the bucket array once.
  Histogram();

  // Adds one value. Never allocates. O(1).
  void record(std::uint64_t value) noexcept { recordMany(value, 1); }
  // Adds `count` occurrences of `value`. Never allocates. O(1).
  void recordMany(std::uint64_t value, std::uint64_t count) noexcept;
  // Adds every value of `other` (the histograms of several threads into one). Never allocates.
  void merge(const Histogram& other) noexcept;
  // Forgets every value; keeps the storage.
  void reset() noexcept;

  std::uint64_t count() const noexcept { return count_; }
  // Exact smallest and largest recorded values; 0 when empty.
  std::uint64_t min() const noexcept { return count_ == 0 ? 0 : min_; }
  std::uint64_t max() const noexcept { return max_; }
  // Exact arithmetic mean; 0 when empty.
  double mean() const noexcept;

  // The value at `percent` (0..100): the smallest v such that at least `percent`% of the recorded
  // values are <= v, within 1/256 relative error; percent 100 is the exact max. 0 when empty.
  // O(number of buckets).
  std::uint64_t valueAtPercentile(double percent) const noexcept;

  // Bucket geometry, exposed for tests and for tools that export the distribution.
  static constexpr unsigned kSubBucketBits = 7;
  static constexpr std::uint64_t kLinearLimit = std::uint64_t{1} << (kSubBucketBits + 1);  // 256
  static constexpr std::size_t kBucketCount =
      kLinearLimit + (64 - (kSubBucketBits + 1)) * (std::size_t{1} << kSubBucketBits);
  static std::size_t bucketOf(std::uint64_t value) noexcept;
  static std::uint64_t bucketLow(std::size_t bucket) noexcept;
  static std::uint64_t bucketWidth(std::size_t bucket) noexcept;

  // Calls visit(low, width, count) for every non-empty bucket in increasing order (CDF export).
  template <typename Visit>
  void forEachBucket(Visit&& visit) const {
    for (std::size_t b = 0; b < counts_.size(); ++b) {
      if (counts_[b] != 0) visit(bucketLow(b), bucketWidth(b), counts_[b]);
    }
  }

 private:
  std::vector<std::uint64_t> counts_;
  std::uint64_t count_ = 0;
  std::uint64_t min_ = UINT64_MAX;
  std::uint64_t max_ = 0;
  // Long double keeps the mean exact enough for sums of ns over billions of values.
  long double sum_ = 0;
};

}  // namespace tern::loadgen
