#include "tern/client/frames.hpp"

#include <gtest/gtest.h>

#include <string>

namespace tern::client {
namespace {

TEST(Frames, FrameTypeIgnoresCaseAndStopsAtTheFirstSeparator) {
  EXPECT_TRUE(frameTypeIs("PUBACK", "puback"));
  EXPECT_TRUE(frameTypeIs("Error@bad-topic@text", "ERROR"));
  EXPECT_TRUE(isErrorFrame("ERROR@too-long@frame too long"));
  EXPECT_FALSE(isErrorFrame("ERRORS"));
  EXPECT_FALSE(isErrorFrame("MESSAGE@ERROR@x"));
}

TEST(Frames, ClassifiesConnectAndDisconnectInAnyCase) {
  EXPECT_EQ(classifyInput("connect").kind, InputKind::kConnect);
  EXPECT_EQ(classifyInput("CONNECT").kind, InputKind::kConnect);
  const Input withId = classifyInput("  Connect@alice \r");
  EXPECT_EQ(withId.kind, InputKind::kConnect);
  EXPECT_EQ(withId.frame, "Connect@alice");
  EXPECT_EQ(classifyInput("disconnect").kind, InputKind::kDisconnect);
  EXPECT_EQ(classifyInput("DisConnect ").frame, "DisConnect");
}

TEST(Frames, SendsOtherLinesAsTyped) {
  const Input input = classifyInput("publish@t@ two words ");
  EXPECT_EQ(input.kind, InputKind::kRequest);
  EXPECT_EQ(input.frame, "publish@t@ two words ");
  EXPECT_EQ(classifyInput("connected").kind, InputKind::kRequest);
  EXPECT_EQ(classifyInput("disconnect@x").kind, InputKind::kRequest);
  EXPECT_EQ(classifyInput("").kind, InputKind::kEmpty);
  EXPECT_EQ(classifyInput(" \t ").kind, InputKind::kEmpty);
}

TEST(Frames, ParsesPushesWithSeparatorsInTheContents) {
  const std::optional<Push> message = parsePush("MESSAGE@a@b@c");
  ASSERT_TRUE(message);
  EXPECT_FALSE(message->retained);
  EXPECT_EQ(message->topic, "a");
  EXPECT_EQ(message->contents, "b@c");

  const std::optional<Push> retained = parsePush("RETAINED@weather/temp@");
  ASSERT_TRUE(retained);
  EXPECT_TRUE(retained->retained);
  EXPECT_EQ(retained->topic, "weather/temp");
  EXPECT_EQ(retained->contents, "");
}

TEST(Frames, RejectsFramesThatAreNotPushes) {
  EXPECT_FALSE(parsePush("PONG"));
  EXPECT_FALSE(parsePush("ERROR@bad-request@x"));
  EXPECT_FALSE(parsePush("MESSAGE@topic-without-contents"));
  EXPECT_FALSE(parsePush("message@a@b"));  // the broker writes reply types in upper case
}

TEST(Frames, FormatsPushesAndRepliesForPeople) {
  std::string out;
  appendPushLine(out, *parsePush("MESSAGE@a@b@c"));
  EXPECT_EQ(out, "a: b@c");
  out.clear();
  appendReplyLine(out, "CONNACK@alice@5f0c");
  EXPECT_EQ(out, "server: CONNACK@alice@5f0c");
}

TEST(Frames, MakesControlCharactersVisible) {
  std::string out;
  appendTerminalSafe(out, "a\x1b[2Jb\tc\x7f");
  EXPECT_EQ(out, "a^[[2Jb^Ic^?");
  out.clear();
  appendTerminalSafe(out, std::string("nul\0", 4));
  EXPECT_EQ(out, "nul^@");
  out.clear();
  appendTerminalSafe(out,
                     "\xc2\x9b"
                     "31m");  // U+009B, the 8-bit CSI
  EXPECT_EQ(out, "M-^[31m");
}

TEST(Frames, KeepsPrintableUtf8AndInvalidBytes) {
  std::string out;
  appendTerminalSafe(out, "caf\xc3\xa9 \xe2\x82\xac \xff");
  EXPECT_EQ(out, "caf\xc3\xa9 \xe2\x82\xac \xff");
}

TEST(Frames, BuildsPublishFrames) {
  std::string out;
  EXPECT_EQ(appendPublish(out, "t", "hello", false), PublishCheck::kOk);
  EXPECT_EQ(out, "PUBLISH@t@hello");
  out.clear();
  EXPECT_EQ(appendPublish(out, "t", "a@b", true), PublishCheck::kOk);
  EXPECT_EQ(out, "PUBLISH@t@a@b@retain");
  out.clear();
  EXPECT_EQ(appendPublish(out, "t", "", true), PublishCheck::kOk);  // deletes the retained one
  EXPECT_EQ(out, "PUBLISH@t@@retain");
  out.clear();
  EXPECT_EQ(appendPublish(out, "t", "retain", false), PublishCheck::kOk);  // three fields: contents
  EXPECT_EQ(out, "PUBLISH@t@retain");
  out.clear();
  EXPECT_EQ(appendPublish(out, "t", "x@Retain", true), PublishCheck::kOk);
  EXPECT_EQ(out, "PUBLISH@t@x@Retain@retain");
}

TEST(Frames, RefusesPublishFramesThatWouldMeanSomethingElse) {
  std::string out;
  EXPECT_EQ(appendPublish(out, "", "x", false), PublishCheck::kEmptyTopic);
  EXPECT_EQ(appendPublish(out, "a@b", "x", false), PublishCheck::kTopicSeparator);
  EXPECT_EQ(appendPublish(out, "t", "two\nlines", false), PublishCheck::kLineBreak);
  EXPECT_EQ(appendPublish(out, "t\n", "x", false), PublishCheck::kLineBreak);
  EXPECT_EQ(appendPublish(out, "t", "x\r", false), PublishCheck::kTrailingCr);
  EXPECT_EQ(appendPublish(out, "t", "x@retain", false), PublishCheck::kAmbiguousRetain);
  EXPECT_EQ(appendPublish(out, "t", "x@RETAIN", false), PublishCheck::kAmbiguousRetain);
  EXPECT_EQ(out, "");
  EXPECT_EQ(appendPublish(out, "t", "x\r", true), PublishCheck::kOk);  // "@retain" follows the CR
}

TEST(Frames, ConnectGetsTheCredentialsOfTheCommandLine) {
  const std::optional<std::string> pw("s3cr@t");
  EXPECT_EQ(connectWithCredentials("CONNECT", "", pw), "CONNECT");  // no user: as it is
  EXPECT_EQ(connectWithCredentials("CONNECT@alice", "", std::nullopt), "CONNECT@alice");
  EXPECT_EQ(connectWithCredentials("CONNECT@alice", "bob", pw), "CONNECT@alice@bob@s3cr@t");
  EXPECT_EQ(connectWithCredentials("connect", "bob", pw), "connect@@bob@s3cr@t");  // assigned id
  EXPECT_EQ(connectWithCredentials("CONNECT@alice", "bob", std::nullopt), "CONNECT@alice@bob@");
  // Typed with credentials already: sent as typed.
  EXPECT_EQ(connectWithCredentials("connect@a@u@p", "bob", pw), "connect@a@u@p");
}

}  // namespace
}  // namespace tern::client
