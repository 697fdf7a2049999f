#include "tern/loadgen/line_frames.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace tern::loadgen {
namespace {

std::vector<std::string> frames(std::string_view data, std::size_t& consumed) {
  std::vector<std::string> out;
  consumed = forEachFrame(data, [&](std::string_view frame) {
    out.emplace_back(frame);
    return true;
  });
  return out;
}

TEST(LineFrames, SplitsCompleteFramesAndKeepsThePartialOne) {
  std::size_t consumed = 0;
  const auto got = frames("PUBACK\nSUBACK\r\n\n\r\nMESSAGE@t@a@b\nPUB", consumed);
  EXPECT_EQ(got, (std::vector<std::string>{"PUBACK", "SUBACK", "MESSAGE@t@a@b"}));
  EXPECT_EQ(consumed, std::string_view("PUBACK\nSUBACK\r\n\n\r\nMESSAGE@t@a@b\n").size());
  EXPECT_TRUE(frames("no newline yet", consumed).empty());
  EXPECT_EQ(consumed, 0u);
}

TEST(LineFrames, StopsWhenTheCallbackSaysSo) {
  std::vector<std::string> seen;
  const std::size_t consumed = forEachFrame("A\nB\nC\n", [&](std::string_view frame) {
    seen.emplace_back(frame);
    return frame != "B";
  });
  EXPECT_EQ(seen, (std::vector<std::string>{"A", "B"}));
  EXPECT_EQ(consumed, 4u);
}

TEST(LineFrames, ParsesMessages) {
  std::string_view topic;
  std::string_view contents;
  ASSERT_TRUE(parseMessageFrame("MESSAGE@lg/x/3@a@b@", topic, contents));
  EXPECT_EQ(topic, "lg/x/3");
  EXPECT_EQ(contents, "a@b@");
  ASSERT_TRUE(parseMessageFrame("MESSAGE@t@", topic, contents));
  EXPECT_EQ(contents, "");
  EXPECT_FALSE(parseMessageFrame("MESSAGE@t", topic, contents));
  EXPECT_FALSE(parseMessageFrame("RETAINED@t@x", topic, contents));
  EXPECT_FALSE(parseMessageFrame("MESSAGE@@x", topic, contents));
}

TEST(LineFrames, ParsesConnackAndErrors) {
  std::string_view token;
  ASSERT_TRUE(parseConnack("CONNACK@lg-1-0@5f0ce1", token));
  EXPECT_EQ(token, "5f0ce1");
  EXPECT_FALSE(parseConnack("CONNACK@id", token));
  EXPECT_FALSE(parseConnack("CONNACK@id@", token));
  EXPECT_FALSE(parseConnack("ERROR@bad-request@no", token));
  std::string_view code;
  ASSERT_TRUE(parseError("ERROR@bad-topic@wildcards are not allowed", code));
  EXPECT_EQ(code, "bad-topic");
  ASSERT_TRUE(parseError("ERROR@too-long", code));
  EXPECT_EQ(code, "too-long");
  EXPECT_FALSE(parseError("PUBACK", code));
}

TEST(LineFrames, ConnectFrameCarriesCredentialsAsTheProtocolSpellsThem) {
  EXPECT_EQ(connectFrame("lg-1", "", std::nullopt), "CONNECT@lg-1\n");
  EXPECT_EQ(connectFrame("", "", std::nullopt), "CONNECT\n");
  EXPECT_EQ(connectFrame("lg-1", "alice", std::string("s3cr@t@")), "CONNECT@lg-1@alice@s3cr@t@\n");
  // An assigned id with credentials, and a user without a password (the field is still there).
  EXPECT_EQ(connectFrame("", "alice", std::string("pw")), "CONNECT@@alice@pw\n");
  EXPECT_EQ(connectFrame("lg-1", "alice", std::nullopt), "CONNECT@lg-1@alice@\n");
}

}  // namespace
}  // namespace tern::loadgen
