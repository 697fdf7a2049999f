// --acl-file over both protocols: who may publish and subscribe where.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <fstream>
#include <string>

#include "harness.hpp"
#include "mqtt_client.hpp"
#include "tern/auth/password_file.hpp"
#include "tern/protocol/mqtt_encoder.hpp"

namespace tern::test {
namespace {

namespace mqtt = protocol::mqtt;

constexpr const char* kAcl =
    "# anonymous clients\n"
    "topic read public/#\n"
    "user alice\n"
    "topic readwrite alice/#\n"
    "topic read sensors/#\n"
    "topic deny sensors/secret\n"
    "user writer\n"
    "topic write #\n"
    "pattern readwrite clients/%c/#\n";

class Acl : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/tern-acl-XXXXXX";
    ASSERT_NE(::mkdtemp(pattern), nullptr);
    dir_ = pattern;
    auth::PasswordFile passwords;
    passwords.set("alice", auth::PasswordHash::make("secret"));
    passwords.set("writer", auth::PasswordHash::make("w"));
    ASSERT_EQ(passwords.save(dir_ + "/passwords"), "");
    std::ofstream(dir_ + "/acl") << kAcl;
    broker_ = std::make_unique<BrokerProcess>(
        std::vector<std::string>{"--password-file", dir_ + "/passwords", "--allow-anonymous",
                                 "true", "--acl-file", dir_ + "/acl", "--mqtt-port", "auto"});
  }
  void TearDown() override {
    broker_.reset();
    ::unlink((dir_ + "/passwords").c_str());
    ::unlink((dir_ + "/acl").c_str());
    ::rmdir(dir_.c_str());
  }
  // A line session: `fields` is what follows CONNECT@ (<id>@<user>@<password>).
  std::unique_ptr<LineClient> line(const std::string& fields) {
    return std::make_unique<LineClient>(broker_->port(), fields);
  }

  std::string dir_;
  std::unique_ptr<BrokerProcess> broker_;
};

TEST_F(Acl, LineProtocolPublishAndSubscribeFollowTheRules) {
  auto alice = line("a1@alice@secret");
  EXPECT_EQ(alice->request.request("PUBLISH@alice/x@1"), "PUBACK");
  EXPECT_EQ(alice->request.request("PUBLISH@public/x@1"),
            "ERROR@not-authorized@no write access to this topic (--acl-file)");
  EXPECT_EQ(alice->request.request("SUBSCRIBE@sensors/#"), "SUBACK");
  EXPECT_EQ(alice->request.request("SUBSCRIBE@#"),
            "ERROR@not-authorized@no read access to this filter (--acl-file)");
  EXPECT_EQ(alice->request.request("SUBSCRIBE@sensors/secret"),
            "ERROR@not-authorized@no read access to this filter (--acl-file)");
  EXPECT_EQ(alice->request.request("SUBSCRIBE@clients/a1/#"), "SUBACK");  // pattern, %c
  EXPECT_EQ(alice->request.request("SUBSCRIBE@clients/a2/#").rfind("ERROR@not-authorized@", 0), 0u);

  // A subscription that overlaps a deny rule does not get what it denies.
  auto writer = line("w1@writer@w");
  EXPECT_EQ(writer->request.request("PUBLISH@sensors/secret@hidden"), "PUBACK");
  EXPECT_EQ(writer->request.request("PUBLISH@sensors/t@visible"), "PUBACK");
  EXPECT_EQ(alice->push.readLine().value_or(""), "MESSAGE@sensors/t@visible");
  EXPECT_TRUE(alice->push.silentFor(Millis(200)));
  const std::string stats = alice->request.request("STATS");
  EXPECT_NE(stats.find("\"acl\":4"), std::string::npos) << stats;
}

TEST_F(Acl, RetainedMessagesAndListShowOnlyWhatMayBeRead) {
  auto writer = line("w1@writer@w");
  for (const char* p : {"PUBLISH@sensors/secret@s@retain", "PUBLISH@sensors/r@r@retain",
                        "PUBLISH@other/x@o@retain"}) {
    EXPECT_EQ(writer->request.request(p), "PUBACK");
  }
  auto alice = line("a1@alice@secret");
  EXPECT_EQ(alice->request.request("SUBSCRIBE@sensors/#"), "SUBACK");
  EXPECT_EQ(alice->push.readLine().value_or(""), "RETAINED@sensors/r@r");
  EXPECT_TRUE(alice->push.silentFor(Millis(200)));
  EXPECT_EQ(alice->request.request("LIST"), "LIST@{\"sensors/r\":\"r\"}");
}

