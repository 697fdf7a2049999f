// The client's stdin mode (docs/client.md) against the real broker: requests read line by line,
// each reply awaited, output formats, --raw, --wait, and the exit codes.
#include <gtest/gtest.h>

#include <algorithm>
#include <sstream>
#include <string>
#include <vector>

#include "harness.hpp"

namespace tern::test {
namespace {

std::vector<std::string> linesOf(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);)
    lines.push_back(line);
  return lines;
}

bool startsWith(const std::string& text, std::string_view prefix) {
  return text.rfind(prefix, 0) == 0;
}

// Output lines that are (or are not) pushes, in their order: pushes and replies travel on
// different sockets, so only the order within each kind is defined.
std::vector<std::string> rawPushes(const std::vector<std::string>& lines) {
  std::vector<std::string> out;
  for (const std::string& l : lines) {
    if (startsWith(l, "MESSAGE@") || startsWith(l, "RETAINED@")) out.push_back(l);
  }
  return out;
}
std::vector<std::string> rawReplies(const std::vector<std::string>& lines) {
  std::vector<std::string> out;
  for (const std::string& l : lines) {
    if (!startsWith(l, "MESSAGE@") && !startsWith(l, "RETAINED@")) out.push_back(l);
  }
  return out;
}

class ClientStdin : public ::testing::Test {
 protected:
  std::vector<std::string> client(std::vector<std::string> extra = {}) const {
    std::vector<std::string> argv{TERN_CLIENT_BIN, "--port", std::to_string(broker.port())};
    argv.insert(argv.end(), extra.begin(), extra.end());
    return argv;
  }

  BrokerProcess broker{{"--workers", "2"}};
};

TEST_F(ClientStdin, RawPrintsEveryFrameExactly) {
  const RunResult r = runProcess(client({"--raw"}),
                                 "connect@alice\n"
                                 "publish@t/a@hello@retain\n"
                                 "subscribe@t/#\n"
                                 "publish@t/b@x@y\n"
                                 "ping\n");
  EXPECT_EQ(r.exitCode, 0) << r.err;
  EXPECT_EQ(r.err, "");
  const std::vector<std::string> lines = linesOf(r.out);
  const std::vector<std::string> replies = rawReplies(lines);
  ASSERT_EQ(replies.size(), 7u) << r.out;
  EXPECT_TRUE(startsWith(replies[0], "CONNACK@alice@")) << replies[0];
  EXPECT_EQ(std::vector<std::string>(replies.begin() + 1, replies.end()),
            (std::vector<std::string>{"ATTACHACK@request", "ATTACHACK@push", "PUBACK", "SUBACK",
                                      "PUBACK", "PONG"}));
  // The retained message of the new subscription and the session's own live message.
  std::vector<std::string> pushes = rawPushes(lines);
  std::sort(pushes.begin(), pushes.end());
  EXPECT_EQ(pushes, (std::vector<std::string>{"MESSAGE@t/b@x@y", "RETAINED@t/a@hello"}));
}

TEST_F(ClientStdin, PrintsRepliesAndPushesForPeople) {
  const RunResult r = runProcess(client(),
                                 "connect@bob\n"
                                 "subscribe@news/*\n"
                                 "publish@news/today@a@b\n");
  EXPECT_EQ(r.exitCode, 0) << r.err;
  const std::vector<std::string> lines = linesOf(r.out);
  ASSERT_EQ(lines.size(), 4u) << r.out;
  EXPECT_TRUE(startsWith(lines[0], "server: CONNACK@bob@")) << lines[0];
  EXPECT_EQ(lines[1], "server: SUBACK");
  // The push and the PUBACK race on different sockets; both are there.
  std::vector<std::string> rest(lines.begin() + 2, lines.end());
  std::sort(rest.begin(), rest.end());
  EXPECT_EQ(rest, (std::vector<std::string>{"news/today: a@b", "server: PUBACK"}));
}

TEST_F(ClientStdin, WaitKeepsReceivingPushesAfterEof) {
  Process c(client({"--raw", "--wait", "2"}));
  c.writeStdin("connect\nsubscribe@w\n");
  c.closeStdin();
  std::optional<std::string> line;
  while ((line = c.readStdoutLine()) && *line != "SUBACK") {
  }
  ASSERT_EQ(line, "SUBACK");
  LineClient publisher(broker.port());
  EXPECT_EQ(publisher.request.request("PUBLISH@w@late"), "PUBACK");
  EXPECT_EQ(c.readStdoutLine(), "MESSAGE@w@late");
  const std::optional<int> status = c.wait(Millis(10000));
  ASSERT_TRUE(status);
  EXPECT_EQ(exitCodeOf(*status), 0) << c.drainStderr();
}

