#include "tern/loadgen/workload.hpp"

#include <gtest/gtest.h>

#include <set>

#include "tern/routing/shared_groups.hpp"
#include "tern/routing/topic.hpp"

namespace tern::loadgen {
namespace {

// For every (session, publisher): the session's filters match the publisher's topic exactly when
// sourceSlot() says it receives from it, forEachReceiver() lists the same sessions, and each
// session's slots are distinct and inside its tracker array.
void expectConsistent(const Workload& workload) {
  for (std::uint32_t s = 0; s < workload.sessions(); ++s) {
    std::set<std::uint32_t> slots;
    for (std::uint32_t p = 0; p < workload.clients(); ++p) {
      bool matches = false;
      for (std::uint32_t f = 0; f < workload.filterCount(s); ++f) {
        const std::string filter = workload.filter(s, f);
        ASSERT_EQ(routing::validateTopicFilter(filter), routing::TopicStatus::kOk) << filter;
        // A shared subscription matches with the filter after its share name.
        const routing::SharedFilter shared = routing::parseSharedFilter(filter);
        ASSERT_NE(shared.kind, routing::SharedFilter::Kind::kInvalid) << filter;
        matches = matches ||
                  routing::filterMatches(routing::effectiveFilter(filter), workload.topicOf(p));
      }
      const auto slot = workload.sourceSlot(s, p);
      EXPECT_EQ(matches, slot.has_value()) << "session " << s << " publisher " << p;
      if (slot) {
        EXPECT_LT(*slot, workload.sourceCount(s));
        EXPECT_TRUE(slots.insert(*slot).second);
      }
    }
    EXPECT_EQ(slots.size(), workload.sourceCount(s));
  }
  for (std::uint32_t p = 0; p < workload.clients(); ++p) {
    std::uint32_t receivers = 0;
    workload.forEachReceiver(p, [&](std::uint32_t s) {
      ++receivers;
      EXPECT_TRUE(workload.sourceSlot(s, p).has_value());
    });
    EXPECT_EQ(receivers, workload.receiversPerPublish());
    ASSERT_EQ(routing::validateTopicName(workload.topicOf(p)), routing::TopicStatus::kOk);
  }
}

TEST(Workload, FanoutRingAndWildcards) {
  expectConsistent(Workload("lg/abc", 10, 3, 2));
  expectConsistent(Workload("lg/abc", 5, 4, 0));  // everyone hears everyone else
  expectConsistent(Workload("lg/abc", 1, 0, 3));  // one publisher, K wildcard subscribers
  expectConsistent(Workload("lg/abc", 7, 0, 0));  // publish only
}

TEST(Workload, SharedSubscriptionsGiveEachSessionGroupsOfItsOwn) {
  const Workload workload("lg/abc", 10, 3, 2, true);
  expectConsistent(workload);
  EXPECT_EQ(workload.filter(4, 0), "$share/s4/lg/abc/5");
  EXPECT_EQ(workload.filter(10, 0), "$share/s10/lg/abc/+");
  EXPECT_EQ(Workload("lg/abc", 10, 3, 2).filter(4, 0), "lg/abc/5");
}

TEST(Workload, TopicsAndFilters) {
  const Workload workload("lg/run", 4, 2, 2);
  EXPECT_EQ(workload.topicOf(3), "lg/run/3");
  EXPECT_EQ(workload.filter(3, 0), "lg/run/0");  // wraps around
  EXPECT_EQ(workload.filter(3, 1), "lg/run/1");
  EXPECT_EQ(workload.filter(4, 0), "lg/run/+");
  EXPECT_EQ(workload.filter(5, 0), "lg/run/#");
  EXPECT_TRUE(workload.publishes(3));
  EXPECT_FALSE(workload.publishes(4));
  EXPECT_FALSE(workload.sourceSlot(0, 0).has_value());  // never its own messages
  EXPECT_FALSE(workload.sourceSlot(0, 9).has_value());  // no such publisher
}

TEST(Workload, RunPrefixesAreFreshValidTopics) {
  const std::string a = makeRunPrefix();
  const std::string b = makeRunPrefix();
  EXPECT_NE(a, b);
  EXPECT_EQ(a.size(), 19u);
  EXPECT_TRUE(a.starts_with("lg/"));
  EXPECT_EQ(routing::validateTopicName(a), routing::TopicStatus::kOk);
}

}  // namespace
}  // namespace tern::loadgen
