#include "broker/memory_budget.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <random>
#include <thread>
#include <vector>

namespace tern::broker {
namespace {

TEST(MemoryBudget, AWorkerMayGrowByItsShareOfTheHeadroomPerTurn) {
  std::atomic<std::int64_t> claimed{0};
  MemoryBudget other(claimed, 1000, 2);
  MemoryBudget b(claimed, 1000, 2);
  other.endTurn(600);  // the other worker holds 600
  EXPECT_FALSE(b.admits(300, 1)) << "nothing before the first turn's claim";
  // 100 left under the limit, two workers: 50 for this one this turn.
  b.startTurn(300);
  EXPECT_EQ(claimed.load(), 950);
  EXPECT_TRUE(b.admits(300, 50));
  EXPECT_FALSE(b.admits(300, 51));
  EXPECT_TRUE(b.admits(340, 10));
  EXPECT_FALSE(b.admits(340, 11));
  EXPECT_TRUE(b.admits(200, 150)) << "what the worker freed this turn is room again";
  EXPECT_TRUE(b.admits(360, 0)) << "past its claim, what adds nothing is admitted";
  b.endTurn(340);
  EXPECT_EQ(claimed.load(), 940) << "between turns a worker claims what it holds";
  // Past the limit: nothing that grows.
  other.endTurn(900);
  b.startTurn(340);
  EXPECT_FALSE(b.admits(340, 1));
  EXPECT_TRUE(b.admits(340, 0));
}

TEST(MemoryBudget, AClaimIsGivenBackWhenTheBudgetGoes) {
  std::atomic<std::int64_t> claimed{0};
  {
    MemoryBudget b(claimed, 1000, 1);
    b.startTurn(0);
    EXPECT_EQ(claimed.load(), 1000);
  }
  EXPECT_EQ(claimed.load(), 0);
}

// Workers on threads of their own, each in a loop of turns that grow as fast as its budget lets
// them, with consumers giving memory back: what they hold together never passes the limit (each
// adds to the shared figure only what its budget admitted), and the budget lets them use it.
TEST(MemoryBudgetConcurrent, WorkersNeverPassTheLimitTogether) {
  constexpr std::int64_t kLimit = 24 << 20;
  for (const unsigned workers : {2u, 3u, 8u}) {
    std::atomic<std::int64_t> claimed{0};
    std::atomic<std::int64_t> held{0};
    std::atomic<std::int64_t> peak{0};
    std::vector<std::thread> threads;
    for (unsigned w = 0; w < workers; ++w) {
      threads.emplace_back([&, w] {
        MemoryBudget budget(claimed, kLimit, workers);
        std::mt19937 random(w);
        std::int64_t own = 0;
        for (int turn = 0; turn < 3000; ++turn) {
          budget.startTurn(own);
          for (int step = 0; step < 8; ++step) {
            if (random() % 4 == 0) {
              const std::int64_t freed = std::min<std::int64_t>(own, random() % (1 << 20));
              own -= freed;
              held.fetch_sub(freed);
            } else {
              const std::size_t growth = random() % (2 << 20);  // up to a 2 MiB buffer doubling
              if (!budget.admits(own, growth)) continue;
              own += static_cast<std::int64_t>(growth);
              const std::int64_t now = held.fetch_add(static_cast<std::int64_t>(growth)) +
                                       static_cast<std::int64_t>(growth);
              std::int64_t seen = peak.load();
              while (now > seen && !peak.compare_exchange_weak(seen, now)) {
              }
            }
          }
          budget.endTurn(own);
        }
        held.fetch_sub(own);
      });
    }
    for (auto& t : threads)
      t.join();
    EXPECT_LE(peak.load(), kLimit) << workers << " workers";
    EXPECT_GT(peak.load(), kLimit / 2) << workers << " workers: the budget lets them use it";
    EXPECT_EQ(claimed.load(), 0);
    EXPECT_EQ(held.load(), 0);
  }
}

}  // namespace
}  // namespace tern::broker