TEST_F(ClientStdin, RequestBeforeConnectIsALocalErrorAndExitOne) {
  const RunResult r = runProcess(client(), "ping\nconnect\nping\n");
  EXPECT_EQ(r.exitCode, 1);
  EXPECT_EQ(r.err, "not connected: type connect first\n");
  const std::vector<std::string> lines = linesOf(r.out);
  ASSERT_EQ(lines.size(), 2u) << r.out;
  EXPECT_TRUE(startsWith(lines[0], "server: CONNACK@")) << lines[0];
  EXPECT_EQ(lines[1], "server: PONG");
}

TEST_F(ClientStdin, ErrorReplyMakesExitOneButTheRunGoesOn) {
  const RunResult r = runProcess(client(), "connect\npublish@a/+@x\nPING\n");
  EXPECT_EQ(r.exitCode, 1);
  const std::vector<std::string> lines = linesOf(r.out);
  ASSERT_EQ(lines.size(), 3u) << r.out;
  EXPECT_TRUE(startsWith(lines[1], "server: ERROR@bad-topic@")) << lines[1];
  EXPECT_EQ(lines[2], "server: PONG");
}

TEST_F(ClientStdin, DisconnectWaitsForDisconnackAndAllowsANewConnect) {
  const RunResult r = runProcess(client(), "Connect@c1\nDISCONNECT\nconnect@c2\r\nping");
  EXPECT_EQ(r.exitCode, 0) << r.err;
  const std::vector<std::string> lines = linesOf(r.out);
  ASSERT_EQ(lines.size(), 4u) << r.out;
  EXPECT_TRUE(startsWith(lines[0], "server: CONNACK@c1@")) << lines[0];
  EXPECT_EQ(lines[1], "server: DISCONNACK");
  EXPECT_TRUE(startsWith(lines[2], "server: CONNACK@c2@")) << lines[2];
  EXPECT_EQ(lines[3], "server: PONG");  // the last line had no line end
}

TEST_F(ClientStdin, RequestsCanUseTheSecondRequestSocket) {
  const RunResult r = runProcess(client({"--raw", "--request-socket", "2"}), "connect\nping\n");
  EXPECT_EQ(r.exitCode, 0) << r.err;
  const std::vector<std::string> lines = linesOf(r.out);
  ASSERT_EQ(lines.size(), 4u) << r.out;
  EXPECT_EQ(lines[3], "PONG");
}

TEST_F(ClientStdin, TakeoverByAnotherClientIsExitOne) {
  Process c(client({"--raw"}));
  c.writeStdin("connect@dup\n");  // stdin stays open: the client waits for more
  std::optional<std::string> line;
  while ((line = c.readStdoutLine()) && *line != "ATTACHACK@push") {
  }
  ASSERT_EQ(line, "ATTACHACK@push");
  LineClient thief(broker.port(), "dup");
  const std::optional<int> status = c.wait(Millis(10000));
  ASSERT_TRUE(status);
  EXPECT_EQ(exitCodeOf(*status), 1);
  EXPECT_NE(c.drainStderr().find("the broker closed"), std::string::npos);
}

TEST_F(ClientStdin, OverLongRequestIsAnsweredAndTheClosedSocketEndsTheRun) {
  const RunResult r =
      runProcess(client(), "connect\npublish@t@" + std::string(70000, 'x') + "\nping\n");
  EXPECT_EQ(r.exitCode, 1);
  const std::vector<std::string> lines = linesOf(r.out);
  ASSERT_EQ(lines.size(), 2u) << r.out;
  EXPECT_TRUE(startsWith(lines[1], "server: ERROR@too-long@")) << lines[1];
  // Closed or reset: the broker closes with the rest of the long line unread, which may be a RST.
  EXPECT_NE(r.err.find("request socket 1"), std::string::npos) << r.err;
}

TEST_F(ClientStdin, UnreachableBrokerIsExitTwo) {
  const ClosedPort closed;
  const RunResult r =
      runProcess({TERN_CLIENT_BIN, "--port", closed.text(), "--timeout", "2"}, "connect\nping\n");
  EXPECT_EQ(r.exitCode, 2);
  EXPECT_EQ(r.out, "");
  EXPECT_NE(r.err.find("cannot connect to 127.0.0.1:"), std::string::npos) << r.err;
}

TEST_F(ClientStdin, BadUsageIsExitTwo) {
  const RunResult r = runProcess(client({"--request-socket", "3"}), "");
  EXPECT_EQ(r.exitCode, 2);
  EXPECT_NE(r.err.find("--request-socket"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace tern::test
