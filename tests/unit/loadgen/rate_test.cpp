#include "tern/loadgen/rate.hpp"

#include <gtest/gtest.h>

namespace tern::loadgen {
namespace {

TEST(Rate, ParsesPlainAndSuffixedNumbers) {
  const struct {
    const char* text;
    double value;
  } cases[] = {{"2000", 2000}, {"50k", 50'000}, {"50K", 50'000}, {"1.5M", 1.5e6}, {"0.5", 0.5},
               {"2G", 2e9},    {".5k", 500},    {"1.25k", 1250}, {"007", 7}};
  for (const auto& c : cases) {
    const QuantityParse parsed = parseRate(c.text);
    ASSERT_TRUE(parsed.ok) << c.text << ": " << parsed.error;
    EXPECT_DOUBLE_EQ(parsed.value, c.value) << c.text;
    EXPECT_TRUE(parsed.error.empty());
  }
}

TEST(Rate, RejectsWithAReason) {
  for (const char* text : {"", "k", "5x", "5m", "1.2.3", "-5", "5kk", " 5", "5 ", "1e6", "M5"}) {
    const QuantityParse parsed = parseRate(text);
    EXPECT_FALSE(parsed.ok) << text;
    EXPECT_NE(parsed.error.find(std::string("'") + text + "'"), std::string::npos) << parsed.error;
  }
  EXPECT_NE(parseRate("5m").error.find("ambiguous"), std::string::npos);
  EXPECT_NE(parseRate("5x").error.find("suffixes"), std::string::npos);
}

TEST(Rate, ZeroIsAQuantityButNotARate) {
  EXPECT_TRUE(parseQuantity("0").ok);
  EXPECT_FALSE(parseRate("0").ok);
  EXPECT_FALSE(parseRate("0k").ok);
}

TEST(Rate, FormatsCompactly) {
  EXPECT_EQ(formatRate(950), "950");
  EXPECT_EQ(formatRate(2000), "2000");
  EXPECT_EQ(formatRate(50'000), "50k");
  EXPECT_EQ(formatRate(12'345), "12.3k");
  EXPECT_EQ(formatRate(1'500'000), "1.5M");
  EXPECT_EQ(formatRate(2e9), "2G");
}

}  // namespace
}  // namespace tern::loadgen
