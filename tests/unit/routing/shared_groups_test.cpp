#include "tern/routing/shared_groups.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace tern::routing {
namespace {

using Kind = SharedFilter::Kind;
using Join = SharedGroups::JoinResult;

SubscriberId sid(std::uint32_t n, unsigned qos = 0) {
  return SubscriberId::make(n % 5, n, 1 + n % 3, qos);
}

TEST(SharedFilterParse, SplitsNameAndFilter) {
  const SharedFilter f = parseSharedFilter("$share/g1/a/+/c");
  ASSERT_EQ(f.kind, Kind::kShared);
  EXPECT_EQ(f.name, "g1");
  EXPECT_EQ(f.filter, "a/+/c");
  EXPECT_EQ(parseSharedFilter("$share/g/#").filter, "#");
  EXPECT_EQ(parseSharedFilter("$share/g//").filter, "/");
  EXPECT_EQ(effectiveFilter("$share/g/a/#"), "a/#");
  EXPECT_EQ(effectiveFilter("a/#"), "a/#");
}

TEST(SharedFilterParse, OrdinaryFiltersAreNotShared) {
  for (const char* f : {"a/b", "#", "$share", "$shared/g/a", "$SHARE/g/a", "x/$share/g/a", "+/g/a"})
    EXPECT_EQ(parseSharedFilter(f).kind, Kind::kNotShared) << f;
}

TEST(SharedFilterParse, RefusesBadNamesAndMissingFilters) {
  // [MQTT-4.8.2-1]: at least one character; [MQTT-4.8.2-2]: no '/', '+' or '#'; and a filter.
  for (const char* f : {"$share/", "$share//a", "$share/g", "$share/g/", "$share/+/a", "$share/#",
                        "$share/g+/a", "$share/#/a", "$share/a#b/c"})
    EXPECT_EQ(parseSharedFilter(f).kind, Kind::kInvalid) << f;
}

class SharedGroupsTest : public ::testing::Test {
 protected:
  // The members of the groups matching `topic`, one set per group.
  std::vector<std::set<std::uint64_t>> membersOf(std::string_view topic) {
    groups.match(topic, result);
    std::vector<std::set<std::uint64_t>> out;
    for (SubscriberId handle : result.subscribers()) {
      std::set<std::uint64_t> keys;
      for (SubscriberId id : groups.members(handle))
        keys.insert(id.key());
      out.push_back(keys);
    }
    std::sort(out.begin(), out.end());
    return out;
  }

