#include "tern/loadgen/schedule.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <vector>

namespace tern::loadgen {
namespace {

TEST(Schedule, ConstantSpacingWithoutDrift) {
  // 3 events/s: the period (333333333.33 ns) is not an integer, so adding it up would drift.
  Schedule schedule(Arrival::kConstant, 3.0, 1'000, 0, 1);
  EXPECT_EQ(schedule.peek(), 1'000);
  EXPECT_EQ(schedule.next(), 1'000);
  EXPECT_EQ(schedule.next(), 1'000 + 333'333'333);
  EXPECT_EQ(schedule.next(), 1'000 + 666'666'667);
  for (int i = 3; i < 3'000'000; ++i)
    schedule.next();
  EXPECT_EQ(schedule.consumed(), 3'000'000u);
  EXPECT_EQ(schedule.peek(), 1'000 + 1'000'000'000'000'000LL);  // exactly 10^6 s later
}

TEST(Schedule, ConstantClientsWithPhasesAddUpToEvenSpacing) {
  // 4 clients at 250/s each, phases 1/1000 s apart: together one event every millisecond.
  std::vector<Schedule> clients;
  for (int i = 0; i < 4; ++i) {
    clients.emplace_back(Arrival::kConstant, 250.0, 0, i * 1'000'000LL, 9);
  }
  std::vector<std::int64_t> merged;
  for (Schedule& client : clients) {
    for (int k = 0; k < 100; ++k)
      merged.push_back(client.next());
  }
  std::sort(merged.begin(), merged.end());
  for (std::size_t i = 0; i < merged.size(); ++i) {
    EXPECT_EQ(merged[i], static_cast<std::int64_t>(i) * 1'000'000);
  }
}

TEST(Schedule, PoissonIsDeterministicPerSeed) {
  Schedule a(Arrival::kPoisson, 1000.0, 0, 0, 17);
  Schedule b(Arrival::kPoisson, 1000.0, 0, 0, 17);
  Schedule c(Arrival::kPoisson, 1000.0, 0, 0, 18);
  int differences = 0;
  for (int i = 0; i < 1000; ++i) {
    const std::int64_t ta = a.next();
    EXPECT_EQ(ta, b.next());
    differences += ta != c.next() ? 1 : 0;
  }
  EXPECT_GT(differences, 990);
}

TEST(Schedule, PoissonGapsAreExponentialWithTheRightMean) {
  constexpr double kRate = 50'000.0;
  constexpr int kEvents = 200'000;
  Schedule schedule(Arrival::kPoisson, kRate, 5'000, 0, 123);
  std::int64_t previous = 5'000;
  double sum = 0;
  double sumSquares = 0;
  int aboveMean = 0;
  const double meanNs = 1e9 / kRate;
  for (int i = 0; i < kEvents; ++i) {
    const std::int64_t t = schedule.next();
    ASSERT_GE(t, previous);
    const double gap = static_cast<double>(t - previous);
    sum += gap;
    sumSquares += gap * gap;
    aboveMean += gap > meanNs ? 1 : 0;
    previous = t;
  }
  const double mean = sum / kEvents;
  const double deviation = std::sqrt(sumSquares / kEvents - mean * mean);
  // With 200k samples the standard error of the mean is 0.22%: 1% is > 4 sigma.
  EXPECT_NEAR(mean, meanNs, 0.01 * meanNs);
  // An exponential's standard deviation equals its mean, and P(gap > mean) = 1/e.
  EXPECT_NEAR(deviation / mean, 1.0, 0.02);
  EXPECT_NEAR(static_cast<double>(aboveMean) / kEvents, std::exp(-1.0), 0.005);
}

TEST(Schedule, StreamSeedsDiffer) {
  EXPECT_NE(streamSeed(1, 0), streamSeed(1, 1));
  EXPECT_NE(streamSeed(1, 0), streamSeed(2, 0));
  EXPECT_EQ(streamSeed(5, 7), streamSeed(5, 7));
}

TEST(Schedule, ParsesArrivalNames) {
  EXPECT_EQ(parseArrival("constant"), Arrival::kConstant);
  EXPECT_EQ(parseArrival("Poisson"), Arrival::kPoisson);
  EXPECT_FALSE(parseArrival("uniform"));
  EXPECT_EQ(arrivalName(Arrival::kPoisson), "poisson");
}

}  // namespace
}  // namespace tern::loadgen
