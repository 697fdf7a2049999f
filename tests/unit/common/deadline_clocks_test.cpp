#include <gtest/gtest.h>

#include "tern/common/clock.hpp"

namespace tern::common {
namespace {

TEST(DeadlineClocks, NoDeadlineStaysNone) {
  EXPECT_EQ(DeadlineClocks().unixMillisOf(0), 0u);
}

TEST(DeadlineClocks, APassedDeadlineIsStoredAsPassed) {
  const DeadlineClocks clocks;
  const std::uint64_t stored = clocks.unixMillisOf(clocks.monotonicNow() - 1'000'000'000);
  EXPECT_NE(stored, 0u) << "0 would mean no deadline";
  EXPECT_EQ(clocks.millisUntil(stored), -1000);
}

TEST(DeadlineClocks, ADeadlineSurvivesTheRoundTripToTheWallClock) {
  const DeadlineClocks clocks;
  for (const std::int64_t millis : {1, 5'000, 86'400'000}) {
    const std::uint64_t stored = clocks.unixMillisOf(clocks.monotonicIn(millis));
    EXPECT_EQ(clocks.millisUntil(stored), millis);
    // Read back by a later instance (a restart): no more left than was stored.
    const DeadlineClocks later;
    EXPECT_LE(later.millisUntil(stored), millis);
  }
}

}  // namespace
}  // namespace tern::common
