// Regression tests for hostile input (issue 9): each test is named after the behaviour it
// protects, reproduces the attack that once broke it, and checks both the answer the attacker gets
// and that everyone else is still served. The limits themselves are in limits_test.cpp.
#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

#include "harness.hpp"
#include "mqtt_client.hpp"

namespace tern::test {
namespace {

bool startsWith(const std::string& s, std::string_view prefix) {
  return s.rfind(prefix, 0) == 0;
}

// Reads lines until one starts with `prefix`; every line before it must start with one of
// `allowed`. Returns the matching line, or "<none>".
std::string readUntil(LineSocket& s, std::string_view prefix,
                      std::vector<std::string_view> allowed) {
  for (;;) {
    auto line = s.readLine();
    if (!line) return "<none>";
    if (startsWith(*line, prefix)) return *line;
    bool ok = false;
    for (std::string_view a : allowed)
      ok = ok || startsWith(*line, a);
    EXPECT_TRUE(ok) << "unexpected reply: " << line->substr(0, 200);
    if (!ok) return "<unexpected>";
  }
}

// A fresh session on another socket still works end to end.
void expectServed(std::uint16_t port, const std::string& id) {
  LineClient probe(port, id);
  EXPECT_EQ(probe.request.request("SUBSCRIBE@probe/" + id), "SUBACK");
  EXPECT_EQ(probe.request.request("PUBLISH@probe/" + id + "@alive"), "PUBACK");
  EXPECT_EQ(probe.push.readLine().value_or("<none>"), "MESSAGE@probe/" + id + "@alive");
}

// Finding 1: a partial line, a pause, then a frame that hands the socket to another worker. The
// receiving worker once scanned from an offset cached for a buffer that no longer held those
// bytes: a heap overflow, or two frames merged into one.
TEST(HostileLine, PartialLineBeforeAHandOverIsFramedExactly) {
  BrokerProcess broker({"--workers", "4"});
  int k = 0;
  for (const std::size_t prefix : {1, 17, 300, 511, 512, 513, 700, 4000, 20000}) {
    for (int i = 0; i < 6; ++i, ++k) {
      const std::string id = "h" + std::to_string(k);  // homes spread over the 4 workers
      LineSocket s(broker.port());
      ASSERT_TRUE(s.sendRaw(std::string(prefix, 'A')));
      std::this_thread::sleep_for(Millis(20));  // the prefix is read (and searched) on its own
      ASSERT_TRUE(s.sendRaw("\nCONNECT@" + id + "\nPING\n"));
      EXPECT_EQ(s.readLine().value_or("<none>").substr(0, 20), "ERROR@not-connected@");
      EXPECT_EQ(s.readLine().value_or("<none>").substr(0, 9 + id.size()), "CONNACK@" + id + "@")
          << "prefix " << prefix;
      EXPECT_EQ(s.readLine().value_or("<none>"), "PONG") << "prefix " << prefix;
    }
  }
  for (int worker = 0; worker < 4; ++worker) {
    LineSocket s(broker.port());
    ASSERT_TRUE(s.sendRaw(std::string(300, 'B')));
    std::this_thread::sleep_for(Millis(20));
    const std::string token = std::string(32, 'a') + "000" + std::to_string(worker);
    ASSERT_TRUE(s.sendRaw("\nATTACH@" + token + "@push\n"));
    EXPECT_EQ(s.readLine().value_or("<none>").substr(0, 20), "ERROR@not-connected@");
    EXPECT_EQ(s.readLine().value_or("<none>").substr(0, 16), "ERROR@bad-token@");
    EXPECT_TRUE(s.closedByPeer());
  }
  expectServed(broker.port(), "after-partials");
}

TEST(HostileLine, RandomBytesThenConnectGetsAConnack) {
  BrokerProcess broker({"--workers", "3"});
  for (unsigned seed = 1; seed <= 8; ++seed) {
    std::mt19937 random(seed);
    std::string bytes(64 * 1024, '\0');
    for (char& b : bytes)
      b = static_cast<char>(random());
    const std::string id = "r" + std::to_string(seed);
    LineSocket s(broker.port());
    ASSERT_TRUE(s.sendRaw(bytes + "\nCONNECT@" + id + "\n"));
    // Each LF-terminated piece of the random bytes is refused (it is no CONNECT/ATTACH); then the
    // CONNECT is answered, whichever worker is its home.
    EXPECT_EQ(readUntil(s, "CONNACK@" + id + "@",
                        {"ERROR@not-connected@", "ERROR@bad-request@", "ERROR@unknown-type@",
                         "ERROR@bad-token@"})
                  .substr(0, 9 + id.size()),
              "CONNACK@" + id + "@")
        << "seed " << seed;
  }
  expectServed(broker.port(), "after-random");
}

// Finding 3: a message that the line protocol cannot frame must never be written to a line
// socket, live or retained: an MQTT payload with a LF (or a topic with '@' or LF) once arrived as
// a forged MESSAGE frame when pushed as RETAINED on SUBSCRIBE.
TEST(HostileLine, UnframableMqttMessagesNeverReachLineSockets) {
  BrokerProcess broker({"--mqtt-port", "auto", "--workers", "2"});
  MqttTestClient mqtt(broker.mqttPort());
  ASSERT_TRUE(mqtt.connect("forger"));
  ASSERT_TRUE(mqtt.publishAcked("bank/x", "x\nMESSAGE@bank/transfer@forged", 1, true));
  ASSERT_TRUE(mqtt.publishAcked("bank/a@b", "at in topic", 1, true));
  ASSERT_TRUE(mqtt.publishAcked("bank/l\nMESSAGE@bank/t@forged", "lf in topic", 1, true));
  ASSERT_TRUE(mqtt.publishAcked("bank/cr", "trailing cr\r", 1, true));
  ASSERT_TRUE(mqtt.publishAcked("bank/ok", "fine", 1, true));
  LineClient line(broker.port(), "victim");
  EXPECT_EQ(line.request.request("SUBSCRIBE@bank/#"), "SUBACK");
  EXPECT_EQ(line.push.readLine().value_or("<none>"), "RETAINED@bank/ok@fine");
  // Live deliveries follow the same rule.
  ASSERT_TRUE(mqtt.publishAcked("bank/x", "y\nMESSAGE@bank/transfer@forged", 1));
  ASSERT_TRUE(mqtt.publishAcked("bank/l\nPONG", "z", 1));
  ASSERT_TRUE(mqtt.publishAcked("bank/ok", "live", 1));
  EXPECT_EQ(line.push.readLine().value_or("<none>"), "MESSAGE@bank/ok@live");
  EXPECT_TRUE(line.push.silentFor(Millis(200)));
  // LIST carries them all, JSON-escaped, on one line.
  const std::string list = line.request.request("LIST@bank/#");
  EXPECT_TRUE(startsWith(list, "LIST@{")) << list;
  EXPECT_NE(list.find(R"("bank/x":"x\nMESSAGE@bank/transfer@forged")"), std::string::npos) << list;
  EXPECT_EQ(line.request.request("PING"), "PONG");
}

}  // namespace
}  // namespace tern::test
