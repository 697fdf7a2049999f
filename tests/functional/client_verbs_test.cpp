// The one-shot verbs `client pub` and `client sub` (docs/client.md) against the real broker.
#include <gtest/gtest.h>

#include <csignal>
#include <string>
#include <vector>

#include "harness.hpp"

namespace tern::test {
namespace {

class ClientVerbs : public ::testing::Test {
 protected:
  // `client <verb> --port P <args...>`
  std::vector<std::string> verb(const std::string& name, std::vector<std::string> args) const {
    std::vector<std::string> argv{TERN_CLIENT_BIN, name, "--port", std::to_string(broker.port())};
    argv.insert(argv.end(), args.begin(), args.end());
    return argv;
  }

  // Waits until the broker counts `count` subscriptions in total: a `sub` started in the
  // background has then subscribed.
  void awaitSubscriptions(int count) {
    LineClient watcher(broker.port());
    const std::string wanted = "\"subscriptions\":" + std::to_string(count) + ",";
    const std::int64_t deadline = nowMillis() + 10000;
    std::string stats;
    while (nowMillis() < deadline) {
      stats = watcher.request.request("STATS");
      if (stats.find(wanted) != std::string::npos) return;
      std::this_thread::sleep_for(Millis(10));
    }
    FAIL() << "never saw " << wanted << " in " << stats;
  }

