// The framing contract of docs/protocol.md ("Framing"), as nextLineFrame implements it: a LF ends a
// frame, one CR right before the LF is dropped, empty frames are frames, the limit counts every
// byte before the LF (a CR included), and the knownWithoutLf hint is only a shortcut.
#include "tern/protocol/line_framing.hpp"

#include <gtest/gtest.h>

#include <cstddef>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

namespace tern::protocol {
namespace {

using Status = LineFrame::Status;

constexpr std::size_t kBig = 1 << 20;  // a limit no input here comes near

LineFrame next(std::string_view data, std::size_t maxLine = kBig, std::size_t known = 0) {
  return nextLineFrame(data, maxLine, known);
}

// Expects a complete frame `frame` that starts the input and uses `consumed` bytes of it.
void expectFrame(std::string_view data, const LineFrame& r, std::string_view frame,
                 std::size_t consumed) {
  ASSERT_EQ(r.status, Status::kFrame);
  EXPECT_EQ(r.frame, frame);
  EXPECT_EQ(r.consumed, consumed);
  if (!r.frame.empty()) {
    EXPECT_EQ(r.frame.data(), data.data()) << "the frame is not a view";
  }
}

void expectSame(const LineFrame& a, const LineFrame& b, const std::string& what) {
  EXPECT_EQ(a.status, b.status) << what;
  EXPECT_EQ(a.frame.data(), b.frame.data()) << what;
  EXPECT_EQ(a.frame.size(), b.frame.size()) << what;
  EXPECT_EQ(a.consumed, b.consumed) << what;
}

// Every input the other tests use in spirit: frames, partial frames, CRs, binary bytes.
std::vector<std::string> sampleInputs() {
  using namespace std::string_literals;
  return {""s,
          "a"s,
          "\n"s,
          "\r\n"s,
          "abc\n"s,
          "abc\r\n"s,
          "abc\r\r\n"s,
          "a\rb\n"s,
          "abc\r"s,
          "PUBLISH@t@x\nPING\n"s,
          "\n\n\n"s,
          "\0\0\n"s,
          "\xff\xfe\r\n\xff"s,
          std::string(100, 'x'),
          std::string(100, 'x') + "\n"s,
          std::string(100, 'x') + "\r\n"s + "tail"s};
}

TEST(LineFraming, EmptyInputNeedsMore) {
  const LineFrame r = next("");
  EXPECT_EQ(r.status, Status::kNeedMore);
  EXPECT_EQ(r.consumed, 0U);
  EXPECT_TRUE(r.frame.empty());
}

TEST(LineFraming, LfEndsAFrame) {
  const std::string_view data = "PING\n";
  expectFrame(data, next(data), "PING", 5);
}

TEST(LineFraming, NoLfNeedsMoreAndConsumesNothing) {
  for (const std::string_view data : {"P", "PING", "PUBLISH@t@x", "PING\r"}) {
    const LineFrame r = next(data);
    EXPECT_EQ(r.status, Status::kNeedMore) << data;
    EXPECT_EQ(r.consumed, 0U) << data;
  }
}

TEST(LineFraming, ConsumedIncludesTheLfAndTheDroppedCr) {
  expectFrame("ab\nc", next("ab\nc"), "ab", 3);
  expectFrame("ab\r\nc", next("ab\r\nc"), "ab", 4);
}

TEST(LineFraming, OnlyTheFirstFrameIsReturned) {
  const std::string_view data = "PING\nSTATS\r\nLIST";
  expectFrame(data, next(data), "PING", 5);
  const std::string_view rest = data.substr(5);
  expectFrame(rest, next(rest), "STATS", 7);
  EXPECT_EQ(next(rest.substr(7)).status, Status::kNeedMore);
}

TEST(LineFraming, PipelinedFramesComeOutInOrder) {
  const std::string_view data = "CONNECT@a\nSUBSCRIBE@t/#\r\n\nPUBLISH@t/1@x@retain\nPI";
  std::vector<std::string_view> frames;
  std::string_view rest = data;
  for (LineFrame r = next(rest); r.status == Status::kFrame; r = next(rest)) {
    frames.push_back(r.frame);
    rest.remove_prefix(r.consumed);
  }
  const std::vector<std::string_view> expected = {"CONNECT@a", "SUBSCRIBE@t/#", "",
                                                  "PUBLISH@t/1@x@retain"};
  EXPECT_EQ(frames, expected);
  EXPECT_EQ(rest, "PI");
}

TEST(LineFraming, CrRightBeforeLfIsDropped) {
  expectFrame("a\r\n", next("a\r\n"), "a", 3);
  expectFrame("PUBLISH@t@x\r\n", next("PUBLISH@t@x\r\n"), "PUBLISH@t@x", 13);
}

TEST(LineFraming, OnlyOneCrIsDropped) {
  expectFrame("a\r\r\n", next("a\r\r\n"), "a\r", 4);
  expectFrame("\r\r\n", next("\r\r\n"), "\r", 3);
  expectFrame("a\r\r\r\n", next("a\r\r\r\n"), "a\r\r", 5);
}

TEST(LineFraming, CrElsewhereIsAnOrdinaryByte) {
  expectFrame("a\rb\n", next("a\rb\n"), "a\rb", 4);
  expectFrame("\ra\n", next("\ra\n"), "\ra", 3);
  // A CR followed by anything but a LF ends nothing.
  EXPECT_EQ(next("a\rb").status, Status::kNeedMore);
  EXPECT_EQ(next("\r").status, Status::kNeedMore);
}

TEST(LineFraming, EmptyFramesAreFramesOfSizeZero) {
  LineFrame r = next("\n");
  ASSERT_EQ(r.status, Status::kFrame);
  EXPECT_EQ(r.frame.size(), 0U);
  EXPECT_EQ(r.consumed, 1U);

  r = next("\r\n");
  ASSERT_EQ(r.status, Status::kFrame);
  EXPECT_EQ(r.frame.size(), 0U);
  EXPECT_EQ(r.consumed, 2U);

  r = next("\nPING\n");
  ASSERT_EQ(r.status, Status::kFrame);
  EXPECT_EQ(r.frame.size(), 0U);
  EXPECT_EQ(r.consumed, 1U);
}

TEST(LineFraming, FrameOfExactlyMaxLineBytesIsAccepted) {
  for (const std::size_t maxLine : {std::size_t{1}, std::size_t{64}, std::size_t{65536}}) {
    const std::string line(maxLine, 'x');
    const std::string data = line + "\n";
    expectFrame(data, next(data, maxLine), line, maxLine + 1);
  }
}

TEST(LineFraming, FrameOfMaxLinePlusOneBytesIsTooLong) {
  for (const std::size_t maxLine : {std::size_t{1}, std::size_t{64}, std::size_t{65536}}) {
    const std::string data = std::string(maxLine + 1, 'x') + "\n";
    EXPECT_EQ(next(data, maxLine).status, Status::kTooLong) << maxLine;
    EXPECT_EQ(next(data, maxLine).consumed, 0U) << maxLine;
  }
}

TEST(LineFraming, LimitCountsTheCr) {
  const std::size_t maxLine = 64;
  // maxLine - 1 bytes and a CR: maxLine bytes before the LF, accepted without the CR.
  const std::string fits = std::string(maxLine - 1, 'x') + "\r\n";
  expectFrame(fits, next(fits, maxLine), std::string(maxLine - 1, 'x'), maxLine + 1);
  // maxLine bytes and a CR: maxLine + 1 bytes before the LF, even though the frame would be
  // maxLine bytes once the CR is dropped.
  const std::string over = std::string(maxLine, 'x') + "\r\n";
  EXPECT_EQ(next(over, maxLine).status, Status::kTooLong);
  // An empty frame as "\r\n" is one byte before the LF.
  EXPECT_EQ(next("\r\n", 0).status, Status::kTooLong);
  expectFrame("\r\n", next("\r\n", 1), "", 2);
}

TEST(LineFraming, MaxLineBytesWithoutLfNeedMore) {
  for (const std::size_t maxLine : {std::size_t{1}, std::size_t{64}, std::size_t{65536}}) {
    EXPECT_EQ(next(std::string(maxLine, 'x'), maxLine).status, Status::kNeedMore) << maxLine;
    // A trailing CR is counted too, though the LF after it would make it droppable.
    EXPECT_EQ(next(std::string(maxLine - 1, 'x') + "\r", maxLine).status, Status::kNeedMore);
  }
}

TEST(LineFraming, MaxLinePlusOneBytesWithoutLfIsTooLong) {
  for (const std::size_t maxLine : {std::size_t{1}, std::size_t{64}, std::size_t{65536}}) {
    EXPECT_EQ(next(std::string(maxLine + 1, 'x'), maxLine).status, Status::kTooLong) << maxLine;
    EXPECT_EQ(next(std::string(maxLine, 'x') + "\r", maxLine).status, Status::kTooLong) << maxLine;
    EXPECT_EQ(next(std::string(maxLine + 1, 'x'), maxLine).consumed, 0U) << maxLine;
  }
}

TEST(LineFraming, ZeroLimitAcceptsOnlyEmptyLfFrames) {
  expectFrame("\n", next("\n", 0), "", 1);
  EXPECT_EQ(next("", 0).status, Status::kNeedMore);
  EXPECT_EQ(next("a", 0).status, Status::kTooLong);
  EXPECT_EQ(next("a\n", 0).status, Status::kTooLong);
}

TEST(LineFraming, LimitAppliesToTheFirstFrameOnly) {
  const std::size_t maxLine = 64;
  // A short frame is returned even when a too-long one follows it in the buffer.
  const std::string data = "PING\n" + std::string(1000, 'x');
  expectFrame(data, next(data, maxLine), "PING", 5);
  EXPECT_EQ(next(std::string_view(data).substr(5), maxLine).status, Status::kTooLong);
}

TEST(LineFraming, TooLongWithALfFarAway) {
  const std::size_t maxLine = 64;
  const std::string data = std::string(maxLine + 10, 'x') + "\nPING\n";
  EXPECT_EQ(next(data, maxLine).status, Status::kTooLong);
}

TEST(LineFraming, NulAndHighBytesAreOrdinaryBytes) {
  using namespace std::string_literals;
  const std::string data = "a\0b\xff\x8a\x0d\x80"s + "\n";  // 0x8A is not a LF, 0x0D mid-frame
  expectFrame(data, next(data), std::string_view(data).substr(0, 7), 8);

  const std::string nul = "\0\n"s;
  expectFrame(nul, next(nul), std::string_view(nul).substr(0, 1), 2);
  const std::string high = "\xff\r\n"s;
  expectFrame(high, next(high), "\xff", 3);
  const std::string nulBeforeCr = "x\0\r\n"s;
  expectFrame(nulBeforeCr, next(nulBeforeCr), std::string_view(nulBeforeCr).substr(0, 2), 4);

  // Binary bytes count against the limit like any other.
  EXPECT_EQ(next("\0\0\0\0\0"s, 4).status, Status::kTooLong);
  EXPECT_EQ(next("\xff\xff\xff\xff"s, 4).status, Status::kNeedMore);
}

TEST(LineFraming, DefaultHintIsZero) {
  for (const std::string& data : sampleInputs()) {
    expectSame(nextLineFrame(data, 64), nextLineFrame(data, 64, 0), data);
  }
}

TEST(LineFraming, TrueHintNeverChangesTheResult) {
  for (const std::size_t maxLine : {std::size_t{0}, std::size_t{3}, std::size_t{64}, kBig}) {
    for (const std::string& data : sampleInputs()) {
      const LineFrame reference = next(data, maxLine, 0);
      // The claim "no LF in the first `known` bytes" holds for every `known` up to the first LF.
      const std::size_t lf = data.find('\n');
      const std::size_t maxKnown = lf == std::string::npos ? data.size() : lf;
      for (std::size_t known = 0; known <= maxKnown; ++known) {
        expectSame(reference, next(data, maxLine, known),
                   "input size " + std::to_string(data.size()) + " known " + std::to_string(known) +
                       " maxLine " + std::to_string(maxLine));
      }
    }
  }
}

TEST(LineFraming, HintPastTheEndIsClamped) {
  for (const std::size_t maxLine : {std::size_t{0}, std::size_t{3}, std::size_t{64}, kBig}) {
    for (const std::string& data : sampleInputs()) {
      if (data.find('\n') != std::string::npos) continue;  // the claim must be true
      const LineFrame reference = next(data, maxLine, 0);
      for (const std::size_t known : {data.size(), data.size() + 1, data.size() + 1000,
                                      std::numeric_limits<std::size_t>::max()}) {
        expectSame(
            reference, next(data, maxLine, known),
            "input size " + std::to_string(data.size()) + " maxLine " + std::to_string(maxLine));
      }
    }
  }
}

TEST(LineFraming, HintAsAServerPassesIt) {
  // A long frame read in small pieces: each call is told the bytes it had before the last read.
  const std::size_t maxLine = 300;
  const std::string stream = std::string(maxLine - 2, 'y') + "\r\nPING\n";
  std::string buffer;
  std::size_t known = 0;
  std::vector<std::string> frames;
  for (std::size_t fed = 0; fed < stream.size(); fed += 7) {
    known = buffer.size();
    buffer.append(stream.substr(fed, 7));
    for (LineFrame r = next(buffer, maxLine, known); r.status != Status::kNeedMore;
         r = next(buffer, maxLine)) {
      ASSERT_EQ(r.status, Status::kFrame);
      frames.emplace_back(r.frame);
      buffer.erase(0, r.consumed);
    }
  }
  const std::vector<std::string> expected = {std::string(maxLine - 2, 'y'), "PING"};
  EXPECT_EQ(frames, expected);
  EXPECT_TRUE(buffer.empty());
}

TEST(LineFraming, HintDoesNotHideTooLong) {
  const std::size_t maxLine = 64;
  const std::string partial(maxLine, 'x');
  EXPECT_EQ(next(partial, maxLine, maxLine).status, Status::kNeedMore);
  const std::string more = partial + "x";
  EXPECT_EQ(next(more, maxLine, maxLine).status, Status::kTooLong);
  const std::string lfLate = partial + "x\n";
  EXPECT_EQ(next(lfLate, maxLine, maxLine).status, Status::kTooLong);
  const std::string lfJustInTime = partial + "\n";
  expectFrame(lfJustInTime, next(lfJustInTime, maxLine, maxLine), partial, maxLine + 1);
}

}  // namespace
}  // namespace tern::protocol
