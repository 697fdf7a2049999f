// MQTT 3.1.1 against the real broker over loopback, byte-exact, with tern's codec as the client.
// (tests/functional/mqtt_stock_clients_test.py covers the same ground with mosquitto_pub/sub and
// Paho.)
#include <gtest/gtest.h>

#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "harness.hpp"
#include "mqtt_client.hpp"

namespace tern::test {
namespace {

class Mqtt : public ::testing::Test {
 protected:
  BrokerProcess broker{{"--mqtt-port", "auto", "--workers", "3"}};
  std::uint16_t port() const { return broker.mqttPort(); }
};

TEST_F(Mqtt, ConnectAndPing) {
  MqttTestClient c(port());
  auto connack = c.connect("pinger");
  ASSERT_TRUE(connack);
  EXPECT_EQ(connack->returnCode, mqtt::ConnectReturnCode::kAccepted);
  EXPECT_FALSE(connack->sessionPresent);
  c.ping();
  auto pong = c.receive();
  ASSERT_TRUE(pong);
  EXPECT_EQ(pong->type, mqtt::PacketType::kPingresp);
}

TEST_F(Mqtt, QosLevelsBothWaysAreTheMinimumOfPublishAndGrant) {
  MqttTestClient sub(port());
  ASSERT_TRUE(sub.connect("qsub"));
  EXPECT_EQ(sub.subscribe({{"q/0", 0}, {"q/1", 1}, {"q/2", 2}}),
            (std::vector<std::uint8_t>{0, 1, 2}));
  MqttTestClient pub(port());
  ASSERT_TRUE(pub.connect("qpub"));
  struct Case {
    const char* topic;
    std::uint8_t publishQos;
    std::uint8_t expectedQos;
  };
  const Case cases[] = {{"q/0", 2, 0}, {"q/1", 2, 1}, {"q/2", 2, 2}, {"q/2", 1, 1},
                        {"q/2", 0, 0}, {"q/1", 0, 0}, {"q/2", 2, 2}};
  int n = 0;
  for (const Case& c : cases) {
    const std::string payload = "m" + std::to_string(n++);
    ASSERT_TRUE(pub.publishAcked(c.topic, payload, c.publishQos)) << payload;
    auto got = sub.receivePublish();
    ASSERT_TRUE(got) << payload;
    EXPECT_EQ(got->topic, c.topic);
    EXPECT_EQ(got->payload, payload);
    EXPECT_EQ(got->qos, c.expectedQos) << payload;
    EXPECT_FALSE(got->retain);
    EXPECT_FALSE(got->dup);
    EXPECT_EQ(got->packetId != 0, c.expectedQos > 0);
  }
  EXPECT_TRUE(sub.silentFor(Millis(200)));
}

TEST_F(Mqtt, Qos2IsDeliveredExactlyOnceWhenThePublisherRetries) {
  MqttTestClient sub(port());
  ASSERT_TRUE(sub.connect("once-sub"));
  ASSERT_EQ(sub.subscribe("once/#", 2), (std::vector<std::uint8_t>{2}));
  MqttTestClient pub(port());
  ASSERT_TRUE(pub.connect("once-pub"));
  pub.publish("once/x", "only", 2, false, 77);
  auto rec = pub.receiveType(mqtt::PacketType::kPubrec);
  ASSERT_TRUE(rec);
  // The publisher did not see the PUBREC (as after a reconnect) and resends with DUP.
  pub.publish("once/x", "only", 2, false, 77, true);
  rec = pub.receiveType(mqtt::PacketType::kPubrec);
  ASSERT_TRUE(rec);
  EXPECT_EQ(rec->packetId(), 77);
  pub.ack(mqtt::PacketType::kPubrel, 77);
  auto comp = pub.receiveType(mqtt::PacketType::kPubcomp);
  ASSERT_TRUE(comp);
  auto got = sub.receivePublish();
  ASSERT_TRUE(got);
  EXPECT_EQ(got->payload, "only");
  EXPECT_TRUE(sub.silentFor(Millis(300))) << "QoS 2 delivered twice";
  // After PUBREL the id is free again: the same id now carries a new message.
  ASSERT_TRUE(pub.publishAcked("once/y", "again", 2));
  EXPECT_TRUE(sub.receivePublish());
}

TEST_F(Mqtt, RetainedMessagesKeepTheirQosAndCarryTheRetainFlag) {
  MqttTestClient pub(port());
  ASSERT_TRUE(pub.connect("rpub"));
  ASSERT_TRUE(pub.publishAcked("ret/a", "one", 1, true));
  ASSERT_TRUE(pub.publishAcked("ret/b", "zero", 0, true));
  MqttTestClient sub(port());
  ASSERT_TRUE(sub.connect("rsub"));
  ASSERT_EQ(sub.subscribe("ret/+", 2), (std::vector<std::uint8_t>{2}));
  std::map<std::string, OwnedPublish> got;
  for (int i = 0; i < 2; ++i) {
    auto p = sub.receivePublish();
    ASSERT_TRUE(p);
    got[p->topic] = *p;
  }
  EXPECT_EQ(got["ret/a"].payload, "one");
  EXPECT_EQ(got["ret/a"].qos, 1);
  EXPECT_TRUE(got["ret/a"].retain);
  EXPECT_EQ(got["ret/b"].qos, 0);
  EXPECT_TRUE(got["ret/b"].retain);
  // Live delivery of a retained publish: retain flag 0 for an established subscription.
  ASSERT_TRUE(pub.publishAcked("ret/a", "two", 1, true));
  auto live = sub.receivePublish();
  ASSERT_TRUE(live);
  EXPECT_FALSE(live->retain);
  // A zero-length retained publish deletes (and is delivered as an ordinary empty message).
  ASSERT_TRUE(pub.publishAcked("ret/a", "", 0, true));
  auto empty = sub.receivePublish();
  ASSERT_TRUE(empty);
  EXPECT_EQ(empty->payload, "");
  MqttTestClient late(port());
  ASSERT_TRUE(late.connect("rlate"));
  ASSERT_EQ(late.subscribe("ret/#", 0), (std::vector<std::uint8_t>{0}));
  auto only = late.receivePublish();
  ASSERT_TRUE(only);
  EXPECT_EQ(only->topic, "ret/b");
  EXPECT_TRUE(late.silentFor(Millis(200)));
}

TEST_F(Mqtt, SubackRefusesBadFiltersOneByOne) {
  MqttTestClient c(port());
  ASSERT_TRUE(c.connect("filters"));
  EXPECT_EQ(c.subscribe({{"ok/+", 1}, {"bad/#/x", 1}, {"a+", 0}, {"#", 2}, {"", 0}}),
            (std::vector<std::uint8_t>{1, mqtt::kSubackFailure, mqtt::kSubackFailure, 2,
                                       mqtt::kSubackFailure}));
}

TEST_F(Mqtt, OverlappingSubscriptionsGiveOneDeliveryAtTheHighestQos) {
  MqttTestClient sub(port());
  ASSERT_TRUE(sub.connect("overlap"));
  ASSERT_EQ(sub.subscribe({{"o/#", 0}, {"o/+", 2}, {"o/x", 1}}),
            (std::vector<std::uint8_t>{0, 2, 1}));
  MqttTestClient pub(port());
  ASSERT_TRUE(pub.connect("overlap-pub"));
  ASSERT_TRUE(pub.publishAcked("o/x", "once", 2));
  auto got = sub.receivePublish();
  ASSERT_TRUE(got);
  EXPECT_EQ(got->qos, 2);
  EXPECT_TRUE(sub.silentFor(Millis(200)));
  ASSERT_TRUE(sub.unsubscribe({"o/+", "o/x", "never/subscribed"}));
  ASSERT_TRUE(pub.publishAcked("o/x", "now qos0", 2));
  got = sub.receivePublish();
  ASSERT_TRUE(got);
  EXPECT_EQ(got->qos, 0);
}

TEST_F(Mqtt, DollarTopicsAreNotMatchedByLeadingWildcards) {
  MqttTestClient sub(port());
  ASSERT_TRUE(sub.connect("dollar"));
  ASSERT_EQ(sub.subscribe({{"#", 0}, {"+/x", 0}}), (std::vector<std::uint8_t>{0, 0}));
  MqttTestClient pub(port());
  ASSERT_TRUE(pub.connect("dollar-pub"));
  pub.publish("$SYS/x", "hidden");
  pub.publish("sys/x", "seen");
  auto got = sub.receivePublish();
  ASSERT_TRUE(got);
  EXPECT_EQ(got->topic, "sys/x");
  EXPECT_TRUE(sub.silentFor(Millis(200)));
}

TEST_F(Mqtt, WillIsPublishedOnAbnormalCloseOnly) {
  MqttTestClient watcher(port());
  ASSERT_TRUE(watcher.connect("watcher"));
  ASSERT_EQ(watcher.subscribe("will/#", 1), (std::vector<std::uint8_t>{1}));
  mqtt::Connect will;
  will.willFlag = true;
  will.willTopic = "will/dying";
  will.willPayload = "gone";
  will.willQos = 1;
  will.willRetain = true;
  {
    MqttTestClient dying(port());
    ASSERT_TRUE(dying.connect("dying", true, 60, &will));
    dying.closeAbruptly();
  }
  auto got = watcher.receivePublish();
  ASSERT_TRUE(got);
  EXPECT_EQ(got->topic, "will/dying");
  EXPECT_EQ(got->payload, "gone");
  EXPECT_EQ(got->qos, 1);
  {
    MqttTestClient polite(port());
    will.willTopic = "will/polite";
    ASSERT_TRUE(polite.connect("polite", true, 60, &will));
    polite.disconnect();
    EXPECT_TRUE(polite.closedByBroker());
  }
  EXPECT_TRUE(watcher.silentFor(Millis(300))) << "DISCONNECT must discard the will";
  // The retained will is there for late subscribers.
  MqttTestClient late(port());
  ASSERT_TRUE(late.connect("late"));
  ASSERT_EQ(late.subscribe("will/#", 0), (std::vector<std::uint8_t>{0}));
  auto retained = late.receivePublish();
  ASSERT_TRUE(retained);
  EXPECT_EQ(retained->topic, "will/dying");
  EXPECT_TRUE(retained->retain);
}

TEST(MqttSessions, PersistentSessionQueuesWhileOfflineAndResumes) {
  // One worker: a publish is delivered (or dropped, for QoS 0 to an offline session) before the
  // next request is read, so what is stored while offline is deterministic.
  BrokerProcess broker({"--mqtt-port", "auto", "--workers", "1"});
  const auto port = [&] { return broker.mqttPort(); };
  {
    MqttTestClient c(port());
    auto connack = c.connect("durable", false);
    ASSERT_TRUE(connack);
    EXPECT_FALSE(connack->sessionPresent);
    ASSERT_EQ(c.subscribe("dur/#", 1), (std::vector<std::uint8_t>{1}));
    c.disconnect();
    EXPECT_TRUE(c.closedByBroker());
  }
  MqttTestClient pub(port());
  ASSERT_TRUE(pub.connect("dur-pub"));
  for (int i = 0; i < 5; ++i)
    ASSERT_TRUE(pub.publishAcked("dur/x", std::to_string(i), 1));
  pub.publish("dur/x", "qos0 is not stored", 0);
  ASSERT_TRUE(pub.publishAcked("dur/sync", "s", 1));  // acknowledged after the QoS 0 one was routed
  MqttTestClient back(port());
  auto connack = back.connect("durable", false);
  ASSERT_TRUE(connack);
  EXPECT_TRUE(connack->sessionPresent);
  for (int i = 0; i < 5; ++i) {
    auto got = back.receivePublish();
    ASSERT_TRUE(got) << i;
    EXPECT_EQ(got->payload, std::to_string(i));
    EXPECT_EQ(got->qos, 1);
  }
  auto sync = back.receivePublish();
  ASSERT_TRUE(sync);
  EXPECT_EQ(sync->payload, "s");
  EXPECT_TRUE(back.silentFor(Millis(200)));
  // The subscription survived too.
  ASSERT_TRUE(pub.publishAcked("dur/live", "live", 1));
  auto live = back.receivePublish();
  ASSERT_TRUE(live);
  EXPECT_EQ(live->payload, "live");
  back.disconnect();
  EXPECT_TRUE(back.closedByBroker());
  // A clean-session connect discards the stored session.
  MqttTestClient clean(port());
  connack = clean.connect("durable", true);
  ASSERT_TRUE(connack);
  EXPECT_FALSE(connack->sessionPresent);
  ASSERT_TRUE(pub.publishAcked("dur/x", "not for you", 1));
  EXPECT_TRUE(clean.silentFor(Millis(200)));
}

TEST_F(Mqtt, UnacknowledgedMessagesAreResentWithDupAfterReconnect) {
  MqttTestClient pub(port());
  ASSERT_TRUE(pub.connect("dup-pub"));
  std::uint16_t firstId = 0;
  {
    MqttTestClient c(port());
    ASSERT_TRUE(c.connect("dupper", false));
    ASSERT_EQ(c.subscribe("dup/#", 2), (std::vector<std::uint8_t>{2}));
    ASSERT_TRUE(pub.publishAcked("dup/1", "q1", 1));
    ASSERT_TRUE(pub.publishAcked("dup/2", "q2", 2));
    auto one = c.receivePublish(false);  // received, never acknowledged
    auto two = c.receivePublish(false);
    ASSERT_TRUE(one && two);
    EXPECT_FALSE(one->dup);
    firstId = one->packetId;
    c.closeAbruptly();
  }
  MqttTestClient back(port());
  auto connack = back.connect("dupper", false);
  ASSERT_TRUE(connack && connack->sessionPresent);
  auto one = back.receivePublish();
  auto two = back.receivePublish();
  ASSERT_TRUE(one && two);
  EXPECT_TRUE(one->dup);
  EXPECT_TRUE(two->dup);
  EXPECT_EQ(one->packetId, firstId);
  EXPECT_EQ(one->payload, "q1");
  EXPECT_EQ(two->payload, "q2");
  EXPECT_TRUE(back.silentFor(Millis(200)));
}

TEST_F(Mqtt, InflightWindowHoldsBackTheRest) {
  BrokerProcess small({"--mqtt-port", "auto", "--max-inflight", "2"});
  MqttTestClient sub(small.mqttPort());
  ASSERT_TRUE(sub.connect("window"));
  ASSERT_EQ(sub.subscribe("w/#", 1), (std::vector<std::uint8_t>{1}));
  MqttTestClient pub(small.mqttPort());
  ASSERT_TRUE(pub.connect("window-pub"));
  for (int i = 0; i < 5; ++i)
    ASSERT_TRUE(pub.publishAcked("w/x", std::to_string(i), 1));
  auto a = sub.receivePublish(false);
  auto b = sub.receivePublish(false);
  ASSERT_TRUE(a && b);
  EXPECT_TRUE(sub.silentFor(Millis(300))) << "more than --max-inflight unacknowledged";
  sub.ack(mqtt::PacketType::kPuback, a->packetId);
  auto c = sub.receivePublish(false);
  ASSERT_TRUE(c);
  EXPECT_EQ(c->payload, "2");
  sub.ack(mqtt::PacketType::kPuback, b->packetId);
  sub.ack(mqtt::PacketType::kPuback, c->packetId);
  for (const char* expected : {"3", "4"}) {
    auto next = sub.receivePublish();
    ASSERT_TRUE(next);
    EXPECT_EQ(next->payload, expected);
  }
}

TEST_F(Mqtt, OfflineQueueIsBoundedAndOverflowIsCounted) {
  BrokerProcess small({"--mqtt-port", "auto", "--max-queued-messages", "3"});
  {
    MqttTestClient c(small.mqttPort());
    ASSERT_TRUE(c.connect("bounded", false));
    ASSERT_EQ(c.subscribe("b/#", 1), (std::vector<std::uint8_t>{1}));
    c.disconnect();
    EXPECT_TRUE(c.closedByBroker());
  }
  MqttTestClient pub(small.mqttPort());
  ASSERT_TRUE(pub.connect("bounded-pub"));
  for (int i = 0; i < 10; ++i)
    ASSERT_TRUE(pub.publishAcked("b/x", std::to_string(i), 1));
  MqttTestClient back(small.mqttPort());
  ASSERT_TRUE(back.connect("bounded", false));
  for (const char* expected : {"0", "1", "2"}) {
    auto got = back.receivePublish();
    ASSERT_TRUE(got);
    EXPECT_EQ(got->payload, expected);
  }
  EXPECT_TRUE(back.silentFor(Millis(200)));
  LineClient line(small.port(), "stats");
  const std::string stats = line.request.request("STATS");
  EXPECT_NE(stats.find("\"messages_dropped\":7"), std::string::npos) << stats;
}

TEST_F(Mqtt, TakeoverClosesTheOldConnection) {
  MqttTestClient first(port());
  ASSERT_TRUE(first.connect("twin"));
  MqttTestClient second(port());
  ASSERT_TRUE(second.connect("twin"));
  EXPECT_TRUE(first.closedByBroker());
  second.ping();
  auto pong = second.receive();
  ASSERT_TRUE(pong);
  EXPECT_EQ(pong->type, mqtt::PacketType::kPingresp);
}

TEST_F(Mqtt, KeepAliveExpiryClosesAndPublishesTheWill) {
  MqttTestClient watcher(port());
  ASSERT_TRUE(watcher.connect("ka-watch"));
  ASSERT_EQ(watcher.subscribe("ka/#", 0), (std::vector<std::uint8_t>{0}));
  mqtt::Connect will;
  will.willFlag = true;
  will.willTopic = "ka/silent";
  will.willPayload = "timed out";
  MqttTestClient silent(port());
  ASSERT_TRUE(silent.connect("silent", true, 1, &will));  // keep-alive 1 s: closed after 1.5 s
  MqttTestClient chatty(port());
  ASSERT_TRUE(chatty.connect("chatty", true, 1));
  for (int i = 0; i < 6; ++i) {  // pings every 0.5 s keep it alive
    std::this_thread::sleep_for(Millis(500));
    chatty.ping();
    ASSERT_TRUE(chatty.receiveType(mqtt::PacketType::kPingresp));
  }
  EXPECT_TRUE(silent.closedByBroker(Millis(1000)));
  auto got = watcher.receivePublish();
  ASSERT_TRUE(got);
  EXPECT_EQ(got->payload, "timed out");
  EXPECT_FALSE(chatty.closed());
}

TEST_F(Mqtt, ConnackReturnCodes) {
  {  // a level after 5.0: CONNACK 0x01, then closed
    MqttTestClient c(port());
    c.sendRaw(std::string("\x10\x0d\x00\x04MQTT\x06\x02\x00\x3c\x00\x01x", 15));
    auto p = c.receive();
    ASSERT_TRUE(p);
    EXPECT_EQ(p->connack().returnCode, mqtt::ConnectReturnCode::kUnacceptableProtocolVersion);
    EXPECT_TRUE(c.closedByBroker());
  }
  {  // empty client id with clean session 0: 0x02
    MqttTestClient c(port());
    auto connack = c.connect("", false);
    ASSERT_TRUE(connack);
    EXPECT_EQ(connack->returnCode, mqtt::ConnectReturnCode::kIdentifierRejected);
    EXPECT_TRUE(c.closedByBroker());
  }
  {  // empty client id with clean session 1: an id is assigned
    MqttTestClient c(port());
    auto connack = c.connect("", true);
    ASSERT_TRUE(connack);
    EXPECT_EQ(connack->returnCode, mqtt::ConnectReturnCode::kAccepted);
  }
  {  // MQTT 3.1 ("MQIsdp", level 3) is accepted
    MqttTestClient c(port());
    mqtt::Connect v31;
    v31.protocolName = "MQIsdp";
    v31.protocolLevel = 3;
    auto connack = c.connect("old-client", true, 60, &v31);
    ASSERT_TRUE(connack);
    EXPECT_EQ(connack->returnCode, mqtt::ConnectReturnCode::kAccepted);
  }
}

TEST_F(Mqtt, ProtocolViolationsCloseTheConnection) {
  struct Case {
    const char* what;
    std::string bytes;
    bool afterConnect;
  };
  const std::vector<Case> cases = {
      {"packet before CONNECT", std::string("\xC0\x00", 2), false},
      {"second CONNECT", std::string("\x10\x0c\x00\x04MQTT\x04\x02\x00\x3c\x00\x00", 14), true},
      {"remaining length of 5 bytes", std::string("\x30\xFF\xFF\xFF\xFF\x01", 6), true},
      {"wildcard in a topic name", std::string("\x30\x05\x00\x03\x61/#", 7), true},
      {"invalid UTF-8 in a topic name", std::string("\x30\x04\x00\x02\xC0\xAF", 6), true},
      {"SUBSCRIBE with reserved flags 0", std::string("\x80\x06\x00\x01\x00\x01\x61\x00", 8), true},
      {"PUBLISH with QoS 3", std::string("\x36\x05\x00\x01\x61\x00\x01", 7), true},
      {"CONNECT reserved flag", std::string("\x10\x0c\x00\x04MQTT\x04\x03\x00\x3c\x00\x00", 14),
       false},
      {"garbage", std::string("\xFF\xFF\xFF\xFF", 4), false},
  };
  for (const Case& c : cases) {
    MqttTestClient client(port());
    if (c.afterConnect) {
      ASSERT_TRUE(client.connect("violator")) << c.what;
    }
    client.sendRaw(c.bytes);
    EXPECT_TRUE(client.closedByBroker()) << c.what;
  }
  // The broker is still fine.
  MqttTestClient ok(port());
  EXPECT_TRUE(ok.connect("still-ok"));
}

TEST(MqttLimits, MaxPacketSizeIsEnforced) {
  BrokerProcess broker({"--mqtt-port", "auto", "--max-packet-size", "1k"});
  MqttTestClient c(broker.mqttPort());
  ASSERT_TRUE(c.connect("big"));
  ASSERT_TRUE(c.publishAcked("small", std::string(900, 's'), 1));
  c.publish("big", std::string(2000, 'b'), 1);
  EXPECT_TRUE(c.closedByBroker());
}

TEST(MqttCrossProtocol, LineAndMqttShareOneTopicSpace) {
  BrokerProcess broker({"--mqtt-port", "auto", "--workers", "2"});
  LineClient line(broker.port(), "line-side");
  MqttTestClient mq(broker.mqttPort());
  ASSERT_TRUE(mq.connect("mqtt-side"));
  ASSERT_EQ(line.request.request("SUBSCRIBE@x/*/in"), "SUBACK");
  ASSERT_EQ(mq.subscribe("x/+/out", 2), (std::vector<std::uint8_t>{2}));

  // Line -> MQTT: QoS 0.
  EXPECT_EQ(line.request.request("PUBLISH@x/a/out@from line"), "PUBACK");
  auto got = mq.receivePublish();
  ASSERT_TRUE(got);
  EXPECT_EQ(got->topic, "x/a/out");
  EXPECT_EQ(got->payload, "from line");
  EXPECT_EQ(got->qos, 0);

  // MQTT -> line.
  ASSERT_TRUE(mq.publishAcked("x/b/in", "from mqtt", 1));
  EXPECT_EQ(line.push.readLine().value_or("<none>"), "MESSAGE@x/b/in@from mqtt");
  // A payload the line protocol cannot frame is not delivered to line sessions (and counted).
  ASSERT_TRUE(mq.publishAcked("x/c/in", "two\nlines", 1));
  ASSERT_TRUE(mq.publishAcked("x/d/in", "after", 1));
  EXPECT_EQ(line.push.readLine().value_or("<none>"), "MESSAGE@x/d/in@after");

  // Retained messages cross over too, both ways.
  EXPECT_EQ(line.request.request("PUBLISH@x/r/out@kept@retain"), "PUBACK");
  auto live = mq.receivePublish();  // x/+/out matches: the live copy, retain flag 0
  ASSERT_TRUE(live);
  EXPECT_EQ(live->payload, "kept");
  EXPECT_FALSE(live->retain);
  ASSERT_TRUE(mq.publishAcked("x/r/in", "mqtt kept", 1, true));
  EXPECT_EQ(line.push.readLine().value_or("<none>"), "MESSAGE@x/r/in@mqtt kept");
  const std::string list = line.request.request("LIST@x/r/#");
  ASSERT_EQ(list.rfind("LIST@", 0), 0u) << list;
  EXPECT_EQ(nlohmann::json::parse(list.substr(5)),
            nlohmann::json({{"x/r/in", "mqtt kept"}, {"x/r/out", "kept"}}));
  MqttTestClient late(broker.mqttPort());
  ASSERT_TRUE(late.connect("late-mqtt"));
  ASSERT_EQ(late.subscribe("x/r/out", 1), (std::vector<std::uint8_t>{1}));
  auto retained = late.receivePublish();
  ASSERT_TRUE(retained);
  EXPECT_EQ(retained->payload, "kept");
  EXPECT_EQ(retained->qos, 0);
  EXPECT_TRUE(retained->retain);
}

}  // namespace
}  // namespace tern::test
