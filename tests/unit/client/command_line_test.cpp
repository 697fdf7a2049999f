#include "tern/client/command_line.hpp"

#include <gtest/gtest.h>
#include <unistd.h>
#include <fstream>
#include <optional>
#include <utility>

#include <initializer_list>
#include <string>
#include <vector>

#include "support/test_certificates.hpp"

namespace tern::client {
namespace {

ParsedCommandLine parse(std::initializer_list<const char*> args) {
  std::vector<const char*> argv{"client"};
  argv.insert(argv.end(), args.begin(), args.end());
  return parseCommandLine(static_cast<int>(argv.size()), argv.data());
}

TEST(CommandLine, DefaultsToTheSessionModeOnLocalhost8000) {
  const ParsedCommandLine parsed = parse({});
  ASSERT_TRUE(parsed.commandLine);
  const CommandLine& line = *parsed.commandLine;
  EXPECT_EQ(line.verb, Verb::kNone);
  EXPECT_EQ(line.connection.host, "127.0.0.1");
  EXPECT_EQ(line.connection.port, 8000);
  EXPECT_EQ(line.connection.timeoutSeconds, 5);
  EXPECT_FALSE(line.lineMode.raw);
  EXPECT_EQ(line.lineMode.waitSeconds, 0);
  EXPECT_EQ(line.lineMode.requestSocket, 1);
}

TEST(CommandLine, ReadsTheSessionModeOptions) {
  const ParsedCommandLine parsed =
      parse({"--host", "localhost", "--port", "9001", "--raw", "--wait", "1.5", "--timeout", "2",
             "--request-socket", "2"});
  ASSERT_TRUE(parsed.commandLine);
  const CommandLine& line = *parsed.commandLine;
  EXPECT_EQ(line.connection.host, "localhost");
  EXPECT_EQ(line.connection.port, 9001);
  EXPECT_EQ(line.connection.timeoutSeconds, 2);
  EXPECT_TRUE(line.lineMode.raw);
  EXPECT_EQ(line.lineMode.waitSeconds, 1.5);
  EXPECT_EQ(line.lineMode.requestSocket, 2);
}

TEST(CommandLine, ReadsPub) {
  const ParsedCommandLine parsed =
      parse({"pub", "-t", "a/b", "-m", "hello world", "-r", "-i", "alice", "-p", "8001"});
  ASSERT_TRUE(parsed.commandLine);
  const CommandLine& line = *parsed.commandLine;
  EXPECT_EQ(line.verb, Verb::kPub);
  EXPECT_EQ(line.pub.topic, "a/b");
  EXPECT_EQ(line.pub.source, PubOptions::Source::kMessage);
  EXPECT_EQ(line.pub.message, "hello world");
  EXPECT_TRUE(line.pub.retain);
  EXPECT_EQ(line.pub.clientId, "alice");
  EXPECT_EQ(line.connection.port, 8001);
}

TEST(CommandLine, PubTakesItsMessageFromOneOfThreePlaces) {
  ASSERT_TRUE(parse({"pub", "-t", "a", "-l"}).commandLine);
  EXPECT_EQ(parse({"pub", "-t", "a", "-l"}).commandLine->pub.source, PubOptions::Source::kLines);
  EXPECT_EQ(parse({"pub", "-t", "a", "-n"}).commandLine->pub.source, PubOptions::Source::kEmpty);
  EXPECT_EQ(parse({"pub", "-t", "a", "-m", ""}).commandLine->pub.source,
            PubOptions::Source::kMessage);

  const ParsedCommandLine none = parse({"pub", "-t", "a"});
  EXPECT_FALSE(none.commandLine);
  EXPECT_EQ(none.exitCode, ExitCode::kUsage);
  EXPECT_NE(none.error.find("-m"), std::string::npos);
  EXPECT_EQ(parse({"pub", "-t", "a", "-m", "x", "-n"}).exitCode, ExitCode::kUsage);
  EXPECT_EQ(parse({"pub", "-t", "a", "-l", "-n"}).exitCode, ExitCode::kUsage);
  EXPECT_EQ(parse({"pub", "-m", "x"}).exitCode, ExitCode::kUsage);  // -t is required
}

TEST(CommandLine, ReadsSub) {
  const ParsedCommandLine parsed =
      parse({"sub", "-t", "a/+", "-t", "b/#", "-C", "3", "-W", "0.5", "-v", "-R", "--host", "h"});
  ASSERT_TRUE(parsed.commandLine);
  const CommandLine& line = *parsed.commandLine;
  EXPECT_EQ(line.verb, Verb::kSub);
  EXPECT_EQ(line.sub.filters, (std::vector<std::string>{"a/+", "b/#"}));
  EXPECT_EQ(line.sub.count, 3u);
  EXPECT_EQ(line.sub.timeLimitSeconds, 0.5);
  EXPECT_TRUE(line.sub.verbose);
  EXPECT_TRUE(line.sub.skipRetained);
  EXPECT_EQ(line.connection.host, "h");
}

TEST(CommandLine, RefusesWhatCannotBeSentOrMeansNothing) {
  EXPECT_EQ(parse({"sub"}).exitCode, ExitCode::kUsage);
  EXPECT_EQ(parse({"sub", "-t", "a@b"}).exitCode, ExitCode::kUsage);
  EXPECT_EQ(parse({"sub", "-t", ""}).exitCode, ExitCode::kUsage);
  EXPECT_EQ(parse({"sub", "-t", "a", "-i", "x@y"}).exitCode, ExitCode::kUsage);
  EXPECT_EQ(parse({"sub", "-t", "a", "-C", "-1"}).exitCode, ExitCode::kUsage);
  EXPECT_EQ(parse({"--port", "0"}).exitCode, ExitCode::kUsage);
  EXPECT_EQ(parse({"--port", "65536"}).exitCode, ExitCode::kUsage);
  EXPECT_EQ(parse({"--timeout", "0"}).exitCode, ExitCode::kUsage);
  EXPECT_EQ(parse({"--request-socket", "3"}).exitCode, ExitCode::kUsage);
  EXPECT_EQ(parse({"--bogus"}).exitCode, ExitCode::kUsage);
  EXPECT_EQ(parse({"--raw", "sub", "-t", "a"}).exitCode, ExitCode::kUsage);  // session mode only
  const ParsedCommandLine wait = parse({"--wait", "1", "pub", "-t", "a", "-n"});
  EXPECT_FALSE(wait.commandLine);
  EXPECT_NE(wait.error.find("--wait"), std::string::npos);
}

TEST(CommandLine, HelpExplainsEveryOptionAndTheExitCodes) {
  const ParsedCommandLine main = parse({"--help"});
  EXPECT_FALSE(main.commandLine);
  EXPECT_EQ(main.exitCode, ExitCode::kOk);
  for (const char* text : {"--host", "--port", "--timeout", "--raw", "--wait", "--request-socket",
                           "pub", "sub", "Exit status", "130"}) {
    EXPECT_NE(main.output.find(text), std::string::npos) << text;
  }
  const ParsedCommandLine sub = parse({"sub", "--help"});
  EXPECT_EQ(sub.exitCode, ExitCode::kOk);
  for (const char* text : {"-t,--topic", "-C,--count", "-W,--time-limit", "-v,--verbose",
                           "-R,--no-retained", "-i,--id", "--host", "exit 3"}) {
    EXPECT_NE(sub.output.find(text), std::string::npos) << text;
  }
  const ParsedCommandLine pub = parse({"pub", "--help"});
  for (const char* text : {"-t,--topic", "-m,--message", "-l,--stdin-line", "-n,--null-message",
                           "-r,--retain", "-i,--id", "--port"}) {
    EXPECT_NE(pub.output.find(text), std::string::npos) << text;
  }
}

TEST(CommandLine, ReadsTlsAndCredentialsInEveryMode) {
  for (const char* verb : {"", "pub", "sub"}) {
    std::vector<const char*> argv{"client"};
    if (*verb != 0) argv.push_back(verb);
    for (const char* a : {"--tls", "--cafile", "ca.pem", "--cert", "c.crt", "--key", "c.key",
                          "--tls-server-name", "broker.example", "-u", "alice", "-P", "p@ss"}) {
      argv.push_back(a);
    }
    if (std::string_view(verb) == "pub") argv.insert(argv.end(), {"-t", "a", "-m", "x"});
    if (std::string_view(verb) == "sub") argv.insert(argv.end(), {"-t", "a"});
    const ParsedCommandLine parsed = parseCommandLine(static_cast<int>(argv.size()), argv.data());
    ASSERT_TRUE(parsed.commandLine) << verb << ": " << parsed.error;
    const ConnectionOptions& c = parsed.commandLine->connection;
    EXPECT_TRUE(c.tls);
    EXPECT_EQ(c.caFile, "ca.pem");
    EXPECT_EQ(c.certFile, "c.crt");
    EXPECT_EQ(c.keyFile, "c.key");
    EXPECT_EQ(c.effectiveTlsServerName(), "broker.example");
    EXPECT_EQ(c.username, "alice");
    EXPECT_EQ(c.password, std::optional<std::string>("p@ss"));
    EXPECT_EQ(c.tlsContext, nullptr);  // made by makeTlsContext(), not by the parser
  }
  const ParsedCommandLine plain =
      parse({"--host", "h.example", "--username", "bob", "--password-file", "pw"});
  ASSERT_TRUE(plain.commandLine) << plain.error;
  EXPECT_EQ(plain.commandLine->connection.effectiveTlsServerName(), "h.example");
  EXPECT_EQ(plain.commandLine->connection.passwordFile, "pw");
  EXPECT_FALSE(plain.commandLine->connection.password.has_value());
  // An empty --password is a password.
  const ParsedCommandLine empty = parse({"-u", "bob", "-P", ""});
  ASSERT_TRUE(empty.commandLine) << empty.error;
  EXPECT_EQ(empty.commandLine->connection.password, std::optional<std::string>(""));
}

TEST(CommandLine, RefusesBadTlsAndCredentialCombinations) {
  const std::vector<std::pair<std::vector<const char*>, std::string>> cases{
      {{"--cafile", "ca.pem"}, "--cafile needs --tls"},
      {{"--tls-server-name", "x"}, "--tls-server-name needs --tls"},
      {{"--tls", "--cert", "c.crt"}, "--cert needs --key"},
      {{"--tls", "--key", "c.key"}, "--key needs --cert"},
      {{"-u", "a", "-P", "x", "--password-file", "f"}, "exclude each other"},
      {{"-P", "x"}, "need --username"},
      {{"--password-file", "f"}, "need --username"},
      {{"-u", "a@b"}, "--username must not contain '@'"},
      {{"-u", ""}, "--username must not be empty"},
  };
  for (const auto& [args, expected] : cases) {
    std::vector<const char*> argv{"client"};
    argv.insert(argv.end(), args.begin(), args.end());
    const ParsedCommandLine parsed = parseCommandLine(static_cast<int>(argv.size()), argv.data());
    EXPECT_FALSE(parsed.commandLine) << expected;
    EXPECT_EQ(parsed.exitCode, ExitCode::kUsage) << expected;
    EXPECT_NE(parsed.error.find(expected), std::string::npos) << parsed.error;
  }
}

TEST(CommandLine, PasswordFileAndTlsFilesAreReadOnce) {
  char path[] = "/tmp/tern-client-password-XXXXXX";
  const int fd = ::mkstemp(path);
  ASSERT_GE(fd, 0);
  ::close(fd);
  std::ofstream(path) << "first@line\nsecond\n";
  ConnectionOptions options;
  options.username = "alice";
  options.passwordFile = path;
  EXPECT_EQ(loadPasswordFile(options), "");
  EXPECT_EQ(options.password, std::optional<std::string>("first@line"));
  EXPECT_TRUE(options.passwordFile.empty());
  ::unlink(path);
  options.passwordFile = "/nonexistent/pw";
  EXPECT_EQ(loadPasswordFile(options).find("cannot read --password-file /nonexistent/pw"), 0u);

  EXPECT_EQ(makeTlsContext(options), "");  // no --tls: nothing to make
  EXPECT_EQ(options.tlsContext, nullptr);
  tern::testing::TestCertificates certs;
  options.tls = true;
  options.caFile = certs.caFile();
  EXPECT_EQ(makeTlsContext(options), "");
  EXPECT_NE(options.tlsContext, nullptr);
  options.caFile = certs.dir() + "/missing.pem";
  EXPECT_NE(makeTlsContext(options).find("missing.pem"), std::string::npos);
  EXPECT_EQ(options.tlsContext, nullptr);
}

}  // namespace
}  // namespace tern::client
