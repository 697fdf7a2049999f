// The line-protocol contract driven through the real `client` binary (stdin mode with --raw, and the
// pub/sub verbs), as a user would: the original example session and every error code.
// (line_protocol_test.cpp checks the same contract byte by byte with raw sockets.)
#include <gtest/gtest.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
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

class ClientContract : public ::testing::Test {
 protected:
  std::vector<std::string> client(std::vector<std::string> extra) const {
    std::vector<std::string> argv{TERN_CLIENT_BIN, "--port", std::to_string(broker.port())};
    argv.insert(argv.end(), extra.begin(), extra.end());
    return argv;
  }
  BrokerProcess broker{{"--workers", "2"}};
};

TEST_F(ClientContract, OriginalExampleSession) {
  // Client 1 publishes two retained weather messages.
  const RunResult alice = runProcess(client({}),
                                     "connect\n"
                                     "publish@weather/temp@21C@retain\n"
                                     "publish@weather/forecast@sunny@retain\n");
  ASSERT_EQ(alice.exitCode, 0) << alice.err;
  const std::vector<std::string> aliceLines = linesOf(alice.out);
  ASSERT_EQ(aliceLines.size(), 3u) << alice.out;
  EXPECT_EQ(aliceLines[0].rfind("server: CONNACK@", 0), 0u);
  EXPECT_EQ(aliceLines[1], "server: PUBACK");
  EXPECT_EQ(aliceLines[2], "server: PUBACK");

  // Client 2 subscribes with the line protocol's '*' wildcard, gets both, and LIST shows both.
  const RunResult bob = runProcess(client({}),
                                   "connect\n"
                                   "subscribe@weather/*\n"
                                   "list\n");
  ASSERT_EQ(bob.exitCode, 0) << bob.err;
  std::vector<std::string> bobLines = linesOf(bob.out);
  std::vector<std::string> rest;
  nlohmann::json listed;
  for (std::size_t i = 1; i < bobLines.size(); ++i) {
    const std::string prefix = "server: LIST@";
    if (bobLines[i].rfind(prefix, 0) == 0) {
      listed = nlohmann::json::parse(bobLines[i].substr(prefix.size()));  // member order is free
    } else {
      rest.push_back(bobLines[i]);
    }
  }
  EXPECT_EQ(listed, nlohmann::json({{"weather/temp", "21C"}, {"weather/forecast", "sunny"}}));
  std::sort(rest.begin(), rest.end());
  EXPECT_EQ(rest, (std::vector<std::string>{"server: SUBACK", "weather/forecast: sunny",
                                            "weather/temp: 21C"}))
      << bob.out;

  // And the mosquitto-style verbs see the same.
  const RunResult sub = runProcess(client({"sub", "-t", "weather/*", "-C", "2", "-v"}));
  EXPECT_EQ(sub.exitCode, 0) << sub.err;
  std::vector<std::string> subLines = linesOf(sub.out);
  std::sort(subLines.begin(), subLines.end());
  EXPECT_EQ(subLines, (std::vector<std::string>{"weather/forecast sunny", "weather/temp 21C"}));
}

TEST_F(ClientContract, LiveMessagesThroughPubAndSub) {
  Process sub(client({"sub", "-t", "live/#", "-C", "3", "-v", "-W", "20"}));
  // Wait until the subscription is in place (STATS counts it), then publish.
  LineClient observer(broker.port(), "observer");
  for (int i = 0; i < 250; ++i) {
    if (observer.request.request("STATS").find("\"subscriptions\":1") != std::string::npos) break;
    std::this_thread::sleep_for(Millis(20));
  }
  for (const char* m : {"one", "two@with@at", "three"}) {
    const RunResult pub = runProcess(client({"pub", "-t", "live/x", "-m", m}));
    EXPECT_EQ(pub.exitCode, 0) << pub.err;
  }
  std::vector<std::string> got;
  while (auto line = sub.readStdoutLine())
    got.push_back(*line);
  EXPECT_EQ(got, (std::vector<std::string>{"live/x one", "live/x two@with@at", "live/x three"}));
  const auto status = sub.wait();
  ASSERT_TRUE(status);
  EXPECT_EQ(exitCodeOf(*status), 0);
}

TEST_F(ClientContract, EveryRequestAndErrorCodeThroughTheClient) {
  const RunResult r = runProcess(client({"--raw"}),
                                 "connect@checker\n"
                                 "PING\n"
                                 "STATS\n"
                                 "SUBSCRIBE@c/+\n"
                                 "SUBSCRIBE@c/+\n"
                                 "PUBLISH@c/x@payload\n"
                                 "LIST@c/#\n"
                                 "UNSUBSCRIBE@c/+\n"
                                 "UNSUBSCRIBE@c/+\n"
                                 "FROB\n"
                                 "PUBLISH@a/+@x\n"
                                 "SUBSCRIBE@a/#/b\n"
                                 "PUBLISH@t\n"
                                 "CONNECT\n"
                                 "DISCONNECT\n");
  EXPECT_EQ(r.exitCode, 1) << "ERROR replies make the exit status 1\n" << r.err;
  std::vector<std::string> replies;
  std::vector<std::string> pushes;
  for (const std::string& line : linesOf(r.out)) {
    (line.rfind("MESSAGE@", 0) == 0 ? pushes : replies).push_back(line);
  }
  auto code = [](const std::string& reply) { return reply.substr(0, reply.find('@', 6)); };
  ASSERT_EQ(replies.size(), 17u) << r.out;
  EXPECT_EQ(replies[1], "ATTACHACK@request");
  EXPECT_EQ(replies[2], "ATTACHACK@push");
  EXPECT_EQ(replies[3], "PONG");
  EXPECT_EQ(replies[4].rfind("STATS@{", 0), 0u) << replies[4];
  EXPECT_EQ(replies[5], "SUBACK");
  EXPECT_EQ(replies[6], "SUBACK");
  EXPECT_EQ(replies[7], "PUBACK");
  EXPECT_EQ(replies[8], "LIST@{}");
  EXPECT_EQ(replies[9], "UNSUBACK");
  EXPECT_EQ(replies[10], "UNSUBACK");
  EXPECT_EQ(code(replies[11]), "ERROR@unknown-type");
  EXPECT_EQ(code(replies[12]), "ERROR@bad-topic");
  EXPECT_EQ(code(replies[13]), "ERROR@bad-filter");
  EXPECT_EQ(code(replies[14]), "ERROR@bad-request");
  EXPECT_EQ(code(replies[15]), "ERROR@bad-request");  // CONNECT on a bound socket
  EXPECT_EQ(replies[16], "DISCONNACK");
  EXPECT_EQ(pushes, (std::vector<std::string>{"MESSAGE@c/x@payload"}));
}

}  // namespace
}  // namespace tern::test
