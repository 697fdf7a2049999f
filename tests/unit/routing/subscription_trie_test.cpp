#include "tern/routing/subscription_trie.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <map>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "tern/routing/topic.hpp"

namespace tern::routing {
namespace {

using Result = SubscriptionTrie::SubscribeResult;
// key -> QoS, the form in which match() results are compared.
using KeyQos = std::map<std::uint64_t, unsigned>;

SubscriberId sid(std::uint32_t n, unsigned qos = 0) {
  return SubscriberId::make(n % 7, n, 1 + n % 5, qos);
}

// Every test owns its domain; `reader` registers the test thread so that it may call match().
class SubscriptionTrieTest : public ::testing::Test {
 protected:
  KeyQos matchKeys(std::string_view topic) {
    trie.match(topic, result);
    KeyQos keys;
    for (SubscriberId id : result.subscribers()) {
      EXPECT_TRUE(keys.emplace(id.key(), id.qos()).second) << "duplicate key for " << topic;
    }
    return keys;
  }
  bool matches(std::string_view topic, SubscriberId id) {
    const KeyQos keys = matchKeys(topic);
    return keys.count(id.key()) == 1;
  }

  sync::QsbrDomain domain;
  sync::QsbrDomain::Reader reader{domain};
  SubscriptionTrie trie{domain};
  MatchResult result;
};

TEST_F(SubscriptionTrieTest, EmptyTrieMatchesNothing) {
  trie.match("a/b", result);
  EXPECT_TRUE(result.empty());
  EXPECT_EQ(trie.size(), 0u);
}

TEST_F(SubscriptionTrieTest, ExactFilterMatchesOnlyItsTopic) {
  EXPECT_EQ(trie.subscribe("a/b", sid(1)), Result::kAdded);
  EXPECT_TRUE(matches("a/b", sid(1)));
  for (const char* topic : {"a", "a/b/c", "a/bc", "ab", "a/", "/a/b", "b"}) {
    EXPECT_TRUE(matchKeys(topic).empty()) << topic;
  }
}

TEST_F(SubscriptionTrieTest, EmptyLevelsAreLevels) {
  trie.subscribe("a//b", sid(1));
  trie.subscribe("/a", sid(2));
  trie.subscribe("a/", sid(3));
  trie.subscribe("/", sid(4));
  trie.subscribe("//", sid(5));
  EXPECT_EQ(matchKeys("a//b"), (KeyQos{{sid(1).key(), 0}}));
  EXPECT_EQ(matchKeys("/a"), (KeyQos{{sid(2).key(), 0}}));
  EXPECT_EQ(matchKeys("a/"), (KeyQos{{sid(3).key(), 0}}));
  EXPECT_EQ(matchKeys("/"), (KeyQos{{sid(4).key(), 0}}));
  EXPECT_EQ(matchKeys("//"), (KeyQos{{sid(5).key(), 0}}));
  EXPECT_TRUE(matchKeys("a/b").empty());
  EXPECT_TRUE(matchKeys("a").empty());
}

TEST_F(SubscriptionTrieTest, PlusMatchesExactlyOneLevelIncludingAnEmptyOne) {
  trie.subscribe("a/+", sid(1));
  trie.subscribe("+", sid(2));
  trie.subscribe("+/+", sid(3));
  EXPECT_TRUE(matches("a/b", sid(1)));
  EXPECT_TRUE(matches("a/", sid(1)));
  EXPECT_FALSE(matches("a", sid(1)));
  EXPECT_FALSE(matches("a/b/c", sid(1)));
  EXPECT_TRUE(matches("a", sid(2)));
  EXPECT_FALSE(matches("/", sid(2)));
  EXPECT_TRUE(matches("/", sid(3)));
  EXPECT_TRUE(matches("x/y", sid(3)));
  EXPECT_FALSE(matches("x", sid(3)));
}

TEST_F(SubscriptionTrieTest, HashMatchesTheParentLevelAndEverythingBelow) {
  trie.subscribe("a/#", sid(1));
  trie.subscribe("#", sid(2));
  trie.subscribe("a/+/#", sid(3));
  for (const char* topic : {"a", "a/", "a/b", "a/b/c", "a//"}) {
    EXPECT_TRUE(matches(topic, sid(1))) << topic;
  }
  EXPECT_FALSE(matches("ab", sid(1)));
  EXPECT_FALSE(matches("b/a", sid(1)));
  for (const char* topic : {"a", "/", "x/y/z", "a/b"}) {
    EXPECT_TRUE(matches(topic, sid(2))) << topic;
  }
  EXPECT_TRUE(matches("a/b", sid(3)));
  EXPECT_TRUE(matches("a/", sid(3)));
  EXPECT_TRUE(matches("a/b/c/d", sid(3)));
  EXPECT_FALSE(matches("a", sid(3)));
}

TEST_F(SubscriptionTrieTest, FirstLevelWildcardsDoNotMatchDollarTopics) {
  trie.subscribe("#", sid(1));
  trie.subscribe("+/x", sid(2));
  trie.subscribe("+/#", sid(3));
  trie.subscribe("$SYS/#", sid(4));
  trie.subscribe("$SYS/+", sid(5));
  trie.subscribe("a/+", sid(6));
  trie.subscribe("$", sid(7));
  EXPECT_EQ(matchKeys("$SYS/x"), (KeyQos{{sid(4).key(), 0}, {sid(5).key(), 0}}));
  EXPECT_EQ(matchKeys("$SYS"), (KeyQos{{sid(4).key(), 0}}));
  EXPECT_EQ(matchKeys("$"), (KeyQos{{sid(7).key(), 0}}));
  // Only the first character counts.
  EXPECT_EQ(matchKeys("a/$x"), (KeyQos{{sid(1).key(), 0}, {sid(3).key(), 0}, {sid(6).key(), 0}}));
  EXPECT_EQ(matchKeys("b/x"), (KeyQos{{sid(1).key(), 0}, {sid(2).key(), 0}, {sid(3).key(), 0}}));
}

TEST_F(SubscriptionTrieTest, StarIsAnOrdinaryCharacter) {
  trie.subscribe("a/*", sid(1));
  EXPECT_TRUE(matches("a/*", sid(1)));
  EXPECT_FALSE(matches("a/b", sid(1)));
  EXPECT_FALSE(matches("a/*/c", sid(1)));
}

TEST_F(SubscriptionTrieTest, OverlappingFiltersGiveOneEntryWithTheHighestQos) {
  trie.subscribe("a/+", sid(1, 0));
  trie.subscribe("a/#", sid(1, 2));
  trie.subscribe("a/b", sid(1, 1));
  trie.subscribe("a/b", sid(2, 1));
  trie.subscribe("#", sid(2, 0));
  trie.subscribe("+/b", sid(3, 0));
  EXPECT_EQ(matchKeys("a/b"), (KeyQos{{sid(1).key(), 2}, {sid(2).key(), 1}, {sid(3).key(), 0}}));
  EXPECT_EQ(result.size(), 3u);
  EXPECT_EQ(matchKeys("a/c"), (KeyQos{{sid(1).key(), 2}, {sid(2).key(), 0}}));
  EXPECT_EQ(matchKeys("x/b"), (KeyQos{{sid(2).key(), 0}, {sid(3).key(), 0}}));
}

TEST_F(SubscriptionTrieTest, SubscribeAgainReplacesOnlyWhenTheQosDiffers) {
  EXPECT_EQ(trie.subscribe("a/b", sid(1, 1)), Result::kAdded);
  EXPECT_EQ(trie.subscribe("a/b", sid(1, 1)), Result::kUnchanged);
  EXPECT_EQ(trie.subscribe("a/b", sid(1, 2)), Result::kReplaced);
  EXPECT_EQ(trie.size(), 1u);
  EXPECT_EQ(matchKeys("a/b"), (KeyQos{{sid(1).key(), 2}}));
  // The same in a node with many subscribers (the array form).
  for (std::uint32_t n = 2; n < 200; ++n)
    EXPECT_EQ(trie.subscribe("a/b", sid(n, 0)), Result::kAdded);
  EXPECT_EQ(trie.subscribe("a/b", sid(150, 0)), Result::kUnchanged);
  EXPECT_EQ(trie.subscribe("a/b", sid(150, 1)), Result::kReplaced);
  EXPECT_EQ(trie.subscribe("a/b", sid(1, 0)), Result::kReplaced);
  EXPECT_EQ(trie.size(), 199u);
  const KeyQos keys = matchKeys("a/b");
  EXPECT_EQ(keys.size(), 199u);
  EXPECT_EQ(keys.at(sid(150).key()), 1u);
  EXPECT_EQ(keys.at(sid(1).key()), 0u);
  EXPECT_EQ(keys.at(sid(2).key()), 0u);
}

TEST_F(SubscriptionTrieTest, UnsubscribeOfAbsentEntriesReturnsFalse) {
  trie.subscribe("a/b", sid(1));
  EXPECT_FALSE(trie.unsubscribe("a/c", sid(1)));
  EXPECT_FALSE(trie.unsubscribe("a", sid(1)));
  EXPECT_FALSE(trie.unsubscribe("a/b/c", sid(1)));
  EXPECT_FALSE(trie.unsubscribe("a/+", sid(1)));
  EXPECT_FALSE(trie.unsubscribe("a/b", sid(2)));
  EXPECT_EQ(trie.size(), 1u);
  // By key: the QoS of the id does not matter.
  EXPECT_TRUE(trie.unsubscribe("a/b", sid(1, 2)));
  EXPECT_FALSE(trie.unsubscribe("a/b", sid(1)));
  EXPECT_EQ(trie.size(), 0u);
  EXPECT_TRUE(matchKeys("a/b").empty());
}

TEST_F(SubscriptionTrieTest, ManySubscribersOnOneFilterGrowAndShrink) {
  constexpr std::uint32_t kCount = 3000;
  for (std::uint32_t n = 1; n <= kCount; ++n)
    ASSERT_EQ(trie.subscribe("fan/out", sid(n, n % 3)), Result::kAdded);
  KeyQos expected;
  for (std::uint32_t n = 1; n <= kCount; ++n)
    expected[sid(n).key()] = n % 3;
  EXPECT_EQ(matchKeys("fan/out"), expected);
  // Remove all but every 50th, then add some back: exercises compaction and the key index.
  for (std::uint32_t n = 1; n <= kCount; ++n) {
    if (n % 50 == 0) continue;
    ASSERT_TRUE(trie.unsubscribe("fan/out", sid(n)));
    expected.erase(sid(n).key());
  }
  EXPECT_EQ(matchKeys("fan/out"), expected);
  for (std::uint32_t n = 1; n <= 100; ++n) {
    const unsigned qos = (n + 1) % 3;  // differs from the first subscription's
    EXPECT_EQ(trie.subscribe("fan/out", sid(n, qos)),
              n % 50 == 0 ? Result::kReplaced : Result::kAdded);
    expected[sid(n).key()] = qos;
  }
  EXPECT_EQ(matchKeys("fan/out"), expected);
  EXPECT_EQ(trie.size(), expected.size());
  // Down to one subscriber and back up.
  for (const auto& [key, qos] : expected) {
    if (key != sid(2000).key()) {
      ASSERT_TRUE(trie.unsubscribe("fan/out", SubscriberId::fromBits(key)));
    }
  }
  EXPECT_EQ(matchKeys("fan/out"), (KeyQos{{sid(2000).key(), 2}}));
  EXPECT_EQ(trie.subscribe("fan/out", sid(7, 1)), Result::kAdded);
  EXPECT_EQ(matchKeys("fan/out"), (KeyQos{{sid(2000).key(), 2}, {sid(7).key(), 1}}));
  EXPECT_EQ(trie.size(), 2u);
}

TEST_F(SubscriptionTrieTest, ManyChildrenOfOneNodeGrowAndShrink) {
  constexpr std::uint32_t kCount = 5000;
  std::vector<std::uint32_t> order(kCount);
  for (std::uint32_t n = 0; n < kCount; ++n) {
    order[n] = n;
    trie.subscribe("dev/" + std::to_string(n) + "/t", sid(n + 1));
  }
  std::mt19937 rng(7);
  std::shuffle(order.begin(), order.end(), rng);
  for (std::uint32_t i = 0; i < kCount; ++i) {
    const std::uint32_t n = order[i];
    ASSERT_TRUE(trie.unsubscribe("dev/" + std::to_string(n) + "/t", sid(n + 1)));
    if (i % 97 == 0) {
      // Everything not yet removed is still found; the removed one is gone.
      for (std::uint32_t j = i + 1; j < kCount; j += 13) {
        const std::uint32_t m = order[j];
        ASSERT_TRUE(matches("dev/" + std::to_string(m) + "/t", sid(m + 1))) << m;
      }
      ASSERT_TRUE(matchKeys("dev/" + std::to_string(n) + "/t").empty());
    }
  }
  EXPECT_EQ(trie.size(), 0u);
}

TEST_F(SubscriptionTrieTest, FullRemovalPrunesAndResubscribingWorks) {
  const std::vector<std::string> filters = {"a/b/c", "a/+/c", "a/#", "#", "+", "x//y", "/"};
  for (int round = 0; round < 3; ++round) {
    for (std::size_t i = 0; i < filters.size(); ++i)
      ASSERT_EQ(trie.subscribe(filters[i], sid(i + 1)), Result::kAdded);
    EXPECT_EQ(trie.size(), filters.size());
    EXPECT_EQ(matchKeys("a/b/c").size(), 4u);
    for (std::size_t i = 0; i < filters.size(); ++i)
      ASSERT_TRUE(trie.unsubscribe(filters[i], sid(i + 1)));
    EXPECT_EQ(trie.size(), 0u);
    EXPECT_TRUE(matchKeys("a/b/c").empty());
    EXPECT_TRUE(matchKeys("x//y").empty());
  }
}

TEST_F(SubscriptionTrieTest, UnsubscribeRetiresTheNodesItEmpties) {
  trie.subscribe("a/b/c", sid(1));
  trie.subscribe("a/b", sid(2));
  domain.barrier();
  // The reader stays online, so nothing retired from here on can be freed yet.
  EXPECT_EQ(domain.pending(), 0u);
  ASSERT_TRUE(trie.unsubscribe("a/b/c", sid(1)));
  const std::size_t afterLeaf = domain.pending();
  EXPECT_GE(afterLeaf, 1u) << "the node of 'c' was not pruned";
  ASSERT_TRUE(trie.unsubscribe("a/b", sid(2)));
  EXPECT_GE(domain.pending(), afterLeaf + 2) << "the nodes of 'a' and 'b' were not pruned";
  reader.offline();  // a grace period needs this reader out of its read section
  domain.barrier();
  reader.online();
  EXPECT_EQ(domain.pending(), 0u);
}

TEST_F(SubscriptionTrieTest, VeryDeepFiltersNeedNoRecursion) {
  std::string deep = "a";
  for (int i = 0; i < 20000; ++i)
    deep += "/a";
  trie.subscribe(deep, sid(1));
  trie.subscribe(deep + "/#", sid(2));
  EXPECT_EQ(matchKeys(deep), (KeyQos{{sid(1).key(), 0}, {sid(2).key(), 0}}));
  EXPECT_TRUE(trie.unsubscribe(deep, sid(1)));
  EXPECT_EQ(matchKeys(deep), (KeyQos{{sid(2).key(), 0}}));
  // The destructor frees the remaining 20000-level chain.
}

// Random filters and topics over a few levels ("", "$", "*" included) so that they collide often;
// after each batch of random subscribes/unsubscribes, match() must return exactly the keys (and
// highest QoS) that a naive scan with filterMatches() finds.
class Differential {
 public:
  explicit Differential(std::uint32_t seed) : rng_(seed) {}

