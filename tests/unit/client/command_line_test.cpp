#include "tern/client/command_line.hpp"

#include <gtest/gtest.h>

#include <initializer_list>
#include <string>
#include <vector>

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

}  // namespace
}  // namespace tern::client
