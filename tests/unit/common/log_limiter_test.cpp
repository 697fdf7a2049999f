#include "tern/common/log_limiter.hpp"

#include <gtest/gtest.h>

namespace tern::common {
namespace {

TEST(LogLimiter, OneLinePerIntervalCarryingTheSuppressedCount) {
  LogLimiter limiter(1000);
  EXPECT_EQ(limiter.admit(5000), 1u);  // the first occurrence is logged at once
  for (int i = 0; i < 9; ++i)
    EXPECT_EQ(limiter.admit(5100 + i), 0u);  // within the interval: counted, not logged
  EXPECT_EQ(limiter.admit(6000), 10u);       // the next line stands for all ten
  EXPECT_EQ(limiter.admit(6500), 0u);
  EXPECT_EQ(limiter.admit(9000), 2u);
}

}  // namespace
}  // namespace tern::common