TEST_F(Acl, Mqtt311PublishesAreAcknowledgedAndDroppedSubscriptionsRefused) {
  auto alice = line("a1@alice@secret");
  EXPECT_EQ(alice->request.request("SUBSCRIBE@alice/#"), "SUBACK");
  MqttTestClient anon(broker_->mqttPort());
  ASSERT_TRUE(anon.connect("anon311").has_value());
  EXPECT_TRUE(anon.publishAcked("alice/x", "no", 1));  // acknowledged...
  EXPECT_EQ(anon.subscribe({mqtt::Subscription{"alice/#", 0}, mqtt::Subscription{"public/#", 1}}),
            (std::vector<std::uint8_t>{0x80, 0x01}));
  EXPECT_TRUE(alice->push.silentFor(Millis(200)));  // ...and not delivered
  // A will where its owner may not publish: the CONNECT is refused.
  MqttTestClient will(broker_->mqttPort());
  mqtt::Connect extra;
  extra.willFlag = true;
  extra.willTopic = "alice/will";
  extra.willPayload = "x";
  const auto connack = will.connect("anon-will", true, 60, &extra);
  ASSERT_TRUE(connack.has_value());
  EXPECT_EQ(connack->returnCode, mqtt::ConnectReturnCode::kNotAuthorized);
}

TEST_F(Acl, Mqtt5SaysNotAuthorized) {
  MqttTestClient c(broker_->mqttPort());
  mqtt::Connect extra;
  extra.protocolLevel = mqtt::kProtocolLevel5;
  ASSERT_TRUE(c.connect("anon5", true, 60, &extra).has_value());
  std::string out;
  const mqtt::Subscription entries[] = {{"alice/#", 0}, {"public/#", 1}};
  mqtt::appendSubscribe5(out, 7, entries);
  c.sendRaw(out);
  auto suback = c.receiveType(mqtt::PacketType::kSuback);
  ASSERT_TRUE(suback.has_value());
  EXPECT_EQ(suback->subackCodes(), (std::vector<std::uint8_t>{0x87, 0x01}));
  out.clear();
  mqtt::Publish p;
  p.topic = "alice/x";
  p.payload = "no";
  p.qos = 1;
  p.packetId = 9;
  mqtt::appendPublish5(out, p, {});
  c.sendRaw(out);
  auto puback = c.receiveType(mqtt::PacketType::kPuback);
  ASSERT_TRUE(puback.has_value());
  EXPECT_EQ(std::get<mqtt::Puback>(puback->decode()).reason, mqtt::ReasonCode::kNotAuthorized);
}

}  // namespace
}  // namespace tern::test

namespace tern::test {
namespace {

// SIGHUP reads both files again; sessions follow the new rules from their next request on; a
// file that does not parse leaves the rules as they were.
TEST(AclReload, SighupReplacesTheRulesAndABadFileKeepsThem) {
  char pattern[] = "/tmp/tern-reload-XXXXXX";
  ASSERT_NE(::mkdtemp(pattern), nullptr);
  const std::string dir = pattern;
  const auto writePasswords = [&](const char* password) {
    auth::PasswordFile file;
    file.set("alice", auth::PasswordHash::make(password));
    ASSERT_EQ(file.save(dir + "/passwords"), "");
  };
  writePasswords("one");
  std::ofstream(dir + "/acl") << "user alice\ntopic readwrite alice/#\n";
  BrokerProcess broker({"--password-file", dir + "/passwords", "--acl-file", dir + "/acl"});
  LineClient alice(broker.port(), "a1@alice@one");
  EXPECT_EQ(alice.request.request("PUBLISH@alice/x@1"), "PUBACK");

  // Read only now: the same session is refused from its next publish on.
  std::ofstream(dir + "/acl") << "user alice\ntopic read alice/#\n";
  ASSERT_EQ(::kill(broker.pid(), SIGHUP), 0);
  const std::int64_t deadline = nowMillis() + scaled(Millis(10000)).count();
  std::string reply;
  while ((reply = alice.request.request("PUBLISH@alice/x@2")) == "PUBACK" &&
         nowMillis() < deadline) {
  }
  EXPECT_EQ(reply, "ERROR@not-authorized@no write access to this topic (--acl-file)");
  EXPECT_EQ(alice.request.request("SUBSCRIBE@alice/#"), "SUBACK");

  // A broken ACL file and a new password in one reload: once the new password works, the
  // reload ran; the old rules still hold (alice may still subscribe: not deny-all).
  std::ofstream(dir + "/acl") << "user alice\ntopic readwrite\n";
  writePasswords("two");
  ASSERT_EQ(::kill(broker.pid(), SIGHUP), 0);
  std::string connack;
  while (nowMillis() < deadline) {
    LineSocket s(broker.port());
    connack = s.request("CONNECT@a2@alice@two");
    if (connack.rfind("CONNACK@", 0) == 0) break;
  }
  ASSERT_EQ(connack.rfind("CONNACK@a2@", 0), 0u) << connack;
  LineSocket old(broker.port(), "127.0.0.3");
  EXPECT_EQ(old.request("CONNECT@a3@alice@one"), "ERROR@not-authorized@bad user or password");
  EXPECT_EQ(alice.request.request("SUBSCRIBE@alice/y"), "SUBACK");
  EXPECT_EQ(alice.request.request("PUBLISH@alice/x@3").rfind("ERROR@not-authorized@", 0), 0u);

  EXPECT_EQ(broker.stop(), 0);
  const std::string log = broker.process().drainStderr();
  EXPECT_NE(log.find("reload: the ACL file is kept as it was: " + dir + "/acl:2:"),
            std::string::npos)
      << log;
  ::unlink((dir + "/passwords").c_str());
  ::unlink((dir + "/acl").c_str());
  ::rmdir(dir.c_str());
}

}  // namespace
}  // namespace tern::test
