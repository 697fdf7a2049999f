#include "broker/worker_stats.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>

namespace tern::broker {
namespace {

auto at(std::int64_t now) {
  return [now] { return now; };
}

TEST(WorkerStats, BusyTimeIsTheTimeNotAsleep) {
  WorkerStats s;
  EXPECT_EQ(s.busyNanos(at(1000)), 0);  // not started
  s.startedAt.store(1000);
  EXPECT_EQ(s.busyNanos(at(1500)), 500);
  s.startSleep(1500);
  EXPECT_EQ(s.busyNanos(at(1800)), 500);  // the current sleep counts as idle while it lasts
  s.endSleep(2000);
  EXPECT_EQ(s.busyNanos(at(2000)), 500);
  EXPECT_EQ(s.busyNanos(at(2300)), 800);
  s.endSleep(2400);  // no sleep in progress: nothing changes
  EXPECT_EQ(s.busyNanos(at(2400)), 900);
  s.startSleep(2500);
  s.endSleep(3500);
  EXPECT_EQ(s.busyNanos(at(4000)), 1500);
}

// A reader on another thread while the owner sleeps and wakes at every step of a fake clock:
// busy time never exceeds the time elapsed and never goes backwards (a counter for Prometheus),
// and at the end it is exactly half: the owner is awake one tick and asleep the next. The owner
// moves the clock before it records a sleep's start or end with the clock's value, as a real
// clock would have. Run under ThreadSanitizer by tools/test.
TEST(WorkerStats, ConcurrentReaderSeesAMonotonicBoundedBusyTime) {
  WorkerStats s;
  s.startedAt.store(1);
  std::atomic<std::int64_t> clock{1};
  constexpr std::int64_t kTicks = 200'000;
  std::thread owner([&] {
    for (std::int64_t t = 1; t < kTicks; t += 2) {
      clock.store(t + 1, std::memory_order_release);
      s.startSleep(t + 1);
      clock.store(t + 2, std::memory_order_release);
      s.endSleep(t + 2);
    }
  });
  std::int64_t last = 0;
  while (clock.load(std::memory_order_acquire) < kTicks) {
    std::int64_t now = 0;
    const std::int64_t busy =
        s.busyNanos([&] { return now = clock.load(std::memory_order_acquire); });
    ASSERT_GE(busy, last);
    ASSERT_LE(busy, now - 1);
    last = busy;
  }
  owner.join();
  EXPECT_EQ(s.busyNanos(at(kTicks + 1)), kTicks / 2);
}

}  // namespace
}  // namespace tern::broker
