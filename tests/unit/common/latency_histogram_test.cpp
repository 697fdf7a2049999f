#include "tern/common/latency_histogram.hpp"

#include <gtest/gtest.h>

#include <cstdint>

namespace tern::common {
namespace {

using Totals = LatencyHistogram::Totals;

TEST(LatencyHistogram, ABoundBelongsToItsBucketAndTheRestToTheNext) {
  LatencyHistogram h;
  h.observe(0);
  h.observe(10'000);  // le="1e-05" is inclusive
  h.observe(10'001);
  h.observe(1'000'000'000);
  h.observe(1'000'000'001);  // above every bound: the last bucket
  Totals t;
  h.addTo(t);
  EXPECT_EQ(t.buckets[0], 2u);
  EXPECT_EQ(t.buckets[1], 1u);
  EXPECT_EQ(t.buckets[LatencyHistogram::kBuckets - 2], 1u);
  EXPECT_EQ(t.buckets[LatencyHistogram::kBuckets - 1], 1u);
  EXPECT_EQ(t.count(), 5u);
  EXPECT_EQ(t.sumNanos, 10'000u + 10'001u + 1'000'000'000u + 1'000'000'001u);
}

TEST(LatencyHistogram, ANegativeDurationCountsAsZero) {
  LatencyHistogram h;
  h.observe(-5);
  Totals t;
  h.addTo(t);
  EXPECT_EQ(t.buckets[0], 1u);
  EXPECT_EQ(t.sumNanos, 0u);
}

TEST(LatencyHistogram, HistogramsAddUpBucketByBucket) {
  LatencyHistogram a, b;
  a.observe(30'000);
  b.observe(30'000);
  b.observe(7'000'000);
  Totals t;
  a.addTo(t);
  b.addTo(t);
  EXPECT_EQ(t.buckets[2], 2u);  // (25 us, 50 us]
  EXPECT_EQ(t.buckets[9], 1u);  // (5 ms, 10 ms]
  EXPECT_EQ(t.count(), 3u);
  EXPECT_EQ(t.sumNanos, 7'060'000u);
}

}  // namespace
}  // namespace tern::common
