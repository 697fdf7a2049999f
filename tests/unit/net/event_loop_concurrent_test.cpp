// net::EventLoop wake-ups under concurrency, on both backends (run under ThreadSanitizer:
// ctest --preset tsan -R Concurrent).
#include <gtest/gtest.h>

#include <array>
#include <mutex>
#include <thread>
#include <vector>

#include "tern/net/event_loop.hpp"
#include "unit/net/event_loop_test_support.hpp"

namespace tern::net {
namespace {

using namespace tern::net::testing;

class EventLoopConcurrent : public ::testing::TestWithParam<Backend> {
 protected:
  void SetUp() override {
    std::string why;
    if (GetParam().io == IoChoice::kUring && !uringAvailable(why)) GTEST_SKIP() << why;
  }
};

INSTANTIATE_TEST_SUITE_P(EventLoop, EventLoopConcurrent, kBackends, backendName);

constexpr int kLoops = 3;
constexpr int kThreads = 2;
constexpr int kSenders = kLoops + kThreads;
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr int kTokens = 600;  // per sender and target loop
#else
constexpr int kTokens = 3000;
#endif

struct Token {
  int sender;
  int sequence;
  std::int64_t sentAt;
};

// One loop on its own thread with a mailbox that any thread fills before waking it.
struct Node {
  Hooks hooks;
  std::unique_ptr<EventLoop> loop;
  std::mutex mutex;
  std::vector<Token> mailbox;  // guarded by mutex
  // Owner thread only (read by the test after join):
  std::array<int, kSenders> next{};
  int disorder = 0;
  std::int64_t maxLatency = 0;
  std::atomic<int> received{0};
  int sent = 0;  // this loop's own tokens sent to the other loops

  void post(const Token& t) {
    std::lock_guard lock(mutex);
    mailbox.push_back(t);
  }
  void take() {
    std::vector<Token> batch;
    {
      std::lock_guard lock(mutex);
      batch.swap(mailbox);
    }
    const std::int64_t now = common::monotonicNanos();
    for (const Token& t : batch) {
      if (t.sequence != next[t.sender]) ++disorder;
      next[t.sender] = t.sequence + 1;
      maxLatency = std::max(maxLatency, now - t.sentAt);
    }
    received.fetch_add(static_cast<int>(batch.size()));
  }
};

// Three loops and two plain threads send numbered tokens to every loop (not themselves), each
// push followed by wake() (plain threads) or target.wakeFrom(own loop) (loop threads, between
// their turns: io_uring loops post a MSG_RING that leaves with the sender's next submit). A loop
// takes its mailbox in onWake(). The loops block for up to 10 s per turn.
// Judged by: every token arrives exactly once and in its sender's order (per-sender sequence
// numbers), and none waits longer than 2 s (scaled for sanitizers): a lost wake-up would leave a
// token waiting for a whole 10 s turn. Timing only bounds the test; no speed is asserted.
TEST_P(EventLoopConcurrent, WakesFromThreadsAndLoopsLoseNothing) {
  std::array<Node, kLoops> nodes;
  for (Node& n : nodes) {
    EventLoopOptions options = GetParam().options();
    options.receiveBuffers = 8;
    n.loop = EventLoop::create(options, n.hooks);
    ASSERT_NE(n.loop, nullptr);
    n.hooks.loop = n.loop.get();
    n.hooks.wake = [&n] { n.take(); };
  }
  std::atomic<bool> stop{false};
  std::vector<std::thread> threads;
  for (int me = 0; me < kLoops; ++me) {
    threads.emplace_back([&, me] {
      Node& self = nodes[me];
      while (!stop.load(std::memory_order_acquire)) {
        // While it has tokens to send, a loop turns at least every 200 us (and sleeps between
        // turns, so that the others find it asleep too); then it only waits for wake-ups.
        self.loop->runOnce(self.sent < kTokens ? 200'000 : 10 * kSeconds);
        for (int k = 0; k < 3 && self.sent < kTokens; ++k, ++self.sent) {
          for (int target = 0; target < kLoops; ++target) {
            if (target == me) continue;
            nodes[target].post({me, self.sent, common::monotonicNanos()});
            nodes[target].loop->wakeFrom(*self.loop);
          }
        }
      }
    });
  }
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, sender = kLoops + t] {
      for (int i = 0; i < kTokens; ++i) {
        for (Node& n : nodes) {
          n.post({sender, i, common::monotonicNanos()});
          n.loop->wake();
        }
        // Bursts and pauses, so that the loops go to sleep and are woken often.
        if (i % 16 == 0) std::this_thread::sleep_for(std::chrono::microseconds(200));
      }
    });
  }
  constexpr int kExpected = (kLoops - 1 + kThreads) * kTokens;
  const std::int64_t until = common::monotonicNanos() + scaled(60 * kSeconds);
  const auto allArrived = [&] {
    for (const Node& n : nodes) {
      if (n.received.load() < kExpected) return false;
    }
    return true;
  };
  while (!allArrived() && common::monotonicNanos() < until)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  stop.store(true, std::memory_order_release);
  for (Node& n : nodes)
    n.loop->wake();
  for (std::thread& t : threads)
    t.join();
  for (int i = 0; i < kLoops; ++i) {
    const Node& n = nodes[i];
    EXPECT_EQ(n.received.load(), kExpected) << "loop " << i;
    EXPECT_EQ(n.disorder, 0) << "loop " << i;
    for (int s = 0; s < kSenders; ++s) {
      if (s != i) {
        EXPECT_EQ(n.next[s], kTokens) << "loop " << i << " from sender " << s;
      }
    }
    EXPECT_LT(n.maxLatency, scaled(2 * kSeconds)) << "loop " << i << ": a wake-up was lost";
    const EventLoop::Counters c = n.loop->counters();
    std::printf(
        "loop %d (%s): max latency %.3f ms, waits %llu, eventfd writes to it %llu, MSG_RINGs "
        "it posted %llu\n",
        i, std::string(name(n.loop->backend())).c_str(), n.maxLatency / 1e6,
        static_cast<unsigned long long>(c.waits), static_cast<unsigned long long>(c.wakeWrites),
        static_cast<unsigned long long>(c.wakeMessages));
  }
}

}  // namespace
}  // namespace tern::net
