// The whole loadgen pipeline (runner, workers, line sessions) against FakeLineBroker: clean runs
// must account for every message, and faults injected by the fake must be reported exactly.
//
// Suite names contain "Concurrent": the runner's worker threads and the fake's thread run
// together, so CI also runs these under ThreadSanitizer. Correctness is judged on counts the
// fake and loadgen each keep independently, never on timing.
#include "tern/loadgen/runner.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "fake_line_broker.hpp"
#include "tern/loadgen/line_session.hpp"

namespace tern::loadgen {
namespace {

using testing::FakeLineBroker;
using testing::Faults;

Options smallRun(std::uint16_t port) {
  Options options;
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

Report runAgainst(const Options& options) {
  EXPECT_EQ(options.validate(), "");
  BrokerAddress broker = resolveBroker(options.host, options.port);
  EXPECT_EQ(broker.error, "");
  Runner runner(options, broker, makeLineSession);
  return runner.run(nullptr);
}

TEST(RunnerConcurrent, CleanRunAccountsForEveryMessage) {
  FakeLineBroker fake;
  Options options = smallRun(fake.port());
  options.arrival = Arrival::kPoisson;
  const Report report = runAgainst(options);
  fake.stop();

  EXPECT_EQ(report.exitCode(), 0) << report.toHuman();
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

TEST(RunnerConcurrent, DroppedDeliveriesAreLost) {
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

TEST(RunnerConcurrent, DuplicatedDeliveriesAreCounted) {
  FakeLineBroker fake(Faults{.duplicateEvery = 10});
  const Report report = runAgainst(smallRun(fake.port()));
  fake.stop();

  ASSERT_GT(fake.duplicated(), 0u);
  EXPECT_EQ(report.duplicated, fake.duplicated());
  EXPECT_EQ(report.delivered, report.expected + fake.duplicated());
  EXPECT_EQ(report.lost + report.reordered, 0u);
  EXPECT_EQ(report.exitCode(), 1);
}

TEST(RunnerConcurrent, SwappedDeliveriesAreReordered) {
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

TEST(RunnerConcurrent, BrokerDyingMidRunShowsLossAndDisconnects) {
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

TEST(RunnerConcurrent, InterruptEndsTheLoadButStillDrainsAndReports) {
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

TEST(RunnerConcurrent, NoBrokerIsUnreachable) {
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

TEST(Runner, DescriptorNeedsAndLimit) {
  Options options = smallRun(1);
  EXPECT_EQ(descriptorsNeeded(options), 3u * 6 + 2 + 64);
  EXPECT_EQ(raiseDescriptorLimit(64), "");
}

}  // namespace
}  // namespace tern::loadgen
