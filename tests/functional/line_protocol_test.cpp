// The line-protocol contract of docs/protocol.md, checked against the real broker binary over
// loopback with raw sockets (byte-exact frames).
#include <gtest/gtest.h>

#include <algorithm>
#include <set>
#include <string>
#include <vector>

#include "harness.hpp"
#include "tern/protocol/line_request.hpp"

namespace tern::test {
namespace {

// Collects `count` push frames (bounded wait for each).
std::vector<std::string> readPushes(LineSocket& push, std::size_t count) {
  std::vector<std::string> frames;
  while (frames.size() < count) {
    auto line = push.readLine();
    if (!line) break;
    frames.push_back(*line);
  }
  return frames;
}

class LineProtocol : public ::testing::Test {
 protected:
  BrokerProcess broker{{"--workers", "3"}};
};

TEST_F(LineProtocol, OriginalExampleSession) {
  LineClient alice(broker.port(), "alice");
  EXPECT_EQ(alice.clientId, "alice");
  EXPECT_EQ(alice.request.request("PUBLISH@weather/temp@21C@retain"), "PUBACK");
  EXPECT_EQ(alice.request.request("PUBLISH@weather/forecast@sunny@retain"), "PUBACK");

  LineClient bob(broker.port(), "bob");
  EXPECT_EQ(bob.request.request("SUBSCRIBE@weather/*"), "SUBACK");
  std::vector<std::string> pushes = readPushes(bob.push, 2);
  std::sort(pushes.begin(), pushes.end());
  EXPECT_EQ(pushes, (std::vector<std::string>{"RETAINED@weather/forecast@sunny",
                                              "RETAINED@weather/temp@21C"}));
  const std::string list = bob.request.request("LIST");
  EXPECT_TRUE(list == R"(LIST@{"weather/temp":"21C","weather/forecast":"sunny"})" ||
              list == R"(LIST@{"weather/forecast":"sunny","weather/temp":"21C"})")
      << list;

  EXPECT_EQ(alice.request2.request("PUBLISH@weather/temp@22C"), "PUBACK");
  EXPECT_EQ(bob.push.readLine().value_or("<none>"), "MESSAGE@weather/temp@22C");
}

TEST_F(LineProtocol, HandshakeAssignsIdAndUnguessableToken) {
  LineClient a(broker.port());
  LineClient b(broker.port());
  EXPECT_NE(a.clientId, b.clientId);
  EXPECT_TRUE(protocol::isValidClientId(a.clientId)) << a.clientId;
  EXPECT_GE(a.token.size(), 32u);  // >= 128 bits in hex
  EXPECT_EQ(a.token.find_first_not_of("0123456789abcdef"), std::string::npos);
  EXPECT_NE(a.token, b.token);
}

TEST_F(LineProtocol, TypesAndRolesAreCaseInsensitive) {
  LineSocket s(broker.port());
  const std::string connack = s.request("connect@Mixed.Case_id-1");
  ASSERT_EQ(connack.rfind("CONNACK@Mixed.Case_id-1@", 0), 0u) << connack;
  const std::string token = connack.substr(connack.rfind('@') + 1);
  LineSocket p(broker.port());
  EXPECT_EQ(p.request("Attach@" + token + "@PuSh"), "ATTACHACK@push");
  EXPECT_EQ(s.request("sUbScRiBe@x"), "SUBACK");
  EXPECT_EQ(s.request("publish@x@hi@ReTaIn"), "PUBACK");
  EXPECT_EQ(p.readLine().value_or("<none>"), "MESSAGE@x@hi");
  EXPECT_EQ(s.request("ping"), "PONG");
  EXPECT_EQ(s.request("list@x"), R"(LIST@{"x":"hi"})");
}

TEST_F(LineProtocol, FramingCrLfEmptyLinesAndPipelining) {
  LineClient c(broker.port(), "framer");
  // Many requests in one write, CRLF endings, empty lines in between: one reply each, in order.
  ASSERT_TRUE(c.request.sendRaw("PING\r\n\n\r\nSUBSCRIBE@f/+\r\nPUBLISH@f/1@a\nPUBLISH@f/2@b\r\n"));
  EXPECT_EQ(c.request.readLine().value_or("<none>"), "PONG");
  EXPECT_EQ(c.request.readLine().value_or("<none>"), "SUBACK");
  EXPECT_EQ(c.request.readLine().value_or("<none>"), "PUBACK");
  EXPECT_EQ(c.request.readLine().value_or("<none>"), "PUBACK");
  EXPECT_EQ(readPushes(c.push, 2), (std::vector<std::string>{"MESSAGE@f/1@a", "MESSAGE@f/2@b"}));
  // A frame split across writes.
  ASSERT_TRUE(c.request.sendRaw("PUB"));
  EXPECT_TRUE(c.request.silentFor(Millis(100)));
  ASSERT_TRUE(c.request.sendRaw("LISH@f/3@c"));
  ASSERT_TRUE(c.request.sendRaw("\n"));
  EXPECT_EQ(c.request.readLine().value_or("<none>"), "PUBACK");
  EXPECT_EQ(c.push.readLine().value_or("<none>"), "MESSAGE@f/3@c");
}

TEST_F(LineProtocol, PublishFieldRules) {
  LineClient c(broker.port(), "fields");
  EXPECT_EQ(c.request.request("SUBSCRIBE@p/#"), "SUBACK");
  EXPECT_EQ(c.request.request("PUBLISH@p/a@retain"), "PUBACK");  // contents "retain"
  EXPECT_EQ(c.push.readLine().value_or("<none>"), "MESSAGE@p/a@retain");
  EXPECT_EQ(c.request.request("PUBLISH@p/a@a@b"), "PUBACK");  // contents "a@b"
  EXPECT_EQ(c.push.readLine().value_or("<none>"), "MESSAGE@p/a@a@b");
  EXPECT_EQ(c.request.request("PUBLISH@p/a@a@b@RETAIN"), "PUBACK");  // "a@b", retained
  EXPECT_EQ(c.push.readLine().value_or("<none>"), "MESSAGE@p/a@a@b");
  EXPECT_EQ(c.request.request("LIST@p/a"), R"(LIST@{"p/a":"a@b"})");
  EXPECT_EQ(c.request.request("PUBLISH@p/a@"), "PUBACK");  // empty contents, not retained
  EXPECT_EQ(c.push.readLine().value_or("<none>"), "MESSAGE@p/a@");
  EXPECT_EQ(c.request.request("LIST@p/a"), R"(LIST@{"p/a":"a@b"})");
  EXPECT_EQ(c.request.request("PUBLISH@p/a@@retain"), "PUBACK");  // deletes, delivers nothing
  EXPECT_EQ(c.request.request("LIST@p/a"), "LIST@{}");
  EXPECT_TRUE(c.push.silentFor(Millis(200)));
  EXPECT_EQ(c.request.request("PUBLISH@p/a@x@retain@retain"), "PUBACK");  // "x@retain", retained
  EXPECT_EQ(c.push.readLine().value_or("<none>"), "MESSAGE@p/a@x@retain");
  EXPECT_EQ(c.request.request("LIST@p/a"), R"(LIST@{"p/a":"x@retain"})");
}

TEST_F(LineProtocol, ErrorCodes) {
  LineClient c(broker.port(), "errors");
  auto code = [](const std::string& reply) {
    if (reply.rfind("ERROR@", 0) != 0) return reply;
    const std::size_t at = reply.find('@', 6);
    EXPECT_NE(at, std::string::npos) << "an ERROR needs a text: " << reply;
    EXPECT_GT(reply.size(), at + 1) << "an ERROR needs a text: " << reply;
    return reply.substr(0, at);
  };
  EXPECT_EQ(code(c.request.request("FROB@x")), "ERROR@unknown-type");
  EXPECT_EQ(code(c.request.request("PUBLISH@t")), "ERROR@bad-request");
  EXPECT_EQ(code(c.request.request("PUBLISH")), "ERROR@bad-request");
  EXPECT_EQ(code(c.request.request("PUBLISH@@x")), "ERROR@bad-topic");
  EXPECT_EQ(code(c.request.request("PUBLISH@a/+@x")), "ERROR@bad-topic");
  EXPECT_EQ(code(c.request.request("PUBLISH@a/*@x")), "ERROR@bad-topic");
  EXPECT_EQ(code(c.request.request("PUBLISH@a/#@x")), "ERROR@bad-topic");
  EXPECT_EQ(code(c.request.request("PUBLISH@a\xFF@x")), "ERROR@bad-topic");
  EXPECT_EQ(code(c.request.request(std::string("PUBLISH@a\0b@x", 13))), "ERROR@bad-topic");
  EXPECT_EQ(code(c.request.request("SUBSCRIBE")), "ERROR@bad-request");
  EXPECT_EQ(code(c.request.request("SUBSCRIBE@a@b")), "ERROR@bad-request");
  EXPECT_EQ(code(c.request.request("SUBSCRIBE@")), "ERROR@bad-filter");
  EXPECT_EQ(code(c.request.request("SUBSCRIBE@a/#/b")), "ERROR@bad-filter");
  EXPECT_EQ(code(c.request.request("SUBSCRIBE@a+")), "ERROR@bad-filter");
  EXPECT_EQ(code(c.request.request("SUBSCRIBE@a*/b")), "ERROR@bad-filter");
  EXPECT_EQ(code(c.request.request("UNSUBSCRIBE@#/a")), "ERROR@bad-filter");
  EXPECT_EQ(code(c.request.request("UNSUBSCRIBE")), "ERROR@bad-request");
  EXPECT_EQ(code(c.request.request("LIST@a/#/b")), "ERROR@bad-filter");
  EXPECT_EQ(code(c.request.request("LIST@a@b")), "ERROR@bad-request");
  EXPECT_EQ(code(c.request.request("PING@x")), "ERROR@bad-request");
  EXPECT_EQ(code(c.request.request("STATS@x")), "ERROR@bad-request");
  EXPECT_EQ(code(c.request.request("DISCONNECT@x")), "ERROR@bad-request");
  EXPECT_EQ(code(c.request.request("CONNECT")), "ERROR@bad-request");  // already bound
  EXPECT_EQ(code(c.request.request("ATTACH@" + c.token + "@request")), "ERROR@bad-request");
  // The socket stayed open through all of that.
  EXPECT_EQ(c.request.request("PING"), "PONG");
}

TEST_F(LineProtocol, BadClientIds) {
  LineSocket s(broker.port());
  auto code = [&](const std::string& line) {
    const std::string reply = s.request(line);
    return reply.substr(0, reply.find('@', 6));
  };
  EXPECT_EQ(code("CONNECT@"), "ERROR@bad-request");
  EXPECT_EQ(code("CONNECT@has space"), "ERROR@bad-request");
  EXPECT_EQ(code("CONNECT@sl/ash"), "ERROR@bad-request");
  EXPECT_EQ(code("CONNECT@" + std::string(65, 'a')), "ERROR@bad-request");
  EXPECT_EQ(code("CONNECT@a@b"), "ERROR@bad-request");
  // Still unbound and open: a valid CONNECT works now.
  EXPECT_EQ(
      s.request("CONNECT@" + std::string(64, 'a')).rfind("CONNACK@" + std::string(64, 'a'), 0), 0u);
}

TEST_F(LineProtocol, UnboundSocketGetsNotConnectedAndStaysOpen) {
  LineSocket s(broker.port());
  for (const char* frame : {"PUBLISH@a@b", "PING", "LIST", "NONSENSE", "DISCONNECT"}) {
    const std::string reply = s.request(frame);
    EXPECT_EQ(reply.rfind("ERROR@not-connected@", 0), 0u) << frame << " -> " << reply;
  }
  EXPECT_EQ(s.request("CONNECT@late").rfind("CONNACK@late@", 0), 0u);
}

TEST_F(LineProtocol, MalformedAttachIsBadRequest) {
  LineSocket s(broker.port());
  for (const char* frame : {"ATTACH", "ATTACH@tok", "ATTACH@tok@sideways", "ATTACH@a@push@x"}) {
    const std::string reply = s.request(frame);
    EXPECT_EQ(reply.rfind("ERROR@bad-request@", 0), 0u) << frame << " -> " << reply;
  }
  EXPECT_FALSE(s.eof());
}

TEST_F(LineProtocol, BadTokenClosesTheSocket) {
  LineClient owner(broker.port(), "owner");
  for (std::string token : {std::string("nothex"), std::string(36, '0'),
                            owner.token.substr(0, 32) + "ffff", std::string(36, 'f')}) {
    LineSocket s(broker.port());
    const std::string reply = s.request("ATTACH@" + token + "@request");
    EXPECT_EQ(reply.rfind("ERROR@bad-token@", 0), 0u) << token << " -> " << reply;
    EXPECT_TRUE(s.closedByPeer()) << token;
  }
  // A token that differs from a live one in its random part is refused too.
  std::string forged = owner.token;
  forged[0] = forged[0] == 'a' ? 'b' : 'a';
  LineSocket s(broker.port());
  EXPECT_EQ(s.request("ATTACH@" + forged + "@push").rfind("ERROR@bad-token@", 0), 0u);
  EXPECT_TRUE(s.closedByPeer());
}

TEST_F(LineProtocol, SocketLimitsPerSession) {
  LineClient c(broker.port(), "limits");
  LineSocket third(broker.port());
  EXPECT_EQ(third.request("ATTACH@" + c.token + "@request").rfind("ERROR@too-many-sockets@", 0),
            0u);
  EXPECT_TRUE(third.closedByPeer());
  LineSocket secondPush(broker.port());
  EXPECT_EQ(secondPush.request("ATTACH@" + c.token + "@push").rfind("ERROR@too-many-sockets@", 0),
            0u);
  EXPECT_TRUE(secondPush.closedByPeer());
  // A closed socket frees its slot.
  c.request2.close();
  c.push.close();
  LineSocket again(broker.port());
  LineSocket pushAgain(broker.port());
  // The broker notices the closes asynchronously: retry briefly.
  std::string reply;
  for (int i = 0; i < 50; ++i) {
    LineSocket attempt(broker.port());
    reply = attempt.request("ATTACH@" + c.token + "@request");
    if (reply == "ATTACHACK@request") {
      again = std::move(attempt);
      break;
    }
    std::this_thread::sleep_for(Millis(20));
  }
  EXPECT_EQ(reply, "ATTACHACK@request");
  EXPECT_EQ(pushAgain.request("ATTACH@" + c.token + "@push"), "ATTACHACK@push");
  EXPECT_EQ(again.request("PING"), "PONG");
}

TEST_F(LineProtocol, PushSocketAcceptsOnlyPing) {
  LineClient c(broker.port(), "pusher");
  EXPECT_EQ(c.push.request("PING"), "PONG");
  EXPECT_EQ(c.push.request("ping"), "PONG");
  EXPECT_EQ(c.push.request("PUBLISH@a@b").rfind("ERROR@bad-request@", 0), 0u);
  EXPECT_EQ(c.push.request("SUBSCRIBE@a").rfind("ERROR@bad-request@", 0), 0u);
  EXPECT_EQ(c.push.request("PING"), "PONG");
}

TEST_F(LineProtocol, DeliveriesQueueUntilThePushSocketAttaches) {
  LineSocket request(broker.port());
  const std::string connack = request.request("CONNECT@queued");
  const std::string token = connack.substr(connack.rfind('@') + 1);
  EXPECT_EQ(request.request("PUBLISH@q/r@kept@retain"), "PUBACK");
  EXPECT_EQ(request.request("SUBSCRIBE@q/#"), "SUBACK");
  EXPECT_EQ(request.request("PUBLISH@q/live@one"), "PUBACK");
  EXPECT_EQ(request.request("PUBLISH@q/live@two"), "PUBACK");
  LineSocket push(broker.port());
  EXPECT_EQ(push.request("ATTACH@" + token + "@push"), "ATTACHACK@push");
  EXPECT_EQ(
      readPushes(push, 3),
      (std::vector<std::string>{"RETAINED@q/r@kept", "MESSAGE@q/live@one", "MESSAGE@q/live@two"}));
}

TEST_F(LineProtocol, RepeatedSubscribeIsANoOpAndStarEqualsPlus) {
  LineClient c(broker.port(), "repeat");
  EXPECT_EQ(c.request.request("PUBLISH@r/x@v@retain"), "PUBACK");
  EXPECT_EQ(c.request.request("SUBSCRIBE@r/+"), "SUBACK");
  EXPECT_EQ(c.push.readLine().value_or("<none>"), "RETAINED@r/x@v");
  EXPECT_EQ(c.request.request("SUBSCRIBE@r/+"), "SUBACK");
  EXPECT_EQ(c.request.request("SUBSCRIBE@r/*"), "SUBACK");  // the same subscription
  EXPECT_TRUE(c.push.silentFor(Millis(200))) << "a repeated SUBSCRIBE must not replay retained";
  EXPECT_EQ(c.request.request("PUBLISH@r/y@once"), "PUBACK");
  EXPECT_EQ(c.push.readLine().value_or("<none>"), "MESSAGE@r/y@once");
  EXPECT_EQ(c.request.request("UNSUBSCRIBE@r/*"), "UNSUBACK");
  EXPECT_EQ(c.request.request("UNSUBSCRIBE@r/*"), "UNSUBACK");  // not subscribed: still UNSUBACK
  EXPECT_EQ(c.request.request("PUBLISH@r/y@gone"), "PUBACK");
  EXPECT_TRUE(c.push.silentFor(Millis(200)));
}

TEST_F(LineProtocol, OneDeliveryPerSessionAndSelfDelivery) {
  LineClient c(broker.port(), "overlap");
  for (const char* f : {"o/#", "o/+/c", "o/b/c", "+/b/#", "#"}) {
    EXPECT_EQ(c.request.request(std::string("SUBSCRIBE@") + f), "SUBACK");
  }
  EXPECT_EQ(c.request.request("PUBLISH@o/b/c@x"), "PUBACK");
  EXPECT_EQ(c.push.readLine().value_or("<none>"), "MESSAGE@o/b/c@x");
  EXPECT_TRUE(c.push.silentFor(Millis(200)));
}

TEST_F(LineProtocol, WildcardSemantics) {
  LineClient pub(broker.port(), "wpub");
  LineClient sub(broker.port(), "wsub");
  for (const char* f : {"w/#", "+/x", "w//z", "/+"}) {
    EXPECT_EQ(sub.request.request(std::string("SUBSCRIBE@") + f), "SUBACK");
  }
  // Published in order; each line is what `sub` must receive (or nothing).
  const std::vector<std::pair<std::string, bool>> cases = {
      {"w", true},        // "w/#" matches its parent level
      {"w/a/b", true},    // ... and any depth
      {"q/x", true},      // "+/x"
      {"q/x/y", false},   // '+' is exactly one level
      {"w//z", true},     // empty levels are levels
      {"/a", true},       // "/+"
      {"$sys/x", false},  // a leading wildcard does not match '$' topics
      {"nope", false},
  };
  for (const auto& [topic, _] : cases) {
    EXPECT_EQ(pub.request.request("PUBLISH@" + topic + "@m"), "PUBACK");
  }
  std::vector<std::string> expected;
  for (const auto& [topic, match] : cases) {
    if (match) expected.push_back("MESSAGE@" + topic + "@m");
  }
  EXPECT_EQ(readPushes(sub.push, expected.size()), expected);
  EXPECT_TRUE(sub.push.silentFor(Millis(200)));
  // '$' topics are matched by filters that name them, and listed by LIST.
  EXPECT_EQ(sub.request.request("SUBSCRIBE@$sys/#"), "SUBACK");
  EXPECT_EQ(pub.request.request("PUBLISH@$sys/up@1@retain"), "PUBACK");
  EXPECT_EQ(sub.push.readLine().value_or("<none>"), "MESSAGE@$sys/up@1");
  EXPECT_EQ(sub.request.request("LIST"), R"(LIST@{"$sys/up":"1"})");
  EXPECT_EQ(sub.request.request("LIST@#"), "LIST@{}");
}

TEST_F(LineProtocol, ListJsonIsValidForAnyBytes) {
  LineClient c(broker.port(), "lister");
  EXPECT_EQ(c.request.request("PUBLISH@j/q@say \"hi\"\\\t@retain"), "PUBACK");
  EXPECT_EQ(c.request.request("PUBLISH@j/bin@a\xFF"
                              "b@retain"),
            "PUBACK");
  EXPECT_EQ(c.request.request("PUBLISH@j/nul@" + std::string("x\0y", 3) + "@retain"), "PUBACK");
  EXPECT_EQ(c.request.request("LIST@j/q"), R"(LIST@{"j/q":"say \"hi\"\\\t"})");
  EXPECT_EQ(c.request.request("LIST@j/bin"),
            "LIST@{\"j/bin\":\"a\xEF\xBF\xBD"
            "b\"}");
  EXPECT_EQ(c.request.request("LIST@j/nul"), R"(LIST@{"j/nul":"x\u0000y"})");
}

TEST_F(LineProtocol, TakeoverEndsTheOldSession) {
  LineClient old(broker.port(), "same");
  EXPECT_EQ(old.request.request("SUBSCRIBE@take/#"), "SUBACK");
  LineClient fresh(broker.port(), "same");
  EXPECT_NE(fresh.token, old.token);
  EXPECT_TRUE(old.request.closedByPeer());
  EXPECT_TRUE(old.request2.closedByPeer());
  EXPECT_TRUE(old.push.closedByPeer());
  // The old token is dead, and the new session starts without subscriptions.
  LineSocket s(broker.port());
  EXPECT_EQ(s.request("ATTACH@" + old.token + "@request").rfind("ERROR@bad-token@", 0), 0u);
  EXPECT_EQ(fresh.request.request("PUBLISH@take/x@1"), "PUBACK");
  EXPECT_TRUE(fresh.push.silentFor(Millis(200)));
}

TEST_F(LineProtocol, DisconnectClosesEverySocketAndDropsSubscriptions) {
  LineClient watcher(broker.port(), "watcher");
  LineClient c(broker.port(), "leaver");
  EXPECT_EQ(c.request.request("SUBSCRIBE@bye/#"), "SUBACK");
  const std::string before = watcher.request.request("STATS");
  EXPECT_NE(before.find("\"subscriptions\":1"), std::string::npos) << before;
  EXPECT_EQ(c.request2.request("DISCONNECT"), "DISCONNACK");
  EXPECT_TRUE(c.request.closedByPeer());
  EXPECT_TRUE(c.request2.closedByPeer());
  EXPECT_TRUE(c.push.closedByPeer());
  const std::string after = watcher.request.request("STATS");
  EXPECT_NE(after.find("\"subscriptions\":0"), std::string::npos) << after;
  LineSocket s(broker.port());
  EXPECT_EQ(s.request("ATTACH@" + c.token + "@push").rfind("ERROR@bad-token@", 0), 0u);
}

TEST_F(LineProtocol, SessionEndsWhenItsLastSocketCloses) {
  LineClient watcher(broker.port(), "watcher2");
  std::string token;
  {
    LineClient c(broker.port(), "transient");
    token = c.token;
    EXPECT_EQ(c.request.request("SUBSCRIBE@gone/#"), "SUBACK");
  }  // all three sockets closed
  std::string stats;
  const std::int64_t deadline = nowMillis() + kDefaultTimeout.count();  // the harness deadline
  do {
    stats = watcher.request.request("STATS");
    if (stats.find("\"subscriptions\":0") != std::string::npos) break;
    std::this_thread::sleep_for(Millis(20));
  } while (nowMillis() < deadline);
  EXPECT_NE(stats.find("\"subscriptions\":0"), std::string::npos) << stats;
  EXPECT_NE(stats.find("\"sessions\":1"), std::string::npos) << stats;
  LineSocket s(broker.port());
  EXPECT_EQ(s.request("ATTACH@" + token + "@push").rfind("ERROR@bad-token@", 0), 0u);
}

TEST_F(LineProtocol, StatsCountsMessages) {
  LineClient c(broker.port(), "counter");
  EXPECT_EQ(c.request.request("SUBSCRIBE@s/#"), "SUBACK");
  for (int i = 0; i < 5; ++i)
    EXPECT_EQ(c.request.request("PUBLISH@s/x@" + std::to_string(i)), "PUBACK");
  readPushes(c.push, 5);
  const std::string stats = c.request.request("STATS");
  ASSERT_EQ(stats.rfind("STATS@{", 0), 0u) << stats;
  EXPECT_NE(stats.find("\"messages_received\":5"), std::string::npos) << stats;
  EXPECT_NE(stats.find("\"messages_delivered\":5"), std::string::npos) << stats;
  EXPECT_NE(stats.find("\"messages_dropped\":0"), std::string::npos) << stats;
  EXPECT_NE(stats.find("\"workers\":[{\"worker\":0"), std::string::npos) << stats;
}

// ---- hostile input ----

TEST(LineProtocolLimits, TooLongFrameIsRefusedAndClosed) {
  BrokerProcess broker({"--max-line", "100"});
  LineSocket exact(broker.port());
  // Exactly at the limit: accepted (as a not-connected frame).
  EXPECT_EQ(exact.request(std::string(100, 'x')).rfind("ERROR@not-connected@", 0), 0u);
  LineSocket over(broker.port());
  over.sendRaw(std::string(101, 'x'));  // no LF yet: refused as soon as it is buffered
  EXPECT_EQ(over.readLine().value_or("<none>").rfind("ERROR@too-long@", 0), 0u);
  EXPECT_TRUE(over.closedByPeer());
  LineClient c(broker.port(), "long");
  EXPECT_EQ(c.request.request("PUBLISH@t@" + std::string(200, 'y')).rfind("ERROR@too-long@", 0),
            0u);
  EXPECT_TRUE(c.request.closedByPeer());
  EXPECT_EQ(c.request2.request("PING"), "PONG");  // the session's other sockets are unaffected
}

TEST(LineProtocolLimits, OneMebibyteLineWithDefaultLimit) {
  BrokerProcess broker;
  LineClient c(broker.port(), "mib");
  c.request.sendRaw("PUBLISH@t@" + std::string(1 << 20, 'z') + "\n");
  EXPECT_EQ(c.request.readLine().value_or("<none>").rfind("ERROR@too-long@", 0), 0u);
  EXPECT_TRUE(c.request.closedByPeer());
  LineClient other(broker.port(), "other");
  EXPECT_EQ(other.request.request("PING"), "PONG");
}

TEST(LineProtocolLimits, HandshakeTimeoutClosesUnboundSockets) {
  BrokerProcess broker({"--handshake-timeout", "0.3"});
  LineSocket idle(broker.port());
  LineSocket chatty(broker.port());
  EXPECT_EQ(chatty.request("PING").rfind("ERROR@not-connected@", 0), 0u);
  EXPECT_TRUE(idle.closedByPeer(Millis(3000)));
  EXPECT_TRUE(chatty.closedByPeer(Millis(3000)));
  LineClient bound(broker.port(), "bound");
  std::this_thread::sleep_for(Millis(600));
  EXPECT_EQ(bound.request.request("PING"), "PONG");  // bound sockets have no such timeout
  EXPECT_EQ(bound.push.request("PING"), "PONG");
}

TEST(LineProtocolHostile, GarbageNulAndResetsDoNotHurtOthers) {
  BrokerProcess broker;
  LineClient good(broker.port(), "good");
  EXPECT_EQ(good.request.request("SUBSCRIBE@h/#"), "SUBACK");
  {
    LineSocket garbage(broker.port());
    std::string bytes;
    for (int i = 0; i < 4096; ++i)
      bytes.push_back(static_cast<char>((i * 131 + 7) % 256));
    garbage.sendRaw(bytes);
    LineSocket nul(broker.port());
    nul.sendRaw(std::string("CONNECT\0\0\0\n\0\0\n", 13));
    EXPECT_TRUE(nul.readLine().has_value());
  }
  {
    // A peer that resets mid-frame.
    LineClient resetter(broker.port(), "resetter");
    resetter.request.sendRaw("PUBLISH@h/x@half a fra");
    linger hard{1, 0};
    ::setsockopt(resetter.request.fd(), SOL_SOCKET, SO_LINGER, &hard, sizeof hard);
    resetter.request.close();  // RST
  }
  LineClient bin(broker.port(), "bin");
  EXPECT_EQ(bin.request.request(std::string("PUBLISH@h/bin@\x01\x02\0\xFE\xFF", 19)), "PUBACK");
  EXPECT_EQ(good.push.readLine().value_or("<none>"),
            std::string("MESSAGE@h/bin@\x01\x02\0\xFE\xFF", 19));
  EXPECT_EQ(good.request.request("PING"), "PONG");
  EXPECT_EQ(broker.stop(), 0);
}

long rssKiB(pid_t pid) {
  std::FILE* f = std::fopen(("/proc/" + std::to_string(pid) + "/status").c_str(), "r");
  if (f == nullptr) return -1;
  char line[256];
  long kib = -1;
  while (std::fgets(line, sizeof line, f) != nullptr) {
    if (std::sscanf(line, "VmRSS: %ld kB", &kib) == 1) break;
  }
  std::fclose(f);
  return kib;
}

TEST(LineProtocolHostile, PushSocketThatNeverReadsIsBoundedAndDoesNotStallOthers) {
  BrokerProcess broker({"--max-queued-bytes", "1M", "--workers", "2"});
  LineClient stuck(broker.port(), "stuck");  // never reads its push socket
  LineClient healthy(broker.port(), "healthy");
  LineClient publisher(broker.port(), "publisher");
  EXPECT_EQ(stuck.request.request("SUBSCRIBE@flood/#"), "SUBACK");
  EXPECT_EQ(healthy.request.request("SUBSCRIBE@flood/#"), "SUBACK");
  const long rssBefore = rssKiB(broker.pid());
  const std::string payload(16 * 1024, 'p');
  constexpr int kMessages = 1024;  // 16 MiB published, far beyond the 1 MiB queue
  for (int i = 0; i < kMessages; ++i) {
    ASSERT_EQ(publisher.request.request("PUBLISH@flood/x@" + payload), "PUBACK") << i;
    // The healthy subscriber keeps receiving everything, in order.
    ASSERT_EQ(healthy.push.readLine().value_or("<none>").size(), 8 + 8 + payload.size()) << i;
  }
  const long rssAfter = rssKiB(broker.pid());
  EXPECT_LT(rssAfter - rssBefore, 48 * 1024)
      << "broker memory grew by " << (rssAfter - rssBefore) << " KiB for a stuck consumer";
  const std::string stats = healthy.request.request("STATS");
  const std::size_t at = stats.find("\"messages_dropped\":");
  ASSERT_NE(at, std::string::npos);
  EXPECT_GT(std::stoul(stats.substr(at + 19)), 0u) << stats;
  EXPECT_EQ(stuck.request.request("PING"), "PONG");  // its own request socket is still served
}

// The figure after "key": in a STATS reply (the first occurrence: the broker-wide one).
std::uint64_t statsField(const std::string& stats, const std::string& key) {
  const std::size_t at = stats.find("\"" + key + "\":");
  if (at == std::string::npos) return ~std::uint64_t{0};
  return std::stoull(stats.substr(at + key.size() + 3));
}

TEST(LineProtocolHostile, OutputBuffersAreFreedOnceTheConsumerCatchesUp) {
  BrokerProcess broker({"--max-queued-bytes", "64M", "--workers", "1"});
  LineClient slow(broker.port(), "slow");  // does not read its push socket until told to
  LineClient publisher(broker.port(), "bufpub");
  EXPECT_EQ(slow.request.request("SUBSCRIBE@buf/#"), "SUBACK");
  const std::string payload(16 * 1024, 'b');
  constexpr int kMessages = 512;  // 8 MiB: more than loopback's socket buffers take
  for (int i = 0; i < kMessages; ++i)
    ASSERT_EQ(publisher.request.request("PUBLISH@buf/x@" + payload), "PUBACK") << i;
  // The broker holds what the kernel would not take, and says so (the figure is refreshed once
  // a second).
  std::uint64_t held = 0;
  for (int i = 0; i < 60 && held < (1u << 20); ++i) {
    std::this_thread::sleep_for(Millis(50));
    held = statsField(publisher.request.request("STATS"), "buffer_bytes");
  }
  EXPECT_GE(held, 1u << 20) << "buffer_bytes while 8 MiB wait for a consumer that does not read";
  // The consumer reads everything, in order; then the buffers go back and the figure drops to 0.
  for (int i = 0; i < kMessages; ++i)
    ASSERT_EQ(slow.push.readLine().value_or("<none>").size(), 8 + 6 + payload.size()) << i;
  for (int i = 0; i < 100 && held != 0; ++i) {
    std::this_thread::sleep_for(Millis(50));
    held = statsField(publisher.request.request("STATS"), "buffer_bytes");
  }
  EXPECT_EQ(held, 0u) << "buffers of idle connections still held";
  EXPECT_EQ(statsField(publisher.request.request("STATS"), "messages_dropped"), 0u);
}

TEST(LineProtocolProcess, SigtermStopsCleanlyAndFlushesPendingPushes) {
  BrokerProcess broker({"--workers", "2"});
  LineClient sub(broker.port(), "flushsub");
  LineClient pub(broker.port(), "flushpub");
  EXPECT_EQ(sub.request.request("SUBSCRIBE@fl/#"), "SUBACK");
  for (int i = 0; i < 200; ++i)
    pub.request.send("PUBLISH@fl/x@" + std::to_string(i));
  for (int i = 0; i < 200; ++i)
    ASSERT_EQ(pub.request.readLine().value_or("<none>"), "PUBACK");
  EXPECT_EQ(broker.stop(), 0);
  // Everything acknowledged before the signal was delivered before the sockets closed.
  std::vector<std::string> got = readPushes(sub.push, 200);
  ASSERT_EQ(got.size(), 200u);
  for (int i = 0; i < 200; ++i)
    EXPECT_EQ(got[i], "MESSAGE@fl/x@" + std::to_string(i));
  EXPECT_TRUE(sub.push.closedByPeer());
}

TEST(LineProtocolProcess, BadFlagAndBusyPortExitWithCode2) {
  RunResult bad = runProcess({TERN_BROKER_BIN, "--no-such-flag"});
  EXPECT_EQ(bad.exitCode, 2);
  EXPECT_EQ(std::count(bad.err.begin(), bad.err.end(), '\n'), 1) << bad.err;
  RunResult workers = runProcess({TERN_BROKER_BIN, "--workers", "0"});
  RunResult mqttPort = runProcess({TERN_BROKER_BIN, "--mqtt-port", "http"});
  EXPECT_EQ(mqttPort.exitCode, 2);
  EXPECT_NE(mqttPort.err.find("--mqtt-port"), std::string::npos) << mqttPort.err;
  EXPECT_EQ(workers.exitCode, 2);
  BrokerProcess first;
  RunResult busy =
      runProcess({TERN_BROKER_BIN, "--port", std::to_string(first.port()), "--mqtt-port", "0"});
  EXPECT_EQ(busy.exitCode, 2);
  EXPECT_NE(busy.err.find("cannot listen"), std::string::npos) << busy.err;
  EXPECT_EQ(std::count(busy.err.begin(), busy.err.end(), '\n'), 1) << busy.err;
  RunResult help = runProcess({TERN_BROKER_BIN, "--help"});
  EXPECT_EQ(help.exitCode, 0);
  for (const char* flag :
       {"--workers", "--acceptors", "--bind", "--port", "--max-line", "--handshake-timeout",
        "--max-queued-bytes", "--log-level", "--config", "--mqtt-port", "--max-packet-size",
        "--max-inflight", "--max-queued-messages"}) {
    EXPECT_NE(help.out.find(flag), std::string::npos) << flag;
  }
}

}  // namespace
}  // namespace tern::test
