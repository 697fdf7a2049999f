#include "tern/sync/inbox.hpp"

#include <gtest/gtest.h>
#include <poll.h>

#include <atomic>
#include <thread>
#include <vector>

namespace tern::sync {
namespace {

bool readable(int fd, int timeoutMs) {
  pollfd p{fd, POLLIN, 0};
  return ::poll(&p, 1, timeoutMs) == 1;
}

TEST(Inbox, PushWhileAwakeDoesNotSignal) {
  Inbox<int> inbox;
  inbox.push(1);
  EXPECT_FALSE(readable(inbox.wakeFd(), 0)) << "a busy consumer should not be woken";
  int out[4];
  EXPECT_EQ(inbox.popBulk(out, 4), 1u);
  EXPECT_EQ(out[0], 1);
}

TEST(Inbox, PushWhileSleepingSignalsOnce) {
  Inbox<int> inbox;
  ASSERT_TRUE(inbox.prepareToSleep());
  inbox.push(7);
  inbox.push(8);
  EXPECT_TRUE(readable(inbox.wakeFd(), 1000));
  inbox.finishSleep();
  EXPECT_FALSE(readable(inbox.wakeFd(), 0)) << "the second push should not write again";
  int out[4];
  EXPECT_EQ(inbox.popBulk(out, 4), 2u);
}

TEST(Inbox, PrepareToSleepRefusesWhenItemsWait) {
  Inbox<int> inbox;
  inbox.push(1);
  EXPECT_FALSE(inbox.prepareToSleep());
}

// Producers push numbered items; the consumer sleeps on the eventfd whenever the queue looks empty.
// The test judges correctness by counting: every item arrives exactly once, in per-producer order,
// and the consumer never sleeps forever (the test would time out).
TEST(InboxConcurrent, NoLostWakeupsAndPerProducerOrder) {
  constexpr int kProducers = 3;
  constexpr int kPerProducer = 20000;
  Inbox<std::pair<int, int>> inbox;
  std::vector<std::thread> producers;
  for (int p = 0; p < kProducers; ++p) {
    producers.emplace_back([&, p] {
      for (int i = 0; i < kPerProducer; ++i) {
        inbox.push({p, i});
        if (i % 1000 == 0) std::this_thread::yield();
      }
    });
  }
  std::vector<int> next(kProducers, 0);
  int received = 0;
  std::pair<int, int> batch[64];
  while (received < kProducers * kPerProducer) {
    std::size_t n = inbox.popBulk(batch, 64);
    for (std::size_t k = 0; k < n; ++k) {
      auto [p, i] = batch[k];
      ASSERT_EQ(i, next[p]) << "producer " << p << " out of order";
      ++next[p];
    }
    received += static_cast<int>(n);
    if (n == 0 && inbox.prepareToSleep()) {
      ASSERT_TRUE(readable(inbox.wakeFd(), 10000)) << "lost wake-up";
      inbox.finishSleep();
    }
  }
  for (auto& t : producers)
    t.join();
  EXPECT_EQ(received, kProducers * kPerProducer);
}

}  // namespace
}  // namespace tern::sync
