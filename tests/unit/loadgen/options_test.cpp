// Options::validate() for TLS, credentials and --persistent, loadPasswordFile() and
// makeTlsContext(): the combinations loadgen refuses at start-up (exit 2) and what the files
// turn into.
#include "tern/loadgen/options.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <cstdlib>
#include <fstream>
#include <string>

#include "support/test_certificates.hpp"

namespace tern::loadgen {
namespace {

Options runnable() {
  Options options;
  options.clients = 2;
  options.rate = 100;
  return options;
}

TEST(LoadgenOptions, TlsFilesNeedTlsAndACertificateNeedsItsKey) {
  Options options = runnable();
  EXPECT_EQ(options.validate(), "");
  options.caFile = "/tmp/ca.pem";
  EXPECT_EQ(options.validate(), "--cafile needs --tls");
  options.tls = true;
  EXPECT_EQ(options.validate(), "");
  options.certFile = "/tmp/client.crt";
  EXPECT_EQ(options.validate(), "--cert needs --key (the certificate's key)");
  options.keyFile = "/tmp/client.key";
  EXPECT_EQ(options.validate(), "");
  options.certFile.clear();
  EXPECT_EQ(options.validate(), "--key needs --cert");
  Options named = runnable();
  named.tlsServerName = "broker.example";
  EXPECT_EQ(named.validate(), "--tls-server-name needs --tls");
}

TEST(LoadgenOptions, ServerNameDefaultsToTheHost) {
  Options options = runnable();
  options.host = "broker.example";
  EXPECT_EQ(options.effectiveTlsServerName(), "broker.example");
  options.tlsServerName = "other.example";
  EXPECT_EQ(options.effectiveTlsServerName(), "other.example");
}

TEST(LoadgenOptions, CredentialCombinations) {
  Options options = runnable();
  options.password = "pw";
  EXPECT_EQ(options.validate(), "--password and --password-file need --username");
  options.username = "alice";
  EXPECT_EQ(options.validate(), "");
  options.passwordFile = "/tmp/pw";
  EXPECT_NE(options.validate().find("--password and --password-file exclude each other"),
            std::string::npos);
  options.passwordFile.clear();
  options.password = "two\nlines";
  EXPECT_EQ(options.validate(), "--password must not contain a line feed");
  options.password = "with@at";  // the line protocol's password may hold '@'
  EXPECT_EQ(options.validate(), "");
  options.username = "al@ice";
  EXPECT_NE(options.validate().find("--username must not contain '@'"), std::string::npos);
  options.protocol = Protocol::kMqtt;  // MQTT user names may
  EXPECT_EQ(options.validate(), "");
  options.username = "alice";
  options.password.reset();
  EXPECT_EQ(options.validate(), "");  // a user name alone
}

TEST(LoadgenOptions, PasswordFileGivesItsFirstLine) {
  char path[] = "/tmp/tern-password-XXXXXX";
  const int fd = ::mkstemp(path);
  ASSERT_GE(fd, 0);
  ::close(fd);
  std::ofstream(path) << "s3cr@t pass\r\nsecond line\n";
  Options options = runnable();
  options.username = "alice";
  options.passwordFile = path;
  EXPECT_EQ(options.validate(), "");
  EXPECT_EQ(loadPasswordFile(options), "");
  EXPECT_EQ(options.password, std::optional<std::string>("s3cr@t pass"));
  EXPECT_TRUE(options.passwordFile.empty());
  EXPECT_EQ(loadPasswordFile(options), "");  // nothing left to do
  ::unlink(path);

  Options missing = runnable();
  missing.passwordFile = "/nonexistent/tern-password";
  EXPECT_EQ(loadPasswordFile(missing).find("cannot read --password-file /nonexistent/"), 0u);
  EXPECT_FALSE(missing.password.has_value());
}

TEST(LoadgenOptions, TlsContextFromTheFiles) {
  Options options = runnable();
  EXPECT_EQ(makeTlsContext(options).context, nullptr);  // no --tls: plain TCP
  tern::testing::TestCertificates certs;
  options.tls = true;
  options.caFile = certs.caFile();
  const std::string client = certs.makeClient("loadgen");
  options.certFile = client + ".crt";
  options.keyFile = client + ".key";
  const net::TlsContext::Made made = makeTlsContext(options);
  EXPECT_NE(made.context, nullptr) << made.error;
  options.caFile = certs.dir() + "/missing.pem";
  const net::TlsContext::Made bad = makeTlsContext(options);
  EXPECT_EQ(bad.context, nullptr);
  EXPECT_NE(bad.error.find("missing.pem"), std::string::npos) << bad.error;
}

TEST(LoadgenOptions, PayloadLimitIsTheProtocols) {
  Options options = runnable();
  options.protocol = Protocol::kLine;
  options.payloadBytes = 65000;
  EXPECT_EQ(options.validate(), "");
  options.payloadBytes = 65001;
  EXPECT_NE(options.validate().find("--payload must be between 40 and 65000"), std::string::npos)
      << options.validate();
  options.protocol = Protocol::kMqtt;
  options.payloadBytes = 1000000;
  EXPECT_EQ(options.validate(), "");
  options.payloadBytes = 1000001;
  EXPECT_NE(options.validate().find("--payload must be between 40 and 1000000"), std::string::npos)
      << options.validate();
  options.payloadBytes = 39;
  EXPECT_NE(options.validate().find("--payload"), std::string::npos);
}

TEST(LoadgenOptions, PersistentIsForMqttOnlyAndInTheReport) {
  Options options = runnable();
  EXPECT_FALSE(options.persistent);  // clean sessions unless asked
  EXPECT_EQ(options.toJson()["persistent"], false);
  options.persistent = true;
  EXPECT_NE(options.validate().find("--persistent applies to --protocol mqtt and mqtt5 only"),
            std::string::npos)
      << options.validate();
  for (const Protocol protocol : {Protocol::kMqtt, Protocol::kMqtt5}) {
    options.protocol = protocol;
    options.qos = 1;
    EXPECT_EQ(options.validate(), "");
    EXPECT_EQ(options.toJson()["persistent"], true);
  }
  EXPECT_EQ(kPersistentSessionExpiryS, 3600u);
}

}  // namespace
}  // namespace tern::loadgen