  sync::QsbrDomain domain;
  sync::QsbrDomain::Reader reader{domain};
  SharedGroups groups{domain};
  MatchResult result;
};

TEST_F(SharedGroupsTest, EmptyUntilAGroupExists) {
  EXPECT_TRUE(groups.empty());
  EXPECT_TRUE(membersOf("a").empty());
  EXPECT_EQ(groups.join("g", "a/#", sid(1)), Join::kAdded);
  EXPECT_FALSE(groups.empty());
  EXPECT_EQ(groups.groups(), 1u);
  EXPECT_EQ(groups.memberships(), 1u);
}

TEST_F(SharedGroupsTest, OneHandlePerGroupWithAllItsMembers) {
  groups.join("g", "a/#", sid(1));
  groups.join("g", "a/#", sid(2));
  groups.join("h", "a/#", sid(3));  // another name: another group
  groups.join("g", "a/+", sid(4));  // another filter: another group
  groups.join("g", "b", sid(5));    // does not match
  const std::vector<std::set<std::uint64_t>> expected = {
      {sid(1).key(), sid(2).key()}, {sid(3).key()}, {sid(4).key()}};
  auto got = membersOf("a/x");
  auto want = expected;
  std::sort(want.begin(), want.end());
  EXPECT_EQ(got, want);
  EXPECT_EQ(groups.groups(), 4u);
  EXPECT_EQ(groups.memberships(), 5u);
}

TEST_F(SharedGroupsTest, MembersKeepTheirQosAndJoiningAgainReplacesIt) {
  EXPECT_EQ(groups.join("g", "t", sid(1, 1)), Join::kAdded);
  EXPECT_EQ(groups.join("g", "t", sid(1, 1)), Join::kUnchanged);
  EXPECT_EQ(groups.join("g", "t", sid(1, 2)), Join::kReplaced);
  groups.match("t", result);
  ASSERT_EQ(result.size(), 1u);
  const auto members = groups.members(result.subscribers()[0]);
  ASSERT_EQ(members.size(), 1u);
  EXPECT_EQ(members[0], sid(1, 2));
  EXPECT_EQ(groups.memberships(), 1u);
}

TEST_F(SharedGroupsTest, TheGroupEndsWithItsLastMember) {
  groups.join("g", "t", sid(1));
  groups.join("g", "t", sid(2));
  EXPECT_FALSE(groups.leave("g", "t", sid(3)));
  EXPECT_FALSE(groups.leave("h", "t", sid(1)));
  EXPECT_TRUE(groups.leave("g", "t", sid(1)));
  EXPECT_EQ(membersOf("t"), (std::vector<std::set<std::uint64_t>>{{sid(2).key()}}));
  EXPECT_TRUE(groups.leave("g", "t", sid(2)));
  EXPECT_TRUE(membersOf("t").empty());
  EXPECT_TRUE(groups.empty());
  EXPECT_EQ(groups.memberships(), 0u);
}

TEST_F(SharedGroupsTest, AStaleHandleFindsNoMembersOnceItsSlotIsReused) {
  groups.join("g", "t", sid(1));
  groups.match("t", result);
  ASSERT_EQ(result.size(), 1u);
  const SubscriberId stale = result.subscribers()[0];
  groups.leave("g", "t", sid(1));
  EXPECT_TRUE(groups.members(stale).empty());
  groups.join("other", "u", sid(2));  // takes the freed slot
  groups.match("u", result);
  ASSERT_EQ(result.size(), 1u);
  EXPECT_EQ(SharedGroups::slotOf(result.subscribers()[0]), SharedGroups::slotOf(stale));
  EXPECT_TRUE(groups.members(stale).empty());
  EXPECT_EQ(groups.members(result.subscribers()[0]).size(), 1u);
}

TEST_F(SharedGroupsTest, SlotsAreDenseAndReused) {
  std::set<std::uint32_t> slots;
  for (std::uint32_t n = 0; n < 100; ++n)
    groups.join("g" + std::to_string(n), "t", sid(n + 1));
  groups.match("t", result);
  for (SubscriberId handle : result.subscribers())
    slots.insert(SharedGroups::slotOf(handle));
  ASSERT_EQ(slots.size(), 100u);
  EXPECT_EQ(*slots.rbegin(), 99u);
  for (std::uint32_t n = 0; n < 100; ++n)
    groups.leave("g" + std::to_string(n), "t", sid(n + 1));
  groups.join("again", "t", sid(1));
  groups.match("t", result);
  ASSERT_EQ(result.size(), 1u);
  EXPECT_LT(SharedGroups::slotOf(result.subscribers()[0]), 100u);
}

// Readers match and read member arrays while a writer joins and leaves. What must hold in any
// interleaving: the stable member of the stable group is always there, every member read belongs
// to the group it was read from (never another group's, also across slot reuse), and no member
// appears twice in one array.
TEST(SharedGroupsConcurrent, ReadersSeeOnlyTheirGroupsMembersWhileWritersChurn) {
  sync::QsbrDomain domain;
  SharedGroups groups(domain);
  // Member n of group k has slot k * 1000 + n: the group a member belongs to is in its id.
  auto member = [](std::uint32_t group, std::uint32_t n) {
    return SubscriberId::make(0, group * 1000 + n, 1, n % 3);
  };
  const std::vector<std::string> names = {"a", "b", "c", "d", "e", "f"};
  groups.join("stable", "x/#", member(99, 1));

  std::atomic<bool> done{false};
  std::atomic<std::uint64_t> checks{0};
  auto readerLoop = [&] {
    sync::QsbrDomain::Reader reader(domain);
    MatchResult out;
    std::vector<std::uint64_t> keys;
    while (!done.load(std::memory_order_acquire)) {
      groups.match("x/y", out);
      bool stableSeen = false;
      for (SubscriberId handle : out.subscribers()) {
        keys.clear();
        std::uint32_t group = ~0u;
        for (SubscriberId id : groups.members(handle)) {
          const std::uint32_t g = id.slot() / 1000;
          if (group == ~0u) group = g;
          ASSERT_EQ(g, group) << "members of two groups in one array";
          keys.push_back(id.key());
          stableSeen = stableSeen || id == member(99, 1);
        }
        std::sort(keys.begin(), keys.end());
        ASSERT_EQ(std::adjacent_find(keys.begin(), keys.end()), keys.end());
      }
      ASSERT_TRUE(stableSeen);
      checks.fetch_add(1, std::memory_order_relaxed);
      reader.quiescent();
    }
  };
  std::vector<std::thread> readers;
  for (int r = 0; r < 2; ++r)
    readers.emplace_back(readerLoop);
  std::thread writer([&] {
    std::mt19937 rng(7);
    std::vector<std::set<std::uint32_t>> joined(names.size());
    for (int op = 0; op < 40000; ++op) {
      const std::uint32_t g = rng() % names.size();
      const std::uint32_t n = 1 + rng() % 8;
      // Filters differ per group name but all match x/y; groups end and start all the time, so
      // slots are reused by other groups.
      const std::string filter = g % 2 == 0 ? "x/#" : "x/+";
      if (joined[g].count(n) == 1) {
        EXPECT_TRUE(groups.leave(names[g], filter, member(g, n)));
        joined[g].erase(n);
      } else {
        groups.join(names[g], filter, member(g, n));
        joined[g].insert(n);
      }
    }
    done.store(true, std::memory_order_release);
  });
  writer.join();
  for (std::thread& t : readers)
    t.join();
  EXPECT_GT(checks.load(), 0u);
}

}  // namespace
}  // namespace tern::routing
