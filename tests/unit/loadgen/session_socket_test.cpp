// receiveFrames (src/loadgen/session_socket.hpp): received bytes split anywhere must yield the
// same frames as one piece, with only the incomplete tail carried; judged on the frames seen and
// on what is carried, without sockets.
#include "loadgen/session_socket.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "tern/loadgen/line_frames.hpp"

namespace tern::loadgen {
namespace {

// Feeds `pieces` to receiveFrames as successive receives; returns every frame parsed.
std::vector<std::string> framesOf(const std::vector<std::string_view>& pieces,
                                  SessionSocket& socket) {
  std::vector<std::string> frames;
  const auto parse = [&](std::string_view data) {
    return forEachFrame(data, [&](std::string_view frame) {
      frames.emplace_back(frame);
      return true;
    });
  };
  for (const std::string_view piece : pieces)
    EXPECT_EQ(receiveFrames(socket, piece, parse), ReceiveStatus::kOk);
  return frames;
}

std::string stream() {
  // Short frames, one longer than the first 512-byte step, and one longer than the second.
  return "CONNACK@a@t\nPUBACK\nMESSAGE@lg/x/1@" + std::string(700, 'p') + "\nPUBACK\n" +
         "MESSAGE@lg/x/2@" + std::string(2000, 'q') + "\nSUBACK\n";
}

const std::vector<std::string> kFrames = {"CONNACK@a@t",
                                          "PUBACK",
                                          "MESSAGE@lg/x/1@" + std::string(700, 'p'),
                                          "PUBACK",
                                          "MESSAGE@lg/x/2@" + std::string(2000, 'q'),
                                          "SUBACK"};

TEST(SessionSocket, FramesSplitAtEveryPairOfOffsetsArriveWhole) {
  const std::string all = stream();
  const std::string_view view(all);
  for (std::size_t a = 1; a < all.size(); a += 7) {
    for (std::size_t b = a; b < all.size(); b += 13) {
      SessionSocket socket;
      const auto frames =
          framesOf({view.substr(0, a), view.substr(a, b - a), view.substr(b)}, socket);
      ASSERT_EQ(frames, kFrames) << "split at " << a << " and " << b;
      ASSERT_TRUE(socket.partial.empty());
    }
  }
}

TEST(SessionSocket, OneByteAtATimeCarriesOnlyTheIncompleteFrame) {
  const std::string all = stream();
  SessionSocket socket;
  std::vector<std::string_view> pieces;
  for (std::size_t i = 0; i < all.size(); ++i)
    pieces.push_back(std::string_view(all).substr(i, 1));
  EXPECT_EQ(framesOf(pieces, socket), kFrames);
  EXPECT_TRUE(socket.partial.empty());

  // An incomplete frame stays carried, and only it.
  EXPECT_TRUE(framesOf({"PUBACK\nPUB"}, socket) == std::vector<std::string>{"PUBACK"});
  EXPECT_EQ(socket.partial, "PUB");
  EXPECT_TRUE(framesOf({"ACK\nSUB"}, socket) == std::vector<std::string>{"PUBACK"});
  EXPECT_EQ(socket.partial, "SUB");
}

TEST(SessionSocket, StoppingAndOverlongFramesAreReported) {
  SessionSocket socket;
  int seen = 0;
  const auto stopAtSecond = [&](std::string_view data) -> std::size_t {
    const std::size_t consumed = forEachFrame(data, [&](std::string_view) { return ++seen < 2; });
    return seen >= 2 ? kParseStopped : consumed;
  };
  EXPECT_EQ(receiveFrames(socket, "A\nB\nC\n", stopAtSecond), ReceiveStatus::kStopped);
  EXPECT_EQ(seen, 2);

  SessionSocket longOne;
  const auto none = [](std::string_view data) {
    return forEachFrame(data, [](auto) { return true; });
  };
  const std::string chunk(64 << 10, 'x');
  ReceiveStatus status = ReceiveStatus::kOk;
  std::size_t sent = 0;
  for (; sent <= kMaxFrameBytes && status == ReceiveStatus::kOk; sent += chunk.size())
    status = receiveFrames(longOne, chunk, none);
  EXPECT_EQ(status, ReceiveStatus::kTooLong);  // past kMaxFrameBytes without a LF
  EXPECT_GT(sent, kMaxFrameBytes);
}

}  // namespace
}  // namespace tern::loadgen