  std::string topic() {
    std::string t = level(true);
    const int levels = pick(4);
    for (int i = 0; i < levels; ++i)
      t += "/" + level(false);
    return t.empty() ? "b" : t;  // a topic has at least one byte
  }
  std::string filter() {
    std::string f;
    const int levels = 1 + pick(4);
    for (int i = 0; i < levels; ++i) {
      if (i > 0) f += "/";
      const int r = pick(10);
      if (r < 2) {
        f += "+";
      } else if (r == 2) {
        return f + "#";
      } else {
        f += level(i == 0);
      }
    }
    return f.empty() ? "b" : f;
  }
  int pick(int n) { return std::uniform_int_distribution<int>(0, n - 1)(rng_); }

 private:
  std::string level(bool first) {
    static const char* const kLevels[] = {"a", "b", "", "ab", "*", "$s"};
    // '$' mostly at the start, where it matters, but sometimes elsewhere.
    const int n = first ? 6 : (pick(10) == 0 ? 6 : 5);
    return kLevels[pick(n)];
  }
  std::mt19937 rng_;
};

TEST_F(SubscriptionTrieTest, DifferentialAgainstNaiveScan) {
  for (std::uint32_t seed : {1u, 2u, 3u}) {
    Differential gen(seed);
    std::map<std::pair<std::string, std::uint64_t>, unsigned> model;  // (filter, key) -> QoS
    for (int round = 0; round < 20; ++round) {
      for (int op = 0; op < 150; ++op) {
        const std::uint32_t n = 1 + gen.pick(300);
        if (gen.pick(10) < 6 || model.empty()) {
          const std::string f = gen.filter();
          const unsigned qos = gen.pick(3);
          const auto it = model.find({f, sid(n).key()});
          const Result expected = it == model.end()   ? Result::kAdded
                                  : it->second == qos ? Result::kUnchanged
                                                      : Result::kReplaced;
          ASSERT_EQ(trie.subscribe(f, sid(n, qos)), expected) << f;
          model[{f, sid(n).key()}] = qos;
        } else if (gen.pick(5) > 0) {
          auto it = model.begin();
          std::advance(it, gen.pick(static_cast<int>(model.size())));
          ASSERT_TRUE(trie.unsubscribe(it->first.first, SubscriberId::fromBits(it->first.second)));
          model.erase(it);
        } else {
          const std::string f = gen.filter();
          ASSERT_EQ(trie.unsubscribe(f, sid(n)), model.erase({f, sid(n).key()}) == 1) << f;
        }
      }
      ASSERT_EQ(trie.size(), model.size());
      for (int probe = 0; probe < 80; ++probe) {
        const std::string t = gen.topic();
        KeyQos expected;
        for (const auto& [entry, qos] : model) {
          if (!filterMatches(entry.first, t)) continue;
          unsigned& best = expected[entry.second];
          best = std::max(best, qos);
        }
        ASSERT_EQ(matchKeys(t), expected) << "seed " << seed << " round " << round << " " << t;
      }
    }
    for (const auto& [entry, qos] : model)
      ASSERT_TRUE(trie.unsubscribe(entry.first, SubscriberId::fromBits(entry.second)));
    ASSERT_EQ(trie.size(), 0u);
    ASSERT_TRUE(matchKeys("a").empty());
  }
}

// Readers match continuously while a writer churns. A concurrent result is judged by what must
// hold for any linearizable outcome, whatever the interleaving:
//   - a "stable" subscription, made before the readers start and never removed, is always
//     matched, with at least its QoS;
//   - every returned key is a stable subscriber of a matching filter or a churned key whose only
//     filter matches the topic (churned keys are each bound to one filter);
//   - a key whose only matching subscriptions are stable has exactly its stable QoS;
//   - no key appears twice.
// The churn covers node creation and pruning, table growth and shrinking, subscriber arrays
// growing, compacting and falling back to one word, QoS replacement, and keys that are both stable
// on one filter and churned on another (so that deduplication runs during changes).
TEST(TrieConcurrent, ReadersSeeConsistentResultsWhileAWriterChurns) {
  sync::QsbrDomain domain;
  SubscriptionTrie trie(domain);

  // Half of the topics land on nodes that the writer creates and prunes all the time.
  const std::vector<std::string> topics = {
      "$c/x", "$c/x",  "a/b",   "a/c",    "a/b/c", "x/y",    "$s/b",  "a",    "f/o",    "a//b",
      "/",    "e/1/2", "$s",    "f/o/o",  "b/a",   "d/17",   "d/3/t", "d/3",  "d/99/t", "d/42/t",
      "d/5",  "d/8/t", "d/101", "d/64/t", "d/11",  "d/10/t", "d/199", "d/0/t"};
  struct Stable {
    std::string filter;
    std::uint32_t n;
    unsigned qos;
  };
  const std::vector<Stable> stable = {
      {"a/b", 1, 1},   {"a/+", 2, 0}, {"#", 3, 2},    {"a/#", 4, 1},  {"$s/#", 5, 0}, {"+/b", 6, 2},
      {"d/+/t", 7, 1}, {"f/o", 8, 0}, {"a//b", 9, 1}, {"f/+", 10, 2}, {"/", 11, 0}};
  for (const Stable& s : stable)
    trie.subscribe(s.filter, sid(s.n, s.qos));

  // Churned keys: 1..11 again (also stable elsewhere), 100..1199 spread over shared filters
  // (subscriber arrays) and unique ones (nodes created and pruned), and a crowd of 2000 on "$c/x".
  constexpr std::uint32_t kCrowdFirst = 2000;
  constexpr std::uint32_t kCrowdEnd = 4000;
  const std::vector<std::string> shared = {"a/b", "a/+", "f/o", "d/+/t",
                                           "+/+", "e/#", "$s",  "a/b/c"};
  auto churnFilter = [&](std::uint32_t n) -> std::string {
    // A large subscriber array, alone in matching its topic (no first-level wildcard matches a
    // '$' topic), so that match() returns its scan as is, without deduplication.
    if (n >= kCrowdFirst) return "$c/x";
    if (n < 100) return shared[n % shared.size()];
    if (n % 3 == 0) return shared[n % shared.size()];
    return "d/" + std::to_string(n % 200) + (n % 2 == 0 ? "/t" : "");
  };

  // What each topic may return, computed once so that readers spend their time in match():
  // key -> the exact QoS it must have, or kAnyQos when a churned filter of the key matches.
  constexpr int kAnyQos = -1;
  struct Expectation {
    std::map<std::uint64_t, int> allowed;
    std::vector<std::pair<std::uint64_t, unsigned>> required;  // stable: key, minimum QoS
  };
  std::vector<Expectation> expectations(topics.size());
  for (std::size_t t = 0; t < topics.size(); ++t) {
    Expectation& e = expectations[t];
    for (const Stable& s : stable) {
      if (!filterMatches(s.filter, topics[t])) continue;
      e.required.emplace_back(sid(s.n).key(), s.qos);
      int& qos = e.allowed.emplace(sid(s.n).key(), 0).first->second;
      qos = std::max(qos, static_cast<int>(s.qos));
    }
    for (std::uint32_t n = 1; n < kCrowdEnd; ++n) {
      if (filterMatches(churnFilter(n), topics[t])) e.allowed[sid(n).key()] = kAnyQos;
    }
  }

  std::atomic<bool> done{false};
  std::atomic<std::uint64_t> checks{0};
  auto readerLoop = [&](std::uint32_t seed) {
    sync::QsbrDomain::Reader reader(domain);
    MatchResult out;
    std::vector<std::uint64_t> keys;
    std::mt19937 rng(seed);
    while (!done.load(std::memory_order_acquire)) {
      const std::size_t t = rng() % topics.size();
      trie.match(topics[t], out);
      const Expectation& e = expectations[t];
      keys.clear();
      for (SubscriberId id : out.subscribers()) {
        keys.push_back(id.key());
        const auto it = e.allowed.find(id.key());
        ASSERT_NE(it, e.allowed.end()) << "key " << id.slot() << " does not match " << topics[t];
        if (it->second != kAnyQos) {
          ASSERT_EQ(static_cast<int>(id.qos()), it->second) << topics[t];
        }
      }
      std::sort(keys.begin(), keys.end());
      ASSERT_EQ(std::adjacent_find(keys.begin(), keys.end()), keys.end())
          << "duplicate in " << topics[t];
      for (const auto& [key, minQos] : e.required) {
        const auto it = std::find_if(out.subscribers().begin(), out.subscribers().end(),
                                     [&](SubscriberId id) { return id.key() == key; });
        ASSERT_NE(it, out.subscribers().end()) << "stable subscriber missing for " << topics[t];
        ASSERT_GE(it->qos(), minQos) << topics[t];
      }
      checks.fetch_add(1, std::memory_order_relaxed);
      reader.quiescent();
    }
  };

  std::vector<std::thread> readers;
  for (std::uint32_t r = 0; r < 2; ++r)
    readers.emplace_back(readerLoop, r + 1);

  auto writerLoop = [&] {
    std::mt19937 rng(42);
    std::set<std::uint32_t> subscribed;
    for (std::uint32_t n = kCrowdFirst; n < kCrowdEnd; ++n) {
      trie.subscribe(churnFilter(n), sid(n));
      subscribed.insert(n);
    }
    for (int op = 0; op < 60000; ++op) {
      std::uint32_t n = rng() % 1100;
      if (n >= 12 && n < 100) n = 100 + n;
      if (n == 0) n = 1;
      if (op % 2 == 0) n = kCrowdFirst + rng() % (kCrowdEnd - kCrowdFirst);
      switch (rng() % 4) {
        case 0:
          if (subscribed.erase(n) == 1) {
            ASSERT_TRUE(trie.unsubscribe(churnFilter(n), sid(n)));
          }
          break;
        case 1:
          // A session that leaves and comes back at once: the key is removed from one slot of a
          // subscriber array and appended at its end while readers may be scanning it.
          if (subscribed.count(n) == 1) {
            ASSERT_TRUE(trie.unsubscribe(churnFilter(n), sid(n)));
          }
          [[fallthrough]];
        default:
          trie.subscribe(churnFilter(n), sid(n, rng() % 3));
          subscribed.insert(n);
      }
      if (op % 10000 == 9999) {
        // Drop everything churned at once: arrays fall back, nodes are pruned.
        for (std::uint32_t m : subscribed)
          ASSERT_TRUE(trie.unsubscribe(churnFilter(m), sid(m)));
        subscribed.clear();
        ASSERT_EQ(trie.size(), stable.size());
      }
    }
  };
  std::thread writer([&] {
    writerLoop();  // returns early when an assertion fails
    done.store(true, std::memory_order_release);
  });
  writer.join();
  for (std::thread& t : readers)
    t.join();
  EXPECT_GT(checks.load(), 0u);
}

}  // namespace
}  // namespace tern::routing
