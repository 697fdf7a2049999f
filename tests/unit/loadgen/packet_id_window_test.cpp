#include "tern/loadgen/packet_id_window.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <deque>
#include <map>
#include <random>
#include <set>

namespace tern::loadgen {
namespace {

using Stage = PacketIdWindow::Stage;

TEST(PacketIdWindow, HandsOutIdsInSequenceFromOne) {
  PacketIdWindow window;
  EXPECT_TRUE(window.empty());
  EXPECT_EQ(window.acquire(100, Stage::kAwaitingAck), 1);
  EXPECT_EQ(window.acquire(200, Stage::kAwaitingAck), 2);
  EXPECT_EQ(window.acquire(300, Stage::kAwaitingRec), 3);
  EXPECT_EQ(window.size(), 3u);
  EXPECT_EQ(window.inFlight(), 3u);
  EXPECT_EQ(window.stage(1), Stage::kAwaitingAck);
  EXPECT_EQ(window.stage(3), Stage::kAwaitingRec);
  EXPECT_EQ(window.stage(4), Stage::kRetired);  // never handed out
  EXPECT_EQ(window.stage(0), Stage::kRetired);  // not a packet id
}

TEST(PacketIdWindow, RetireReturnsTheIntendedTimeOnceAndOnlyAtTheRightStage) {
  PacketIdWindow window;
  const std::uint16_t a = window.acquire(111, Stage::kAwaitingAck);
  const std::uint16_t b = window.acquire(222, Stage::kAwaitingRec);
  std::int64_t intended = 0;
  EXPECT_FALSE(window.retire(b, Stage::kAwaitingAck, intended));   // QoS 2 id PUBACKed
  EXPECT_FALSE(window.retire(b, Stage::kAwaitingComp, intended));  // PUBCOMP before PUBREC
  EXPECT_TRUE(window.retire(a, Stage::kAwaitingAck, intended));
  EXPECT_EQ(intended, 111);
  EXPECT_FALSE(window.retire(a, Stage::kAwaitingAck, intended));  // a repeated PUBACK
  EXPECT_TRUE(window.received(b));
  EXPECT_FALSE(window.received(b));  // a repeated PUBREC moves nothing
  EXPECT_EQ(window.stage(b), Stage::kAwaitingComp);
  EXPECT_TRUE(window.retire(b, Stage::kAwaitingComp, intended));
  EXPECT_EQ(intended, 222);
  EXPECT_TRUE(window.empty());
  EXPECT_EQ(window.inFlight(), 0u);
  EXPECT_FALSE(window.retire(0, Stage::kAwaitingAck, intended));
}

TEST(PacketIdWindow, OutOfOrderAcksKeepTheirPlaceUntilTheOldestRetires) {
  PacketIdWindow window;
  for (int i = 0; i < 3; ++i)
    window.acquire(i, Stage::kAwaitingAck);
  std::int64_t intended = 0;
  ASSERT_TRUE(window.retire(2, Stage::kAwaitingAck, intended));
  ASSERT_TRUE(window.retire(3, Stage::kAwaitingAck, intended));
  EXPECT_EQ(window.inFlight(), 1u);
  EXPECT_EQ(window.size(), 3u);  // 2 and 3 wait behind 1
  EXPECT_EQ(window.acquire(9, Stage::kAwaitingAck), 4);
  ASSERT_TRUE(window.retire(1, Stage::kAwaitingAck, intended));
  EXPECT_EQ(window.size(), 1u);  // only 4 is left
  EXPECT_EQ(window.stage(4), Stage::kAwaitingAck);
}

TEST(PacketIdWindow, WrapsAfter65535AndSkipsZero) {
  PacketIdWindow window;
  std::int64_t intended = 0;
  for (std::uint32_t expected = 1; expected <= 65535; ++expected) {
    ASSERT_EQ(window.acquire(expected, Stage::kAwaitingAck), expected);
    ASSERT_TRUE(window.retire(static_cast<std::uint16_t>(expected), Stage::kAwaitingAck, intended));
  }
  EXPECT_EQ(window.acquire(7, Stage::kAwaitingAck), 1);
  EXPECT_EQ(window.acquire(8, Stage::kAwaitingAck), 2);
}

TEST(PacketIdWindow, FullWhenEveryIdIsInFlightAndFreeAgainWhenTheOldestRetires) {
  PacketIdWindow window;
  std::int64_t intended = 0;
  // Start the window at id 1001, so that filling it wraps past 65535.
  for (std::uint16_t id = 1; id <= 1000; ++id) {
    window.acquire(0, Stage::kAwaitingAck);
    ASSERT_TRUE(window.retire(id, Stage::kAwaitingAck, intended));
  }
  std::set<std::uint16_t> ids;
  while (!window.full())
    ids.insert(window.acquire(0, Stage::kAwaitingAck));
  EXPECT_EQ(ids.size(), PacketIdWindow::kMaxInFlight);  // every id once
  EXPECT_EQ(ids.count(0), 0u);
  EXPECT_EQ(window.inFlight(), PacketIdWindow::kMaxInFlight);
  // Retiring the youngest (1000) frees nothing: the next id would be 1001, still in flight.
  ASSERT_TRUE(window.retire(1000, Stage::kAwaitingAck, intended));
  EXPECT_TRUE(window.full());
  ASSERT_TRUE(window.retire(1001, Stage::kAwaitingAck, intended));
  EXPECT_FALSE(window.full());
  EXPECT_EQ(window.acquire(0, Stage::kAwaitingAck), 1001);
  EXPECT_TRUE(window.full());
}

// Random acknowledgement orders against a model that remembers every id in flight: the window
// never hands out an id still in flight and returns each publish's own intended time.
TEST(PacketIdWindow, NeverReusesAnIdInFlight) {
  std::mt19937 random(7);
  PacketIdWindow window;
  std::map<std::uint16_t, std::int64_t> inFlight;
  std::deque<std::uint16_t> order;
  std::int64_t next = 0;
  for (int step = 0; step < 400'000; ++step) {
    const bool publish = !window.full() && (inFlight.empty() || random() % 100 < 52);
    if (publish) {
      const std::uint16_t id = window.acquire(next, Stage::kAwaitingAck);
      ASSERT_NE(id, 0);
      ASSERT_EQ(inFlight.count(id), 0u) << "id " << id << " reused while in flight";
      inFlight[id] = next++;
      order.push_back(id);
      continue;
    }
    // Mostly the oldest (as brokers do), sometimes any other.
    const std::size_t pick = random() % 8 == 0 ? random() % order.size() : 0;
    const std::uint16_t id = order[pick];
    order.erase(order.begin() + static_cast<std::ptrdiff_t>(pick));
    std::int64_t intended = -1;
    ASSERT_TRUE(window.retire(id, Stage::kAwaitingAck, intended));
    ASSERT_EQ(intended, inFlight[id]);
    inFlight.erase(id);
    ASSERT_EQ(window.inFlight(), inFlight.size());
  }
  EXPECT_GT(next, 65535);  // wrapped at least once
}

}  // namespace
}  // namespace tern::loadgen
