// The whole loadgen pipeline (runner, workers, line sessions) against FakeLineBroker: clean runs
// must account for every message, and faults injected by the fake must be reported exactly.
//
// Suite names contain "Concurrent": the runner's worker threads and the fake's thread run
// together, so CI also runs these under ThreadSanitizer. Each runs on both backends of the
// workers' event loops (io_uring where the kernel allows it, and epoll). Correctness is judged on
// counts the fake and loadgen each keep independently, never on timing.
#include "tern/loadgen/runner.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <thread>
#include <tuple>
#include <vector>

#include "fake_line_broker.hpp"
#include "tern/loadgen/line_session.hpp"
#include "tern/loadgen/workload.hpp"
#include "tern/net/event_loop.hpp"

namespace tern::loadgen {
namespace {

using testing::FakeLineBroker;
using testing::Faults;

Options smallRun(std::uint16_t port, net::IoChoice io = net::IoChoice::kAuto) {
  Options options;
  options.io = io;
  options.port = port;
  options.clients = 4;
  options.fanout = 2;
  options.wildcardSubscribers = 2;
  options.rate = 2000;
  options.durationS = 0.3;
  options.warmupS = 0.1;
  options.drainS = 0.5;
  options.threads = 2;
  options.quiet = true;
  return options;
}

// The runner tests, once per backend; skipped on io_uring where the kernel refuses it.
class RunnerConcurrent : public ::testing::TestWithParam<net::IoChoice> {
 protected:
  void SetUp() override {
    struct Idle final : net::EventLoopHandler {
      void onReceive(net::SocketId, void*, std::span<const char>) override {}
      void onInputEnd(net::SocketId, void*, int) override {}
    } idle;
    net::EventLoopOptions options;
    options.io = GetParam();
    std::string why;
    if (net::EventLoop::create(options, idle, &why) == nullptr) GTEST_SKIP() << why;
  }
  Options smallRun(std::uint16_t port) const { return loadgen::smallRun(port, GetParam()); }
};

Report runAgainst(const Options& options) {
  EXPECT_EQ(options.validate(), "");
  BrokerAddress broker = resolveBroker(options.host, options.port);
  EXPECT_EQ(broker.error, "");
  Runner runner(options, broker, makeLineSession);
  return runner.run(nullptr);
}

TEST_P(RunnerConcurrent, CleanRunAccountsForEveryMessage) {
  FakeLineBroker fake;
  Options options = smallRun(fake.port());
  options.arrival = Arrival::kPoisson;
  const Report report = runAgainst(options);
  fake.stop();

  EXPECT_EQ(report.exitCode(), 0) << report.toHuman();
  // The backend asked for is the one that ran, and the report says so.
  EXPECT_EQ(report.io, GetParam() == net::IoChoice::kUring ? "io_uring" : "epoll");
  EXPECT_EQ(report.options["io"], GetParam() == net::IoChoice::kUring ? "uring" : "epoll");
  EXPECT_EQ(report.ready, 6u);
  EXPECT_EQ(report.failedHandshakes, 0u);
  EXPECT_GT(report.sent, 0u);
  EXPECT_EQ(report.sent, fake.publishes());
  EXPECT_EQ(report.acked, report.sent);
  // Every publish reaches fanout (2) + wildcard (2) subscribers.
  EXPECT_EQ(report.expected, report.sent * 4);
  EXPECT_EQ(report.delivered, report.expected);
  EXPECT_EQ(report.delivered, fake.deliveries());
  EXPECT_EQ(report.lost + report.duplicated + report.reordered + report.errorCount(), 0u);
  EXPECT_TRUE(report.drained);
  // Every publish of the measured window was timed end to end, at each of its receivers.
  EXPECT_GT(report.latency.count, 0u);
  EXPECT_EQ(report.latency.count, report.pubackLatency.count * 4);
  EXPECT_LE(report.latency.p50, report.latency.p99);
  EXPECT_LE(report.latency.p99, report.latency.max);
}

TEST_P(RunnerConcurrent, DroppedDeliveriesAreLost) {
  FakeLineBroker fake(Faults{.dropEvery = 25});
  const Report report = runAgainst(smallRun(fake.port()));
  fake.stop();

  ASSERT_GT(fake.dropped(), 0u);
  EXPECT_EQ(report.lost, fake.dropped());
  EXPECT_EQ(report.delivered, report.expected - fake.dropped());
  EXPECT_EQ(report.duplicated + report.reordered, 0u);
  EXPECT_FALSE(report.drained);
  EXPECT_EQ(report.exitCode(), 1);
}

TEST_P(RunnerConcurrent, DuplicatedDeliveriesAreCounted) {
  FakeLineBroker fake(Faults{.duplicateEvery = 10});
  const Report report = runAgainst(smallRun(fake.port()));
  fake.stop();

  ASSERT_GT(fake.duplicated(), 0u);
  EXPECT_EQ(report.duplicated, fake.duplicated());
  EXPECT_EQ(report.delivered, report.expected + fake.duplicated());
  EXPECT_EQ(report.lost + report.reordered, 0u);
  EXPECT_EQ(report.exitCode(), 1);
}

TEST_P(RunnerConcurrent, SwappedDeliveriesAreReordered) {
  FakeLineBroker fake(Faults{.swapEvery = 10});
  const Report report = runAgainst(smallRun(fake.port()));
  fake.stop();

  ASSERT_GT(fake.swapped(), 0u);
  EXPECT_EQ(report.reordered, fake.swapped());
  // A message held for a swap when the publishes stopped never arrives.
  EXPECT_EQ(report.lost, fake.stillHeld());
  EXPECT_EQ(report.duplicated, 0u);
  EXPECT_EQ(report.exitCode(), 1);
}

TEST_P(RunnerConcurrent, BrokerDyingMidRunShowsLossAndDisconnects) {
  FakeLineBroker fake(Faults{.dieAfterPublishes = 200});
  Options options = smallRun(fake.port());
  options.durationS = 2;  // far more than 200 publishes: the run ends when every session is gone
  const Report report = runAgainst(options);
  fake.stop();

  EXPECT_EQ(report.exitCode(), 1);
  EXPECT_GE(report.sent, 200u);
  EXPECT_EQ(report.delivered, fake.deliveries());
  // The rest of the schedule could not be sent: reported, and its deliveries count as lost.
  EXPECT_GT(report.unsent, 0u);
  EXPECT_EQ(report.expected, (report.sent + report.unsent) * 4);
  EXPECT_EQ(report.lost, report.expected - report.delivered);
  EXPECT_GE(report.lost, report.unsent * 4);
  EXPECT_EQ(report.disconnects, 6u);
  EXPECT_FALSE(report.firstError.empty());
}

TEST_P(RunnerConcurrent, InterruptEndsTheLoadButStillDrainsAndReports) {
  FakeLineBroker fake;
  Options options = smallRun(fake.port());
  options.durationS = 60;  // the interrupt, not the duration, ends this run
  std::atomic<bool> interrupt{false};
  std::atomic<bool> finished{false};
  std::thread user([&] {
    // Interrupt once some publishes were acknowledged (or give up if the run ends first).
    while (!finished.load() && fake.publishesSoFar() < 100) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    interrupt.store(true);
  });
  Runner runner(options, resolveBroker(options.host, options.port), makeLineSession);
  const Report report = runner.run(nullptr, &interrupt);
  finished.store(true);
  user.join();
  fake.stop();

  EXPECT_TRUE(report.interrupted);
  EXPECT_LT(report.measuredS, options.durationS);
  EXPECT_GE(report.sent, 100u);
  EXPECT_EQ(report.sent, fake.publishes());
  EXPECT_EQ(report.delivered, report.expected);
  EXPECT_EQ(report.unsent, 0u);  // the schedule was cut, not abandoned
  EXPECT_EQ(report.exitCode(), 0) << report.toHuman();
}

TEST_P(RunnerConcurrent, NoBrokerIsUnreachable) {
  std::uint16_t port;
  {
    FakeLineBroker fake;  // borrow a free port, then let it go
    port = fake.port();
  }
  EXPECT_NE(probeBroker(resolveBroker("127.0.0.1", port), 1000), "");
  const Report report = runAgainst(smallRun(port));
  EXPECT_TRUE(report.unreachable);
  EXPECT_EQ(report.failedHandshakes, 6u);
  EXPECT_EQ(report.exitCode(), 2);
}

INSTANTIATE_TEST_SUITE_P(Backends, RunnerConcurrent,
                         ::testing::Values(net::IoChoice::kUring, net::IoChoice::kEpoll),
                         [](const auto& info) {
                           return info.param == net::IoChoice::kUring ? "uring" : "epoll";
                         });

TEST(Runner, DealsPublishersInBlocksAndSpreadsWildcardSubscribers) {
  // 10 publishers over 3 threads: contiguous blocks, so that receivers i+1..i+K mostly share
  // their publisher's thread; wildcard subscribers 10..13 round-robin after them.
  const Workload workload("lg/x", 10, 2, 4);
  const auto dealt = dealSessions(workload, 3);
  ASSERT_EQ(dealt.size(), 3u);
  EXPECT_EQ(dealt[0], (std::vector<std::uint32_t>{0, 1, 2, 3, 10, 13}));
  EXPECT_EQ(dealt[1], (std::vector<std::uint32_t>{4, 5, 6, 11}));
  EXPECT_EQ(dealt[2], (std::vector<std::uint32_t>{7, 8, 9, 12}));
  // Every session once; every thread has one even with fewer publishers than threads.
  for (const auto& [clients, wildcards, threads] :
       {std::tuple{1u, 3u, 4u}, std::tuple{2u, 1u, 3u}, std::tuple{5u, 0u, 5u}}) {
    const Workload small("lg/x", clients, 0, wildcards);
    const auto parts = dealSessions(small, threads);
    std::vector<std::uint32_t> all;
    for (const auto& part : parts) {
      EXPECT_FALSE(part.empty()) << clients << " " << wildcards << " " << threads;
      all.insert(all.end(), part.begin(), part.end());
    }
    std::sort(all.begin(), all.end());
    std::vector<std::uint32_t> expected(clients + wildcards);
    for (std::uint32_t s = 0; s < expected.size(); ++s)
      expected[s] = s;
    EXPECT_EQ(all, expected);
  }
}

TEST(Runner, DescriptorNeedsAndLimit) {
  Options options = smallRun(1);
  EXPECT_EQ(descriptorsNeeded(options), 3u * 6 + 3 * 2 + 64);
  EXPECT_EQ(raiseDescriptorLimit(64), "");
}

}  // namespace
}  // namespace tern::loadgen
