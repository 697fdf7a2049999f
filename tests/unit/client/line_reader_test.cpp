#include "tern/client/line_reader.hpp"

#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

namespace tern::client {
namespace {

// Every frame the reader yields until it needs more bytes.
std::vector<std::string> drain(LineReader& reader) {
  std::vector<std::string> frames;
  std::string_view frame;
  while (reader.next(frame) == LineReader::Result::kFrame)
    frames.emplace_back(frame);
  return frames;
}

TEST(LineReader, YieldsOneFrameWithoutItsLineFeed) {
  LineReader reader;
  reader.append("PUBACK\n");
  EXPECT_EQ(drain(reader), std::vector<std::string>{"PUBACK"});
  EXPECT_EQ(reader.buffered(), 0u);
}

TEST(LineReader, JoinsAFrameSplitAcrossReads) {
  LineReader reader;
  reader.append("MESS");
  EXPECT_TRUE(drain(reader).empty());
  reader.append("AGE@t@he");
  EXPECT_TRUE(drain(reader).empty());
  reader.append("llo\nPU");
  EXPECT_EQ(drain(reader), std::vector<std::string>{"MESSAGE@t@hello"});
  reader.append("BACK\n");
  EXPECT_EQ(drain(reader), std::vector<std::string>{"PUBACK"});
}

TEST(LineReader, SplitsManyFramesFromOneRead) {
  LineReader reader;
  reader.append("SUBACK\nRETAINED@a@1\nRETAINED@b@2\nMESSAGE@a@3\n");
  EXPECT_EQ(drain(reader),
            (std::vector<std::string>{"SUBACK", "RETAINED@a@1", "RETAINED@b@2", "MESSAGE@a@3"}));
}

TEST(LineReader, DropsOnlyTheCarriageReturnRightBeforeTheLineFeed) {
  LineReader reader;
  reader.append("PUBACK\r\nMESSAGE@t@a\rb\r\r\n");
  EXPECT_EQ(drain(reader), (std::vector<std::string>{"PUBACK", "MESSAGE@t@a\rb\r"}));
}

TEST(LineReader, HandlesACrLfSplitBetweenReads) {
  LineReader reader;
  reader.append("PONG\r");
  EXPECT_TRUE(drain(reader).empty());
  reader.append("\n");
  EXPECT_EQ(drain(reader), std::vector<std::string>{"PONG"});
}

TEST(LineReader, SkipsEmptyLines) {
  LineReader reader;
  reader.append("\n\r\nPONG\n\n\r\n");
  EXPECT_EQ(drain(reader), std::vector<std::string>{"PONG"});
  EXPECT_EQ(reader.buffered(), 0u);
}

TEST(LineReader, KeepsBinaryBytesAndNul) {
  LineReader reader;
  const std::string frame("MESSAGE@t@\0\x01\xff\xfe@", 15);
  reader.append(frame + "\n");
  EXPECT_EQ(drain(reader), std::vector<std::string>{frame});
}

TEST(LineReader, AcceptsAFrameOfExactlyTheLimit) {
  LineReader reader(8);
  reader.append("12345678\n1234567\r\n");
  EXPECT_EQ(drain(reader), (std::vector<std::string>{"12345678", "1234567"}));
}

TEST(LineReader, ReportsAFrameOverTheLimitBeforeItsLineFeedArrives) {
  LineReader reader(8);
  reader.append("12345678");
  std::string_view frame;
  EXPECT_EQ(reader.next(frame), LineReader::Result::kNeedMore);
  reader.append("9");
  EXPECT_EQ(reader.next(frame), LineReader::Result::kTooLong);
  reader.append("\nPONG\n");  // the stream is broken: nothing more comes out
  EXPECT_EQ(reader.next(frame), LineReader::Result::kTooLong);
}

TEST(LineReader, CountsTheCarriageReturnInTheLimit) {
  LineReader reader(8);
  reader.append("12345678\r\n");
  std::string_view frame;
  EXPECT_EQ(reader.next(frame), LineReader::Result::kTooLong);
}

TEST(LineReader, ReportsAnOverLongFrameAfterGoodOnes) {
  LineReader reader(4);
  reader.append("abc\nabcdefgh\n");
  std::string_view frame;
  ASSERT_EQ(reader.next(frame), LineReader::Result::kFrame);
  EXPECT_EQ(frame, "abc");
  EXPECT_EQ(reader.next(frame), LineReader::Result::kTooLong);
}

TEST(LineReader, TakeRestReturnsTheUnterminatedTail) {
  LineReader reader;
  reader.append("publish@t@a\nconnect\r");
  EXPECT_EQ(drain(reader), std::vector<std::string>{"publish@t@a"});
  std::string_view rest;
  ASSERT_TRUE(reader.takeRest(rest));
  EXPECT_EQ(rest, "connect");
  EXPECT_FALSE(reader.takeRest(rest));
}

TEST(LineReader, ReassemblesAStreamWrittenInOddChunks) {
  // A long stream of frames of many sizes, fed through writable()/commit() in chunks of 1 to 97
  // bytes: the frames that come out are the frames that went in.
  std::vector<std::string> expected;
  std::string stream;
  for (int i = 0; i < 300; ++i) {
    std::string frame = "MESSAGE@t/" + std::to_string(i) + "@" + std::string(i * 37 % 5000, 'x');
    stream += frame + (i % 3 == 0 ? "\r\n" : "\n");
    expected.push_back(std::move(frame));
  }
  LineReader reader;
  std::vector<std::string> frames;
  std::size_t offset = 0;
  for (std::size_t chunk = 1; offset < stream.size(); chunk = chunk % 97 + 1) {
    const std::size_t n = std::min(chunk, stream.size() - offset);
    const std::span<char> space = reader.writable(n);
    ASSERT_GE(space.size(), n);
    std::memcpy(space.data(), stream.data() + offset, n);
    reader.commit(n);
    offset += n;
    for (std::string& f : drain(reader))
      frames.push_back(std::move(f));
  }
  EXPECT_EQ(frames, expected);
  EXPECT_EQ(reader.buffered(), 0u);
}

}  // namespace
}  // namespace tern::client
