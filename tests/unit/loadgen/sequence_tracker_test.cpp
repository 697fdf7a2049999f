#include "tern/loadgen/sequence_tracker.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <set>
#include <vector>

namespace tern::loadgen {
namespace {

using Outcome = SequenceTracker::Outcome;

struct Tally {
  std::uint64_t inOrder = 0;
  std::uint64_t reordered = 0;
  std::uint64_t duplicated = 0;
  std::uint64_t givenUp = 0;
};

Tally feed(SequenceTracker& tracker, const std::vector<std::uint64_t>& arrivals) {
  Tally tally;
  for (const std::uint64_t sequence : arrivals) {
    const auto result = tracker.observe(sequence);
    tally.givenUp += result.givenUp;
    switch (result.outcome) {
      case Outcome::kInOrder:
        ++tally.inOrder;
        break;
      case Outcome::kReordered:
        ++tally.reordered;
        break;
      case Outcome::kDuplicate:
        ++tally.duplicated;
        break;
    }
  }
  return tally;
}

// The exact classification with unbounded memory, which the tracker must match whenever no
// arrival is 64 or more below the highest sequence seen.
Tally reference(const std::vector<std::uint64_t>& arrivals) {
  Tally tally;
  std::set<std::uint64_t> seen;
  std::uint64_t highest = 0;
  for (const std::uint64_t sequence : arrivals) {
    if (!seen.insert(sequence).second) {
      ++tally.duplicated;
    } else if (seen.size() > 1 && sequence < highest) {
      ++tally.reordered;
    } else {
      ++tally.inOrder;
    }
    highest = std::max(highest, sequence);
  }
  return tally;
}

TEST(SequenceTracker, InOrderStreamIsClean) {
  SequenceTracker tracker;
  std::vector<std::uint64_t> arrivals(10'000);
  for (std::uint64_t i = 0; i < arrivals.size(); ++i)
    arrivals[i] = i;
  const Tally tally = feed(tracker, arrivals);
  EXPECT_EQ(tally.inOrder, 10'000u);
  EXPECT_EQ(tally.reordered + tally.duplicated + tally.givenUp, 0u);
  EXPECT_EQ(tracker.settledBelow(), 10'000u);
  EXPECT_FALSE(tracker.hasGap());
}

TEST(SequenceTracker, DuplicatesInsideAndBelowTheWindow) {
  SequenceTracker tracker;
  const Tally tally = feed(tracker, {0, 1, 1, 5, 5, 2, 0});
  EXPECT_EQ(tally.duplicated, 3u);  // 1 again, 5 again (in the window), 0 again (settled)
  EXPECT_EQ(tally.reordered, 1u);   // 2 after 5
  EXPECT_EQ(tally.inOrder, 3u);     // 0, 1, 5
}

TEST(SequenceTracker, SwapIsOneReorder) {
  SequenceTracker tracker;
  const Tally tally = feed(tracker, {0, 2, 1, 3});
  EXPECT_EQ(tally.reordered, 1u);
  EXPECT_EQ(tally.inOrder, 3u);
  EXPECT_EQ(tracker.settledBelow(), 4u);
}

TEST(SequenceTracker, LossIsGivenUpOnceTheWindowPassesIt) {
  SequenceTracker tracker;
  std::vector<std::uint64_t> arrivals;
  for (std::uint64_t i = 0; i < 200; ++i) {
    if (i != 10 && i != 11) arrivals.push_back(i);
  }
  Tally tally = feed(tracker, arrivals);
  EXPECT_EQ(tally.inOrder, 198u);
  EXPECT_EQ(tally.givenUp, 2u);
  EXPECT_EQ(tally.reordered + tally.duplicated, 0u);
  EXPECT_EQ(tracker.settledBelow(), 200u);

  // A gap still inside the window is not given up yet.
  SequenceTracker recent;
  tally = feed(recent, {0, 1, 3, 4, 5});
  EXPECT_EQ(tally.givenUp, 0u);
  EXPECT_TRUE(recent.hasGap());
  EXPECT_EQ(recent.settledBelow(), 2u);
}

TEST(SequenceTracker, BigJumpGivesUpEverythingSkipped) {
  SequenceTracker tracker;
  // 1002 after 2: 3..938 fall out of the window at once; 939..1001 stay pending (within 64).
  Tally tally = feed(tracker, {0, 1, 2, 1002});
  EXPECT_EQ(tally.givenUp, 936u);
  EXPECT_EQ(tally.inOrder, 4u);
  std::vector<std::uint64_t> more;
  for (std::uint64_t s = 1003; s <= 1065; ++s)
    more.push_back(s);
  tally = feed(tracker, more);
  EXPECT_EQ(tally.givenUp, 63u);  // 939..1001, one per arrival
  EXPECT_EQ(tally.inOrder, 63u);
  EXPECT_EQ(tracker.settledBelow(), 1066u);
  EXPECT_FALSE(tracker.hasGap());
  // An arrival that old can no longer be told from a duplicate.
  tally = feed(tracker, {500});
  EXPECT_EQ(tally.duplicated, 1u);
}

TEST(SequenceTracker, MatchesExactModelUnderInjectedFaults) {
  // Drops, duplicates and local reorders (displacement < 64) injected at random into a stream;
  // the tracker must classify every arrival as the unbounded reference does, and give up exactly
  // the dropped sequences that the stream later passes by 64 or more.
  for (const unsigned seed : {1u, 2u, 3u, 4u, 5u}) {
    std::mt19937 random(seed);
    std::vector<std::uint64_t> arrivals;
    std::set<std::uint64_t> dropped;
    constexpr std::uint64_t kCount = 20'000;
    for (std::uint64_t i = 0; i < kCount; ++i) {
      const unsigned roll = random() % 100;
      if (roll < 3) {
        dropped.insert(i);
        continue;
      }
      arrivals.push_back(i);
      if (roll < 5) arrivals.push_back(i);  // duplicate right away
    }
    // Local reorders: swap neighbours a few positions apart.
    for (std::size_t i = 0; i + 8 < arrivals.size(); i += 1 + random() % 50) {
      std::swap(arrivals[i], arrivals[i + 1 + random() % 7]);
    }
    // Late duplicates, still within the window of the highest sequence seen at that point.
    for (int k = 0; k < 200; ++k) {
      const std::size_t at = 100 + random() % (arrivals.size() - 100);
      arrivals.insert(arrivals.begin() + static_cast<std::ptrdiff_t>(at),
                      arrivals[at - 1 - random() % 20]);
    }

    SequenceTracker tracker;
    const Tally got = feed(tracker, arrivals);
    const Tally want = reference(arrivals);
    EXPECT_EQ(got.inOrder, want.inOrder) << "seed " << seed;
    EXPECT_EQ(got.reordered, want.reordered) << "seed " << seed;
    EXPECT_EQ(got.duplicated, want.duplicated) << "seed " << seed;
    const std::uint64_t highest = *std::max_element(arrivals.begin(), arrivals.end());
    const auto passed = static_cast<std::uint64_t>(
        std::count_if(dropped.begin(), dropped.end(),
                      [&](std::uint64_t s) { return s + SequenceTracker::kWindow <= highest; }));
    EXPECT_EQ(got.givenUp, passed) << "seed " << seed;
    EXPECT_GT(want.reordered, 100u);
    EXPECT_GT(want.duplicated, 300u);
  }
}

}  // namespace
}  // namespace tern::loadgen
