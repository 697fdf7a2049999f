#include "broker/packet_id_set.hpp"

#include <gtest/gtest.h>

#include <random>
#include <set>

namespace tern::broker {
namespace {

TEST(PacketIdSet, InsertFindEraseAgreeWithStdSetUnderChurn) {
  PacketIdSet ids;
  std::set<std::uint16_t> reference;
  std::mt19937 random(7);
  for (int step = 0; step < 400000; ++step) {
    // Mostly a sliding window of recent ids, as a client's in-flight QoS 2 publishes are, with
    // random ids mixed in so that probe runs wrap around the table.
    const std::uint16_t id = static_cast<std::uint16_t>(
        step % 3 == 0 ? 1 + random() % 65535 : 1 + (step / 2 + random() % 64) % 65535);
    if (random() % 2 == 0) {
      ASSERT_EQ(ids.insert(id), reference.insert(id).second) << step;
    } else {
      ASSERT_EQ(ids.erase(id), reference.erase(id) == 1) << step;
    }
    ASSERT_EQ(ids.size(), reference.size());
    if (step % 997 == 0) {
      for (std::uint32_t probe = 1; probe <= 65535; probe += 61)
        ASSERT_EQ(ids.contains(static_cast<std::uint16_t>(probe)), reference.count(probe) == 1);
    }
  }
  for (std::uint16_t id : reference)
    EXPECT_TRUE(ids.contains(id));
}

TEST(PacketIdSet, AllIdsFitAndAnEmptySetHoldsNoMemory) {
  PacketIdSet ids;
  EXPECT_EQ(ids.capacityBytes(), 0u);
  for (std::uint32_t id = 1; id <= 65535; ++id)
    ASSERT_TRUE(ids.insert(static_cast<std::uint16_t>(id)));
  EXPECT_EQ(ids.size(), 65535u);
  EXPECT_FALSE(ids.insert(12345));
  EXPECT_FALSE(ids.contains(0));
  for (std::uint32_t id = 65535; id >= 1; --id)
    ASSERT_TRUE(ids.erase(static_cast<std::uint16_t>(id)));
  EXPECT_TRUE(ids.empty());
  EXPECT_GT(ids.capacityBytes(), 0u) << "emptying keeps the table (no allocation per message)";
  ids.releaseIfEmpty();
  EXPECT_EQ(ids.capacityBytes(), 0u);
  EXPECT_TRUE(ids.insert(7));
  ids.releaseIfEmpty();
  EXPECT_TRUE(ids.contains(7)) << "a set that holds ids keeps them";
}

}  // namespace
}  // namespace tern::broker
