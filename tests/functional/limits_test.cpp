// The limits of docs/limits.md, each reached on purpose against the real broker: the client at the
// limit gets the documented answer, the STATS counter named there moves, memory stays within a
// stated bound, and other clients stay served.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "harness.hpp"
#include "mqtt_client.hpp"

namespace tern::test {
namespace {

bool startsWith(const std::string& s, std::string_view prefix) {
  return s.rfind(prefix, 0) == 0;
}

nlohmann::json stats(LineSocket& s) {
  const std::string reply = s.request("STATS");
  EXPECT_TRUE(startsWith(reply, "STATS@")) << reply;
  return nlohmann::json::parse(reply.substr(6), nullptr, false);
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

// The RSS bounds below are about what the broker holds. Under AddressSanitizer freed blocks stay
// in its quarantine (256 MB by default) and count in RSS; the brokers of those tests get a small
// one (the rest of the suite keeps the default and catches use-after-free with it).
class SmallAsanQuarantine {
 public:
  SmallAsanQuarantine() {
    const char* options = std::getenv("ASAN_OPTIONS");
    if (options != nullptr) saved_ = options;
    const std::string small = saved_ + (saved_.empty() ? "" : ":") + "quarantine_size_mb=4";
    ::setenv("ASAN_OPTIONS", small.c_str(), 1);
  }
  ~SmallAsanQuarantine() {
    if (saved_.empty()) {
      ::unsetenv("ASAN_OPTIONS");
    } else {
      ::setenv("ASAN_OPTIONS", saved_.c_str(), 1);
    }
  }

 private:
  std::string saved_;
};

// Waits (bounded) until `condition` holds; returns whether it did.
template <typename Condition>
bool eventually(Condition condition, Millis timeout = kDefaultTimeout) {
  const std::int64_t deadline = nowMillis() + timeout.count();
  while (!condition()) {
    if (nowMillis() >= deadline) return false;
    std::this_thread::sleep_for(Millis(20));
  }
  return true;
}

TEST(Limits, MaxSessionsRefusesNewSessionsAndRecovers) {
  BrokerProcess broker({"--max-sessions", "3", "--mqtt-port", "auto", "--workers", "2"});
  LineClient a(broker.port(), "s-a");
  LineClient b(broker.port(), "s-b");
  LineClient c(broker.port(), "s-c");
  LineSocket refused(broker.port());
  EXPECT_TRUE(startsWith(refused.request("CONNECT@s-d"), "ERROR@server-busy@"));
  EXPECT_TRUE(startsWith(refused.request("CONNECT"), "ERROR@server-busy@"));
  MqttTestClient mqtt(broker.mqttPort());
  auto connack = mqtt.connect("s-mqtt");
  ASSERT_TRUE(connack);
  EXPECT_EQ(connack->returnCode, mqtt::ConnectReturnCode::kServerUnavailable);
  EXPECT_TRUE(mqtt.closedByBroker());
  // A takeover replaces a session: it needs no room.
  LineClient again(broker.port(), "s-a");
  EXPECT_EQ(again.request.request("PING"), "PONG");
  EXPECT_EQ(stats(c.request)["limits"]["max_sessions"], 3);
  // Once a session ends there is room again, on the socket that was refused.
  EXPECT_EQ(b.request.request("DISCONNECT"), "DISCONNACK");
  EXPECT_TRUE(eventually([&] { return startsWith(refused.request("CONNECT@s-d"), "CONNACK@"); }));
}

TEST(Limits, UnauthenticatedSocketsPerAddressAreCapped) {
  BrokerProcess broker({"--max-unauthenticated-per-address", "3"});
  const auto admitted = [](LineSocket& s) {
    return s.request("PING").substr(0, 20) == "ERROR@not-connected@";
  };
  std::vector<LineSocket> idle;  // connected, never CONNECTed
  for (int i = 0; i < 3; ++i) {
    idle.emplace_back(broker.port());
    EXPECT_TRUE(admitted(idle.back()));
  }
  LineSocket fourth(broker.port());
  EXPECT_TRUE(startsWith(fourth.readLine().value_or("<none>"),
                         "ERROR@server-busy@too many connections from your address without "
                         "CONNECT (--max-unauthenticated-per-address)"));
  EXPECT_TRUE(fourth.closedByPeer());
  // Another address has its own count.
  LineSocket other(broker.port(), "127.0.0.2");
  EXPECT_TRUE(admitted(other));
  // A socket that authenticates (CONNECT accepted) no longer counts: room for one more, and
  // sessions themselves are not limited by it.
  EXPECT_TRUE(startsWith(idle[0].request("CONNECT@u-1"), "CONNACK@"));
  EXPECT_TRUE(eventually([&] {
    LineSocket next(broker.port());
    return admitted(next);
  }));
  // Once the idle sockets are gone, whole sessions (three sockets each, CONNECTed one after the
  // other) come in one after another without reaching the cap.
  idle.clear();
  std::vector<std::unique_ptr<LineClient>> sessions;
  ASSERT_TRUE(eventually([&] {
    try {
      sessions.push_back(std::make_unique<LineClient>(broker.port(), "u-s0"));
      return true;
    } catch (const std::exception&) {
      return false;  // the closed idle sockets are not all released yet
    }
  }));
  for (int i = 1; i < 5; ++i)
    sessions.push_back(std::make_unique<LineClient>(broker.port(), "u-s" + std::to_string(i)));
  EXPECT_EQ(sessions.back()->request.request("PING"), "PONG");
  EXPECT_GE(stats(sessions.back()->request)["limits"]["max_unauthenticated_per_address"], 1);
}

TEST(Limits, MaxConnectionsAndPerAddressRefuseWithAnAnswer) {
  BrokerProcess broker({"--max-connections", "5", "--max-connections-per-address", "3"});
  const auto admitted = [](LineSocket& s) {
    return s.request("PING").substr(0, 20) == "ERROR@not-connected@";
  };
  std::vector<LineSocket> first;  // from 127.0.0.1
  for (int i = 0; i < 3; ++i) {
    first.emplace_back(broker.port());
    EXPECT_TRUE(admitted(first.back()));
  }
  LineSocket fourth(broker.port());
  EXPECT_TRUE(startsWith(fourth.readLine().value_or("<none>"),
                         "ERROR@server-busy@too many connections from your address"));
  EXPECT_TRUE(fourth.closedByPeer());
  std::vector<LineSocket> second;  // from 127.0.0.2: its own share, up to the total
  for (int i = 0; i < 2; ++i) {
    second.emplace_back(broker.port(), "127.0.0.2");
    EXPECT_TRUE(admitted(second.back()));
  }
  LineSocket sixth(broker.port(), "127.0.0.2");
  EXPECT_TRUE(startsWith(sixth.readLine().value_or("<none>"),
                         "ERROR@server-busy@too many connections (--max-connections)"));
  EXPECT_TRUE(sixth.closedByPeer());
  // Closing sockets makes room (counted once the worker has closed them too).
  first.clear();
  second.clear();
  EXPECT_TRUE(eventually([&] {
    LineSocket retry(broker.port());
    return admitted(retry);
  }));
  std::unique_ptr<LineClient> counter;
  ASSERT_TRUE(eventually([&] {
    try {
      counter = std::make_unique<LineClient>(broker.port(), "counter");
      return true;
    } catch (const std::exception&) {
      return false;
    }
  }));
  const nlohmann::json s = stats(counter->request);
  // At least the two refusals above (retries while closed sockets were being released may add).
  EXPECT_GE(s["limits"]["max_connections_per_address"], 1);
  EXPECT_GE(s["limits"]["max_connections"], 1);
}

TEST(Limits, MaxSubscriptionsRefusesMoreFilters) {
  BrokerProcess broker({"--max-subscriptions", "3", "--mqtt-port", "auto"});
  LineClient line(broker.port(), "subs-line");
  for (const char* filter : {"a", "b", "c/#"})
    EXPECT_EQ(line.request.request(std::string("SUBSCRIBE@") + filter), "SUBACK");
  EXPECT_TRUE(startsWith(line.request.request("SUBSCRIBE@d"), "ERROR@too-many-subscriptions@"));
  EXPECT_EQ(line.request.request("SUBSCRIBE@a"), "SUBACK");  // already held: no new filter
  EXPECT_EQ(line.request.request("UNSUBSCRIBE@b"), "UNSUBACK");
  EXPECT_EQ(line.request.request("SUBSCRIBE@d"), "SUBACK");
  MqttTestClient mqtt(broker.mqttPort());
  ASSERT_TRUE(mqtt.connect("subs-mqtt"));
  EXPECT_EQ(mqtt.subscribe({{"m/1", 1}, {"m/2", 0}, {"m/1", 2}, {"m/3", 0}, {"m/4", 1}}),
            (std::vector<std::uint8_t>{1, 0, 2, 0, mqtt::kSubackFailure}));
  EXPECT_EQ(stats(line.request)["limits"]["max_subscriptions"], 2);
}

TEST(Limits, FullRetainedStoreRefusesNewTopics) {
  BrokerProcess broker({"--max-retained-messages", "2", "--mqtt-port", "auto"});
  LineClient line(broker.port(), "ret-line");
  EXPECT_EQ(line.request.request("SUBSCRIBE@ret/#"), "SUBACK");
  EXPECT_EQ(line.request.request("PUBLISH@ret/a@1@retain"), "PUBACK");
  EXPECT_EQ(line.request.request("PUBLISH@ret/b@2@retain"), "PUBACK");
  // The line protocol refuses the whole publish, with a reason: nothing is delivered.
  EXPECT_TRUE(startsWith(line.request.request("PUBLISH@ret/c@3@retain"), "ERROR@server-busy@"));
  EXPECT_EQ(line.push.readLine().value_or("<none>"), "MESSAGE@ret/a@1");
  EXPECT_EQ(line.push.readLine().value_or("<none>"), "MESSAGE@ret/b@2");
  // Replacing an existing topic is allowed.
  EXPECT_EQ(line.request.request("PUBLISH@ret/a@1b@retain"), "PUBACK");
  EXPECT_EQ(line.push.readLine().value_or("<none>"), "MESSAGE@ret/a@1b");
  // MQTT 3.1.1 cannot be told: the message is delivered live but not retained.
  MqttTestClient mqtt(broker.mqttPort());
  ASSERT_TRUE(mqtt.connect("ret-mqtt"));
  ASSERT_TRUE(mqtt.publishAcked("ret/d", "4", 1, true));
  EXPECT_EQ(line.push.readLine().value_or("<none>"), "MESSAGE@ret/d@4");
  const std::string list = line.request.request("LIST@ret/#");
  EXPECT_TRUE(list == R"(LIST@{"ret/a":"1b","ret/b":"2"})" ||
              list == R"(LIST@{"ret/b":"2","ret/a":"1b"})")
      << list;
  EXPECT_EQ(stats(line.request)["limits"]["max_retained"], 2);
}

TEST(Limits, FrameTimeoutClosesConnectionsWhoseFrameNeverEnds) {
  BrokerProcess broker({"--frame-timeout", "1", "--mqtt-port", "auto"});
  LineClient slow(broker.port(), "slow-frame");
  ASSERT_TRUE(slow.request.sendRaw("PUBLISH@t@a frame without its line feed"));
  MqttTestClient mqtt(broker.mqttPort());
  ASSERT_TRUE(mqtt.connect("slow-packet", true, 0));  // keep-alive 0: only the frame timeout
  mqtt::Publish big;
  big.topic = "t";
  const std::string payload(512 * 1024, 'p');  // under --max-packet-size
  big.payload = payload;
  std::string bytes;
  mqtt::appendPublish(bytes, big);
  ASSERT_TRUE(mqtt.sendRaw(std::string_view(bytes).substr(0, bytes.size() - 1)));  // all but one
  LineClient healthy(broker.port(), "fast-frames");
  for (int i = 0; i < 10; ++i) {  // complete frames, slowly: never timed out
    EXPECT_EQ(healthy.request.request("PING"), "PONG");
    std::this_thread::sleep_for(Millis(250));
  }
  EXPECT_TRUE(slow.request.closedByPeer());
  EXPECT_TRUE(mqtt.closedByBroker());
  EXPECT_EQ(stats(healthy.request)["limits"]["frame_timeout"], 2);
}

TEST(Limits, MqttKeepAliveCountsPacketsNotBytes) {
  BrokerProcess broker({"--mqtt-port", "auto"});
  MqttTestClient trickle(broker.mqttPort());
  ASSERT_TRUE(trickle.connect("trickle", true, 1));  // expires 1.5 s after the last packet
  mqtt::Publish p;
  p.topic = "t";
  const std::string payload(4096, 'x');
  p.payload = payload;
  std::string bytes;
  mqtt::appendPublish(bytes, p);
  bool closed = false;
  for (std::size_t i = 0; i < 40 && !closed; ++i) {  // one byte every 100 ms: 4 s of bytes
    closed = !trickle.sendRaw(bytes.substr(i, 1));
    std::this_thread::sleep_for(Millis(100));
  }
  EXPECT_TRUE(trickle.closedByBroker());
  LineClient line(broker.port(), "observer");
  EXPECT_EQ(stats(line.request)["limits"]["keep_alive"], 1);
}

TEST(Limits, OfflinePersistentSessionsExpire) {
  BrokerProcess broker({"--mqtt-port", "auto", "--session-expiry", "1"});
  {
    MqttTestClient c(broker.mqttPort());
    ASSERT_TRUE(c.connect("expiring", false));
    ASSERT_EQ(c.subscribe("e/#", 1), (std::vector<std::uint8_t>{1}));
    c.disconnect();
  }
  {
    MqttTestClient c(broker.mqttPort());  // inside the interval: resumed
    auto connack = c.connect("expiring", false);
    ASSERT_TRUE(connack);
    EXPECT_TRUE(connack->sessionPresent);
    c.disconnect();
  }
  LineClient line(broker.port(), "observer");
  EXPECT_TRUE(eventually([&] { return stats(line.request)["limits"]["session_expiry"] == 1; },
                         scaled(Millis(8000))));
  MqttTestClient late(broker.mqttPort());
  auto connack = late.connect("expiring", false);
  ASSERT_TRUE(connack);
  EXPECT_FALSE(connack->sessionPresent);
}

TEST(Limits, Qos2IdsAwaitingReleaseAreBounded) {
  BrokerProcess broker({"--mqtt-port", "auto", "--max-awaiting-rel", "5"});
  MqttTestClient c(broker.mqttPort());
  ASSERT_TRUE(c.connect("hoarder"));
  for (std::uint16_t id = 1; id <= 5; ++id) {
    c.publish("q2", "x", 2, false, id);
    auto rec = c.receiveType(mqtt::PacketType::kPubrec);
    ASSERT_TRUE(rec);
  }
  c.ack(mqtt::PacketType::kPubrel, 3);  // releasing one makes room for one
  ASSERT_TRUE(c.receiveType(mqtt::PacketType::kPubcomp));
  c.publish("q2", "x", 2, false, 6);
  ASSERT_TRUE(c.receiveType(mqtt::PacketType::kPubrec));
  c.publish("q2", "x", 2, false, 7);  // the sixth unreleased id
  EXPECT_TRUE(c.closedByBroker());
  LineClient line(broker.port(), "observer");
  EXPECT_EQ(stats(line.request)["limits"]["max_awaiting_rel"], 1);
}

TEST(Limits, SysTopicsAreTheBrokers) {
  BrokerProcess broker({"--mqtt-port", "auto", "--sys-interval", "3600"});
  LineClient line(broker.port(), "sys-line");
  EXPECT_EQ(line.request.request("SUBSCRIBE@$SYS/#"), "SUBACK");
  EXPECT_TRUE(
      startsWith(line.request.request("PUBLISH@$SYS/broker/uptime@0@retain"), "ERROR@bad-topic@"));
  EXPECT_TRUE(startsWith(line.request.request("PUBLISH@$SYS@x"), "ERROR@bad-topic@"));
  EXPECT_EQ(line.request.request("PUBLISH@$SYSTEM/x@mine"), "PUBACK");  // only $SYS itself
  MqttTestClient mqtt(broker.mqttPort());
  ASSERT_TRUE(mqtt.connect("sys-mqtt"));
  ASSERT_TRUE(mqtt.publishAcked("$SYS/broker/version", "forged", 1, true));  // acked, dropped
  // What the subscriber got is the broker's own $SYS values (published once at start-up, not
  // again within the hour), never a forged one; so is what is retained.
  int pushes = 0;
  while (auto push = line.push.readLine(scaled(Millis(300)))) {
    EXPECT_EQ(push->find("forged"), std::string::npos) << *push;
    EXPECT_NE(*push, "MESSAGE@$SYS/broker/uptime@0") << *push;
    ++pushes;
  }
  EXPECT_EQ(pushes, 27);  // every $SYS topic once
  EXPECT_EQ(line.request.request("LIST@$SYS/broker/version"),
            "LIST@{\"$SYS/broker/version\":\"tern version " TERN_VERSION "\"}");
  EXPECT_EQ(line.request.request("LIST@$SYS/broker/uptime"),
            "LIST@{\"$SYS/broker/uptime\":\"0 seconds\"}");
  mqtt::Connect will;
  will.willFlag = true;
  will.willTopic = "$SYS/broker/clients/connected";
  will.willPayload = "0";
  MqttTestClient willer(broker.mqttPort());
  auto connack = willer.connect("sys-will", true, 60, &will);
  ASSERT_TRUE(connack);
  EXPECT_EQ(connack->returnCode, mqtt::ConnectReturnCode::kNotAuthorized);
  EXPECT_EQ(stats(line.request)["limits"]["sys_topic"], 4);
}

// Finding 5: offline MQTT queues are bounded in bytes, not only in messages. 3 sessions x 200 x
// 256 KiB (150 MB) once took all of it; each session now holds at most --max-queued-bytes.
TEST(Limits, OfflineQueuesAreBoundedInBytes) {
  SmallAsanQuarantine quarantine;
  BrokerProcess broker({"--mqtt-port", "auto", "--max-queued-bytes", "2M"});
  for (const char* id : {"off-1", "off-2", "off-3"}) {
    MqttTestClient c(broker.mqttPort());
    ASSERT_TRUE(c.connect(id, false));
    ASSERT_EQ(c.subscribe("big/#", 1), (std::vector<std::uint8_t>{1}));
    c.disconnect();
  }
  const long before = rssKiB(broker.pid());
  MqttTestClient pub(broker.mqttPort());
  ASSERT_TRUE(pub.connect("big-pub"));
  const std::string payload(256 * 1024, 'q');
  for (int i = 0; i < 200; ++i)
    ASSERT_TRUE(pub.publishAcked("big/x", payload, 1)) << i;
  const long grown = rssKiB(broker.pid()) - before;
  EXPECT_LT(grown, 24 * 1024) << "KiB of RSS for 3 offline queues bounded at 2 MiB each";
  LineClient line(broker.port(), "observer");
  const nlohmann::json s = stats(line.request);
  EXPECT_GT(s["drops"]["queue_full"], 3 * 150);
  // What was queued is delivered when a session comes back.
  MqttTestClient back(broker.mqttPort());
  auto connack = back.connect("off-1", false);
  ASSERT_TRUE(connack);
  EXPECT_TRUE(connack->sessionPresent);
  for (int i = 0; i < 7; ++i) {
    auto p = back.receivePublish();
    ASSERT_TRUE(p) << i;
    EXPECT_EQ(p->payload.size(), payload.size());
  }
}

// Finding 5: one limit for all buffered and queued data. Subscribers that do not read fill their
// queues until the broker as a whole reaches --memory-limit; then deliveries to them are dropped
// and counted, RSS stays near the limit, and a subscriber that keeps up still gets everything.
TEST(Limits, MemoryLimitBoundsEverythingQueued) {
  SmallAsanQuarantine quarantine;
  BrokerProcess broker({"--memory-limit", "24M", "--max-queued-bytes", "16M", "--workers", "2"});
  std::vector<std::unique_ptr<LineClient>> stuck;
  for (int i = 0; i < 6; ++i) {
    stuck.push_back(std::make_unique<LineClient>(broker.port(), "stuck-" + std::to_string(i)));
    EXPECT_EQ(stuck.back()->request.request("SUBSCRIBE@mem/#"), "SUBACK");
  }
  LineClient healthy(broker.port(), "mem-healthy");
  EXPECT_EQ(healthy.request.request("SUBSCRIBE@mem/#"), "SUBACK");
  LineClient publisher(broker.port(), "mem-pub");
  const long before = rssKiB(broker.pid());
  const std::string payload(32 * 1024, 'm');
  constexpr int kMessages = 1500;  // 48 MB to each of 7 sessions: 336 MB if nothing held back
  for (int i = 0; i < kMessages; ++i) {
    ASSERT_EQ(publisher.request.request("PUBLISH@mem/x@" + payload), "PUBACK") << i;
    ASSERT_EQ(healthy.push.readLine().value_or("<none>").size(), 8 + 6 + payload.size()) << i;
  }
  const long grown = rssKiB(broker.pid()) - before;
  EXPECT_LT(grown, 64 * 1024) << "KiB of RSS with a 24 MiB memory limit";
  const nlohmann::json s = stats(publisher.request);
  EXPECT_GT(s["drops"]["memory_limit"], 6 * kMessages / 2) << s.dump();
  EXPECT_LT(s["memory_bytes"], 24 * 1024 * 1024 + 8 * 64 * 1024 + 2 * 1024 * 1024) << s.dump();
  // The subscribers go away: their memory is given back.
  stuck.clear();
  EXPECT_TRUE(eventually([&] { return stats(publisher.request)["memory_bytes"] < (8 << 20); }));
}

// Finding 6: out of descriptors, the broker still accepts and refuses cleanly (the peer sees a
// close, not a hang in the backlog), says so once per interval, and serves again once sockets
// are freed.
TEST(Limits, OutOfDescriptorsConnectionsAreClosedNotLeftHanging) {
  // prlimit (util-linux) starts the broker with 64 descriptors; --max-connections above that so
  // that the descriptor limit is what is reached.
  BrokerProcess broker({"--max-connections", "1000", "--max-connections-per-address", "1000"},
                       {"/usr/bin/prlimit", "--nofile=64:64"});
  std::vector<LineSocket> sockets;
  int closed = 0;
  for (int i = 0; i < 80; ++i) {
    sockets.emplace_back(broker.port());
    const std::string reply = sockets.back().request("PING", Millis(2000));
    if (reply == "<none>") {
      EXPECT_TRUE(sockets.back().eof()) << "socket " << i << " left hanging";
      ++closed;
    } else {
      EXPECT_EQ(reply.substr(0, 20), "ERROR@not-connected@");
    }
  }
  EXPECT_GT(closed, 0);
  sockets.clear();
  EXPECT_TRUE(eventually([&] {
    LineSocket s(broker.port());
    return s.request("PING").substr(0, 20) == "ERROR@not-connected@";
  }));
  const std::string err = broker.process().drainStderr();
  std::size_t lines = 0;
  for (std::size_t at = err.find("out of file descriptors"); at != std::string::npos;
       at = err.find("out of file descriptors", at + 1))
    ++lines;
  EXPECT_EQ(lines, 1u) << err;
}

}  // namespace
}  // namespace tern::test
