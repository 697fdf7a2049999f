// --password-file and --allow-anonymous over both protocols: who may CONNECT.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <string>

#include "harness.hpp"
#include "mqtt_client.hpp"
#include "tern/auth/password_file.hpp"

namespace tern::test {
namespace {

namespace mqtt = protocol::mqtt;

// A password file of the test's own: alice/secret, and bob with '@' in his password.
class PasswordFileFixture {
 public:
  PasswordFileFixture() {
    char pattern[] = "/tmp/tern-auth-XXXXXX";
    if (::mkdtemp(pattern) == nullptr) throw std::runtime_error("mkdtemp");
    dir_ = pattern;
    path_ = dir_ + "/passwords";
    auth::PasswordFile file;
    file.set("alice", auth::PasswordHash::make("secret"));
    file.set("bob", auth::PasswordHash::make("p@ss@word"));
    if (!file.save(path_).empty()) throw std::runtime_error("save");
  }
  ~PasswordFileFixture() {
    ::unlink(path_.c_str());
    ::rmdir(dir_.c_str());
  }
  const std::string& path() const { return path_; }

 private:
  std::string dir_;
  std::string path_;
};

// The CONNACK's code (3.1.1 return code, 5.0 reason code); nullopt without a CONNACK.
std::optional<int> mqttConnect(std::uint16_t port, std::string_view id, const char* user,
                               const char* password, std::uint8_t level = mqtt::kProtocolLevel311) {
  MqttTestClient client(port);
  mqtt::Connect extra;
  extra.protocolLevel = level;
  if (user != nullptr) {
    extra.usernameFlag = true;
    extra.username = user;
  }
  if (password != nullptr) {
    extra.passwordFlag = true;
    extra.password = password;
  }
  const auto connack = client.connect(id, true, 60, &extra);
  if (!connack) return std::nullopt;
  const int code = level == mqtt::kProtocolLevel5 ? static_cast<int>(connack->reason)
                                                  : static_cast<int>(connack->returnCode);
  if (code != 0) {
    EXPECT_TRUE(client.closedByBroker()) << "closed after a refusal";
  }
  return code;
}

TEST(Auth, LineConnectNeedsTheRightPasswordAndTheSocketStaysUsable) {
  PasswordFileFixture passwords;
  BrokerProcess broker({"--password-file", passwords.path()});
  LineSocket s(broker.port());
  std::string reply = s.request("CONNECT@c1");
  EXPECT_EQ(reply.rfind("ERROR@not-authorized@", 0), 0u) << reply;
  reply = s.request("CONNECT@c1@alice@wrong");
  EXPECT_EQ(reply, "ERROR@not-authorized@bad user or password");
  reply = s.request("CONNECT@c1@carol@secret");  // no such user
  EXPECT_EQ(reply, "ERROR@not-authorized@bad user or password");
  reply = s.request("CONNECT@c1@alice@secret");
  ASSERT_EQ(reply.rfind("CONNACK@c1@", 0), 0u) << reply;
  const std::string token = reply.substr(std::string("CONNACK@c1@").size());
  // ATTACH needs no credentials: the token is one.
  LineSocket push(broker.port());
  EXPECT_EQ(push.request("ATTACH@" + token + "@push"), "ATTACHACK@push");
  EXPECT_EQ(s.request("SUBSCRIBE@t"), "SUBACK");
  EXPECT_EQ(s.request("PUBLISH@t@hi"), "PUBACK");
  EXPECT_EQ(push.readLine().value_or(""), "MESSAGE@t@hi");

  // The password is everything after the third '@'; an empty client id is assigned one.
  LineSocket b(broker.port());
  reply = b.request("CONNECT@@bob@p@ss@word");
  EXPECT_EQ(reply.rfind("CONNACK@", 0), 0u) << reply;
  EXPECT_EQ(b.request("CONNECT@x@bob"),
            "ERROR@bad-request@expected CONNECT[@<client-id>] or "
            "CONNECT@[<client-id>]@<user>@<password>");
  const std::string stats = s.request("STATS");
  EXPECT_NE(stats.find("\"not_authorized\":3"), std::string::npos) << stats;
}

TEST(Auth, MqttConnackCodesForBadCredentials) {
  PasswordFileFixture passwords;
  BrokerProcess broker({"--password-file", passwords.path(), "--mqtt-port", "auto"});
  const std::uint16_t port = broker.mqttPort();
  // 3.1.1: 0x05 (not authorized) for no credentials and for wrong ones.
  auto code = mqttConnect(port, "m1", nullptr, nullptr);
  EXPECT_EQ(code, 0x05);
  code = mqttConnect(port, "m1", "alice", "wrong");
  EXPECT_EQ(code, 0x05);
  code = mqttConnect(port, "m1", "alice", "secret");
  EXPECT_EQ(code, 0x00);
  // 5.0: 0x86 (bad user name or password) and 0x87 (not authorized: anonymous).
  code = mqttConnect(port, "m5", "alice", "nope", mqtt::kProtocolLevel5);
  EXPECT_EQ(code, 0x86);
  code = mqttConnect(port, "m5", nullptr, nullptr, mqtt::kProtocolLevel5);
  EXPECT_EQ(code, 0x87);
  code = mqttConnect(port, "m5", "bob", "p@ss@word", mqtt::kProtocolLevel5);
  EXPECT_EQ(code, 0x00);
}

TEST(Auth, AllowAnonymousTrueStillChecksNamedUsers) {
  PasswordFileFixture passwords;
  BrokerProcess broker(
      {"--password-file", passwords.path(), "--allow-anonymous", "true", "--mqtt-port", "auto"});
  auto code = mqttConnect(broker.mqttPort(), "anon", nullptr, nullptr);
  EXPECT_EQ(code, 0x00);
  code = mqttConnect(broker.mqttPort(), "named", "alice", "wrong");
  EXPECT_EQ(code, 0x05);
  LineSocket s(broker.port());
  EXPECT_EQ(s.request("CONNECT@anon-line").rfind("CONNACK@anon-line@", 0), 0u);
}

TEST(Auth, WithoutAPasswordFileCredentialsAreNotChecked) {
  BrokerProcess broker({"--mqtt-port", "auto"});
  LineSocket s(broker.port());
  EXPECT_EQ(s.request("CONNECT@c@anyone@anything").rfind("CONNACK@c@", 0), 0u);
  auto code = mqttConnect(broker.mqttPort(), "m", "anyone", "anything");
  EXPECT_EQ(code, 0x00);
}

// Failures from one address are answered later and later; other addresses are served meanwhile
// (the delay is the authenticator's timer: no worker waits).
TEST(Auth, RepeatedFailuresAreSlowedDownPerAddressWithoutStallingOthers) {
  PasswordFileFixture passwords;
  BrokerProcess broker({"--password-file", passwords.path(), "--workers", "1"});
  LineSocket attacker(broker.port());
  for (int i = 0; i < 5; ++i)
    EXPECT_EQ(attacker.request("CONNECT@a@alice@guess"),
              "ERROR@not-authorized@bad user or password");
  // The sixth failure in a row waits 50 ms * 2^5 = 1.6 s; meanwhile a client from another
  // loopback address, on the same (only) worker, connects at once.
  ASSERT_TRUE(attacker.sendRaw("CONNECT@a@alice@guess\n"));
  LineSocket other(broker.port(), "127.0.0.2");
  EXPECT_EQ(other.request("CONNECT@o@alice@secret").rfind("CONNACK@o@", 0), 0u);
  EXPECT_FALSE(attacker.readLine(Millis(0)).has_value()) << "the failure is not answered yet";
  EXPECT_EQ(attacker.readLine().value_or(""), "ERROR@not-authorized@bad user or password");
  // A success resets the address's count.
  EXPECT_EQ(attacker.request("CONNECT@a@alice@secret").rfind("CONNACK@a@", 0), 0u);
}

TEST(Auth, StartUpRefusals) {
  // Not loopback, no password file, no explicit --allow-anonymous true: refused before binding.
  RunResult r =
      runProcess({brokerBinary(), "--bind", "0.0.0.0", "--port", "0", "--mqtt-port", "0"});
  EXPECT_EQ(r.exitCode, 2);
  EXPECT_NE(r.err.find("refusing to listen on 0.0.0.0 without authentication"), std::string::npos)
      << r.err;
  // A password file that does not parse stops start-up with the line named.
  char pattern[] = "/tmp/tern-auth-bad-XXXXXX";
  const int fd = ::mkstemp(pattern);
  ASSERT_GE(fd, 0);
  const std::string text = "alice:plaintext\n";
  ASSERT_EQ(::write(fd, text.data(), text.size()), static_cast<ssize_t>(text.size()));
  ::close(fd);
  r = runProcess({brokerBinary(), "--port", "0", "--mqtt-port", "0", "--password-file", pattern});
  EXPECT_EQ(r.exitCode, 2);
  EXPECT_NE(r.err.find(std::string(pattern) + ":1:"), std::string::npos) << r.err;
  ::unlink(pattern);
}

}  // namespace
}  // namespace tern::test
