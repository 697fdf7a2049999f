#include "tern/loadgen/histogram.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

namespace tern::loadgen {
namespace {

// Nearest-rank percentile of sorted samples: the definition Histogram::valueAtPercentile follows.
std::uint64_t exactPercentile(const std::vector<std::uint64_t>& sorted, double percent) {
  if (percent >= 100) return sorted.back();
  auto rank =
      static_cast<std::size_t>(std::ceil(percent / 100.0 * static_cast<double>(sorted.size())));
  rank = std::clamp<std::size_t>(rank, 1, sorted.size());
  return sorted[rank - 1];
}

void expectWithinOnePercent(const Histogram& histogram, std::vector<std::uint64_t> samples) {
  std::sort(samples.begin(), samples.end());
  for (const double percent : {0.1, 1.0, 10.0, 25.0, 50.0, 75.0, 90.0, 99.0, 99.9, 99.99, 100.0}) {
    const auto exact = static_cast<double>(exactPercentile(samples, percent));
    const auto reported = static_cast<double>(histogram.valueAtPercentile(percent));
    EXPECT_LE(std::abs(reported - exact), 0.01 * exact)
        << "p" << percent << " exact " << exact << " reported " << reported;
  }
}

TEST(Histogram, SmallValuesAreExact) {
  Histogram histogram;
  std::vector<std::uint64_t> samples;
  for (std::uint64_t v = 0; v < 256; ++v) {
    for (std::uint64_t n = 0; n <= v % 3; ++n) {
      histogram.record(v);
      samples.push_back(v);
    }
  }
  std::sort(samples.begin(), samples.end());
  for (const double percent : {1.0, 33.0, 50.0, 90.0, 99.0}) {
    EXPECT_EQ(histogram.valueAtPercentile(percent), exactPercentile(samples, percent));
  }
}

TEST(Histogram, PercentilesOfWideDistributionWithinOnePercent) {
  // Log-uniform from 1 us to 10 s in ns: every octave of the range is exercised.
  std::mt19937_64 random(42);
  std::uniform_real_distribution<double> exponent(3.0, 10.0);
  Histogram histogram;
  std::vector<std::uint64_t> samples;
  for (int i = 0; i < 200'000; ++i) {
    const auto value = static_cast<std::uint64_t>(std::pow(10.0, exponent(random)));
    histogram.record(value);
    samples.push_back(value);
  }
  expectWithinOnePercent(histogram, samples);
}

TEST(Histogram, PercentilesOfLatencyLikeTailWithinOnePercent) {
  // A tight body with a long tail, as latencies look: the p99.99 sits far from the median.
  std::mt19937_64 random(7);
  std::lognormal_distribution<double> body(std::log(50'000.0), 0.3);
  std::exponential_distribution<double> tail(1.0 / 5'000'000.0);
  Histogram histogram;
  std::vector<std::uint64_t> samples;
  for (int i = 0; i < 100'000; ++i) {
    const double value = i % 500 == 0 ? 1'000'000 + tail(random) : body(random);
    const auto ns = static_cast<std::uint64_t>(value);
    histogram.record(ns);
    samples.push_back(ns);
  }
  expectWithinOnePercent(histogram, samples);
}

TEST(Histogram, BucketsCoverEveryValueWithBoundedWidth) {
  std::mt19937_64 random(1);
  std::size_t previous = 0;
  for (std::uint64_t v = 0; v < 100'000; ++v) {
    const std::size_t bucket = Histogram::bucketOf(v);
    EXPECT_GE(bucket, previous);  // monotonic
    previous = bucket;
  }
  for (int i = 0; i < 100'000; ++i) {
    const std::uint64_t v = random() >> (random() % 64);
    const std::size_t bucket = Histogram::bucketOf(v);
    ASSERT_LT(bucket, Histogram::kBucketCount);
    const std::uint64_t low = Histogram::bucketLow(bucket);
    const std::uint64_t width = Histogram::bucketWidth(bucket);
    EXPECT_LE(low, v);
    EXPECT_LE(v - low, width - 1);
    if (width > 1) {  // below 256 every value has its own bucket
      EXPECT_LE(static_cast<double>(width) / static_cast<double>(low), 1.0 / 128);
    }
  }
  EXPECT_EQ(Histogram::bucketOf(UINT64_MAX), Histogram::kBucketCount - 1);
}

TEST(Histogram, MinMaxMeanAreExact) {
  Histogram histogram;
  EXPECT_EQ(histogram.count(), 0u);
  EXPECT_EQ(histogram.valueAtPercentile(50), 0u);
  EXPECT_EQ(histogram.min(), 0u);
  for (const std::uint64_t v : {1000u, 2000u, 123457u})
    histogram.record(v);
  histogram.recordMany(5000, 2);
  EXPECT_EQ(histogram.count(), 5u);
  EXPECT_EQ(histogram.min(), 1000u);
  EXPECT_EQ(histogram.max(), 123457u);
  EXPECT_EQ(histogram.valueAtPercentile(100), 123457u);
  EXPECT_EQ(histogram.valueAtPercentile(0), 1000u);
  EXPECT_DOUBLE_EQ(histogram.mean(), (1000.0 + 2000 + 123457 + 10000) / 5);
  histogram.record(UINT64_MAX);
  EXPECT_EQ(histogram.max(), UINT64_MAX);
  EXPECT_EQ(histogram.valueAtPercentile(100), UINT64_MAX);
}

TEST(Histogram, MergeEqualsRecordingEverythingInOne) {
  std::mt19937_64 random(3);
  Histogram all;
  Histogram parts[3];
  for (int i = 0; i < 30'000; ++i) {
    const std::uint64_t v = random() % 10'000'000;
    all.record(v);
    parts[i % 3].record(v);
  }
  Histogram merged;
  for (const Histogram& part : parts)
    merged.merge(part);
  EXPECT_EQ(merged.count(), all.count());
  EXPECT_EQ(merged.min(), all.min());
  EXPECT_EQ(merged.max(), all.max());
  for (const double percent : {50.0, 90.0, 99.0, 99.9}) {
    EXPECT_EQ(merged.valueAtPercentile(percent), all.valueAtPercentile(percent));
  }
}

TEST(Histogram, CopyIsASnapshotAndResetForgets) {
  Histogram live;
  live.record(10);
  Histogram snapshot;
  snapshot = live;
  live.record(1'000'000);
  EXPECT_EQ(snapshot.count(), 1u);
  EXPECT_EQ(snapshot.max(), 10u);
  live.reset();
  EXPECT_EQ(live.count(), 0u);
  EXPECT_EQ(live.max(), 0u);
  live.record(7);
  EXPECT_EQ(live.valueAtPercentile(50), 7u);
}

}  // namespace
}  // namespace tern::loadgen