  BrokerProcess broker{{"--workers", "2"}};
};

TEST_F(ClientVerbs, PubPublishesSilentlyAndExitsZero) {
  LineClient subscriber(broker.port());
  ASSERT_EQ(subscriber.request.request("SUBSCRIBE@v/#"), "SUBACK");
  const RunResult r = runProcess(verb("pub", {"-t", "v/1", "-m", "hello @ world"}));
  EXPECT_EQ(r.exitCode, 0) << r.err;
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(r.err, "");
  EXPECT_EQ(subscriber.push.readLine(), "MESSAGE@v/1@hello @ world");
}

TEST_F(ClientVerbs, PubRetainsAndNullMessageDeletes) {
  LineClient watcher(broker.port());
  EXPECT_EQ(runProcess(verb("pub", {"-t", "r/1", "-m", "kept", "-r", "-i", "pubber"})).exitCode, 0);
  EXPECT_EQ(watcher.request.request("LIST@r/#"), R"(LIST@{"r/1":"kept"})");
  EXPECT_EQ(runProcess(verb("pub", {"-t", "r/1", "-n", "-r"})).exitCode, 0);
  EXPECT_EQ(watcher.request.request("LIST@r/#"), "LIST@{}");
}

TEST_F(ClientVerbs, PubSendsEachStdinLine) {
  LineClient subscriber(broker.port());
  ASSERT_EQ(subscriber.request.request("SUBSCRIBE@lines"), "SUBACK");
  const RunResult r = runProcess(verb("pub", {"-t", "lines", "-l"}), "one\n\ntwo\r\nthree");
  EXPECT_EQ(r.exitCode, 0) << r.err;
  EXPECT_EQ(subscriber.push.readLine(), "MESSAGE@lines@one");
  EXPECT_EQ(subscriber.push.readLine(), "MESSAGE@lines@two");
  EXPECT_EQ(subscriber.push.readLine(), "MESSAGE@lines@three");
  EXPECT_TRUE(subscriber.push.silentFor(Millis(100)));  // the blank line was skipped
}

TEST_F(ClientVerbs, PubErrorReplyIsExitOne) {
  const RunResult r = runProcess(verb("pub", {"-t", "a/+", "-m", "x"}));
  EXPECT_EQ(r.exitCode, 1);
  EXPECT_NE(r.err.find("ERROR@bad-topic@"), std::string::npos) << r.err;
}

TEST_F(ClientVerbs, PubRefusesWhatTheProtocolCannotCarry) {
  const RunResult separator = runProcess(verb("pub", {"-t", "a@b", "-m", "x"}));
  EXPECT_EQ(separator.exitCode, 2);
  EXPECT_NE(separator.err.find("'@'"), std::string::npos) << separator.err;
  const RunResult flag = runProcess(verb("pub", {"-t", "a", "-m", "x@retain"}));
  EXPECT_EQ(flag.exitCode, 2);
  EXPECT_NE(flag.err.find("-r"), std::string::npos) << flag.err;
  EXPECT_EQ(runProcess(verb("pub", {"-t", "a"})).exitCode, 2);  // no message source
}

TEST_F(ClientVerbs, SubPrintsRetainedThenLiveAndStopsAtCount) {
  LineClient publisher(broker.port());
  ASSERT_EQ(publisher.request.request("PUBLISH@s/r@old@retain"), "PUBACK");
  Process sub(verb("sub", {"-t", "s/#", "-C", "2", "-v"}));
  EXPECT_EQ(sub.readStdoutLine(), "s/r old");  // retained: printed once subscribed
  EXPECT_EQ(publisher.request.request("PUBLISH@s/x@new@contents"), "PUBACK");
  EXPECT_EQ(sub.readStdoutLine(), "s/x new@contents");
  const std::optional<int> status = sub.wait(Millis(10000));
  ASSERT_TRUE(status);
  EXPECT_EQ(exitCodeOf(*status), 0) << sub.drainStderr();
  EXPECT_EQ(sub.readStdoutLine(Millis(100)), std::nullopt);
}

TEST_F(ClientVerbs, SubSkipsRetainedWithR) {
  LineClient publisher(broker.port());
  ASSERT_EQ(publisher.request.request("PUBLISH@s/r@old@retain"), "PUBACK");
  Process sub(verb("sub", {"-t", "s/#", "-t", "other", "-C", "1", "-R"}));
  awaitSubscriptions(2);
  EXPECT_EQ(publisher.request.request("PUBLISH@s/r@live"), "PUBACK");
  EXPECT_EQ(sub.readStdoutLine(), "live");
  const std::optional<int> status = sub.wait(Millis(10000));
  ASSERT_TRUE(status);
  EXPECT_EQ(exitCodeOf(*status), 0) << sub.drainStderr();
}

TEST_F(ClientVerbs, SubTimeLimitBeforeCountIsExitThree) {
  const RunResult r = runProcess(verb("sub", {"-t", "quiet", "-C", "1", "-W", "0.3"}));
  EXPECT_EQ(r.exitCode, 3) << r.err;
  EXPECT_EQ(r.out, "");
}

TEST_F(ClientVerbs, SubTimeLimitWithoutCountIsExitZero) {
  const RunResult r = runProcess(verb("sub", {"-t", "quiet", "-W", "0.3"}));
  EXPECT_EQ(r.exitCode, 0) << r.err;
}

TEST_F(ClientVerbs, SubErrorReplyIsExitOne) {
  const RunResult r = runProcess(verb("sub", {"-t", "fine/#", "-t", "bad/#/x", "-W", "5"}));
  EXPECT_EQ(r.exitCode, 1);
  EXPECT_NE(r.err.find("SUBSCRIBE@bad/#/x: ERROR@bad-filter@"), std::string::npos) << r.err;
}

TEST_F(ClientVerbs, SubEndsCleanlyOnSigint) {
  Process sub(verb("sub", {"-t", "forever"}));
  awaitSubscriptions(1);
  const int status = sub.stop(SIGINT, Millis(10000));
  EXPECT_EQ(exitCodeOf(status), 0) << sub.drainStderr();
  awaitSubscriptions(0);  // it disconnected: the broker dropped its subscription
}

TEST_F(ClientVerbs, UnreachableBrokerIsExitTwo) {
  const ClosedPort closed;
  const std::string port = closed.text();
  const RunResult pub = runProcess({TERN_CLIENT_BIN, "pub", "-p", port, "-t", "a", "-m", "x"});
  EXPECT_EQ(pub.exitCode, 2);
  EXPECT_NE(pub.err.find("cannot connect"), std::string::npos) << pub.err;
  const RunResult sub = runProcess({TERN_CLIENT_BIN, "sub", "-p", port, "-t", "a"});
  EXPECT_EQ(sub.exitCode, 2);
}

TEST_F(ClientVerbs, HelpExplainsTheExitCodes) {
  const RunResult r = runProcess({TERN_CLIENT_BIN, "sub", "--help"});
  EXPECT_EQ(r.exitCode, 0);
  EXPECT_NE(r.out.find("-W,--time-limit"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("mosquitto_sub uses 27"), std::string::npos) << r.out;
}

}  // namespace
}  // namespace tern::test
