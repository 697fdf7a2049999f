#include "tern/routing/retained_store.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <map>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "tern/routing/topic.hpp"

namespace tern::routing {
namespace {

using common::Message;
using common::MessageRef;
// topic -> contents, the form in which visits are compared.
using Visited = std::map<std::string, std::string>;

MessageRef msg(std::string_view topic, std::string_view contents) {
  return Message::make(topic, contents, true);
}

// Every test owns its domain; `reader` registers the test thread so that it may read the store.
class RetainedStoreTest : public ::testing::Test {
 protected:
  Visited match(std::string_view filter) {
    Visited out;
    store.forEachMatch(filter, [&](const Message& m) {
      EXPECT_TRUE(out.emplace(m.topic(), m.contents()).second) << "visited twice: " << m.topic();
    });
    return out;
  }
  Visited all() {
    Visited out;
    store.forEach([&](const Message& m) {
      EXPECT_TRUE(out.emplace(m.topic(), m.contents()).second) << "visited twice: " << m.topic();
    });
    return out;
  }

  sync::QsbrDomain domain;
  sync::QsbrDomain::Reader reader{domain};
  RetainedStore store{domain};
};

TEST_F(RetainedStoreTest, EmptyStoreVisitsNothing) {
  EXPECT_TRUE(match("#").empty());
  EXPECT_TRUE(all().empty());
  EXPECT_EQ(store.size(), 0u);
  EXPECT_EQ(store.bytes(), 0u);
}

TEST_F(RetainedStoreTest, SetReplacesAndCountsBytes) {
  MessageRef first = msg("a/b", "one");
  const std::size_t firstBytes = first->footprint();
  store.set(std::move(first));
  EXPECT_EQ(store.size(), 1u);
  EXPECT_EQ(store.bytes(), firstBytes);
  EXPECT_EQ(match("a/b"), (Visited{{"a/b", "one"}}));

  MessageRef second = msg("a/b", "second value");
  const std::size_t secondBytes = second->footprint();
  store.set(std::move(second));
  EXPECT_EQ(store.size(), 1u);
  EXPECT_EQ(store.bytes(), secondBytes);
  EXPECT_EQ(match("a/b"), (Visited{{"a/b", "second value"}}));

  store.set(msg("a", "parent"));
  EXPECT_EQ(store.size(), 2u);
  EXPECT_EQ(all(), (Visited{{"a", "parent"}, {"a/b", "second value"}}));
}

TEST_F(RetainedStoreTest, EmptyContentsDeleteTheRetainedMessage) {
  store.set(msg("a/b", "x"));
  store.set(msg("a/b/c", "y"));
  store.set(msg("a/b", ""));
  EXPECT_EQ(store.size(), 1u);
  EXPECT_EQ(all(), (Visited{{"a/b/c", "y"}}));
  store.set(msg("never/set", ""));  // deleting nothing is fine
  EXPECT_EQ(store.size(), 1u);
  EXPECT_EQ(store.bytes(), msg("a/b/c", "y")->footprint());
}

TEST_F(RetainedStoreTest, EraseReturnsWhetherThereWasAMessage) {
  store.set(msg("a/b/c", "x"));
  EXPECT_FALSE(store.erase("a"));  // a node on the path, but no message
  EXPECT_FALSE(store.erase("a/b"));
  EXPECT_FALSE(store.erase("a/b/c/d"));
  EXPECT_FALSE(store.erase("z"));
  EXPECT_TRUE(store.erase("a/b/c"));
  EXPECT_FALSE(store.erase("a/b/c"));
  EXPECT_EQ(store.size(), 0u);
  EXPECT_EQ(store.bytes(), 0u);
  EXPECT_TRUE(all().empty());
}

TEST_F(RetainedStoreTest, WildcardsFollowTheMatchingRules) {
  for (const char* topic : {"a", "a/", "a/b", "a/b/c", "a//c", "/a", "b/c", "$SYS/x", "$", "a*"})
    store.set(msg(topic, std::string("v:") + topic));
  auto topicsOf = [](const Visited& v) {
    std::set<std::string> out;
    for (const auto& [topic, contents] : v) {
      EXPECT_EQ(contents, "v:" + topic);
      out.insert(topic);
    }
    return out;
  };
  using Topics = std::set<std::string>;
  EXPECT_EQ(topicsOf(match("a/#")), (Topics{"a", "a/", "a/b", "a/b/c", "a//c"}));
  EXPECT_EQ(topicsOf(match("a/+")), (Topics{"a/", "a/b"}));
  EXPECT_EQ(topicsOf(match("a/+/c")), (Topics{"a/b/c", "a//c"}));
  EXPECT_EQ(topicsOf(match("+")), (Topics{"a", "a*"}));
  EXPECT_EQ(topicsOf(match("+/+")), (Topics{"a/", "a/b", "/a", "b/c"}));
  EXPECT_EQ(topicsOf(match("#")), (Topics{"a", "a/", "a/b", "a/b/c", "a//c", "/a", "b/c", "a*"}));
  EXPECT_EQ(topicsOf(match("+/#")), topicsOf(match("#")));
  EXPECT_EQ(topicsOf(match("$SYS/#")), (Topics{"$SYS/x"}));
  EXPECT_EQ(topicsOf(match("$SYS/+")), (Topics{"$SYS/x"}));
  EXPECT_EQ(topicsOf(match("$")), (Topics{"$"}));
  EXPECT_EQ(topicsOf(match("a*")), (Topics{"a*"}));
  EXPECT_EQ(topicsOf(match("/+")), (Topics{"/a"}));
  EXPECT_TRUE(match("a/b/c/d").empty());
  EXPECT_TRUE(match("x/#").empty());
  // forEach visits '$' topics too.
  EXPECT_EQ(all().size(), 10u);
}

TEST_F(RetainedStoreTest, ErasingEverythingPrunesAndTheStoreCanBeRefilled) {
  std::vector<std::string> topics;
  for (int i = 0; i < 2000; ++i)
    topics.push_back("t/" + std::to_string(i % 37) + "/" + std::to_string(i));
  for (int round = 0; round < 2; ++round) {
    for (const std::string& t : topics)
      store.set(msg(t, "x"));
    EXPECT_EQ(store.size(), topics.size());
    EXPECT_EQ(match("t/5/#").size(), 54u);
    std::mt19937 rng(round);
    std::shuffle(topics.begin(), topics.end(), rng);
    for (const std::string& t : topics)
      ASSERT_TRUE(store.erase(t)) << t;
    EXPECT_EQ(store.size(), 0u);
    EXPECT_EQ(store.bytes(), 0u);
    EXPECT_TRUE(all().empty());
  }
  // Every node and message went to the domain; nothing is left once a grace period passed.
  reader.offline();  // a grace period needs this reader out of its read section
  domain.barrier();
  reader.online();
  EXPECT_EQ(domain.pending(), 0u);
}

TEST_F(RetainedStoreTest, ReplacedMessagesStayReadableUntilTheReaderIsQuiescent) {
  store.set(msg("a", "old contents"));
  const Message* seen = nullptr;
  store.forEachMatch("a", [&](const Message& m) { seen = &m; });
  ASSERT_NE(seen, nullptr);
  store.set(msg("a", "new contents"));
  store.erase("a");
  // This reader has not passed a quiescent state: the old message must still be intact (ASan
  // reports a use after free otherwise).
  EXPECT_EQ(seen->contents(), "old contents");
  // A reference taken now keeps it alive past the grace period.
  MessageRef kept = MessageRef::share(seen);
  reader.offline();
  domain.barrier();
  reader.online();
  EXPECT_EQ(kept->contents(), "old contents");
}

TEST_F(RetainedStoreTest, VeryDeepTopicsNeedNoRecursion) {
  std::string deep = "a";
  for (int i = 0; i < 20000; ++i)
    deep += "/a";
  store.set(msg(deep, "deep"));
  store.set(msg("a", "top"));
  EXPECT_EQ(match("#").size(), 2u);
  EXPECT_EQ(match(deep), (Visited{{deep, "deep"}}));
  EXPECT_TRUE(store.erase(deep));
  EXPECT_EQ(all(), (Visited{{"a", "top"}}));
  store.set(msg(deep, "again"));  // the destructor frees the 20000-level chain
}

// Random topics and filters over a few levels ("", "$", "*" included); after each batch of sets
// and erases, forEachMatch() must visit exactly what a naive scan with filterMatches() finds.
TEST_F(RetainedStoreTest, DifferentialAgainstNaiveScan) {
  static const char* const kLevels[] = {"a", "b", "", "ab", "*", "$s"};
  std::mt19937 rng(11);
  auto pick = [&](int n) { return std::uniform_int_distribution<int>(0, n - 1)(rng); };
  auto topic = [&] {
    std::string t = kLevels[pick(6)];
    for (int i = pick(4); i > 0; --i)
      t += std::string("/") + kLevels[pick(pick(10) == 0 ? 6 : 5)];
    return t.empty() ? std::string("b") : t;
  };
  auto filter = [&] {
    std::string f;
    for (int i = 0, levels = 1 + pick(4); i < levels; ++i) {
      if (i > 0) f += "/";
      const int r = pick(10);
      if (r < 2) {
        f += "+";
      } else if (r == 2) {
        return f + "#";
      } else {
        f += kLevels[pick(i == 0 ? 6 : 5)];
      }
    }
    return f.empty() ? std::string("b") : f;
  };
  std::map<std::string, std::string> model;
  for (int round = 0; round < 40; ++round) {
    for (int op = 0; op < 60; ++op) {
      const std::string t = topic();
      if (pick(3) > 0) {
        const std::string contents = pick(8) == 0 ? "" : std::to_string(round * 100 + op);
        store.set(msg(t, contents));
        if (contents.empty()) {
          model.erase(t);
        } else {
          model[t] = contents;
        }
      } else {
        ASSERT_EQ(store.erase(t), model.erase(t) == 1) << t;
      }
    }
    ASSERT_EQ(store.size(), model.size());
    ASSERT_EQ(all(), Visited(model.begin(), model.end()));
    for (int probe = 0; probe < 50; ++probe) {
      const std::string f = filter();
      Visited expected;
      for (const auto& [t, contents] : model) {
        if (filterMatches(f, t)) expected.emplace(t, contents);
      }
      ASSERT_EQ(match(f), expected) << "round " << round << " filter " << f;
    }
  }
}

// Readers visit continuously while a writer sets, replaces and deletes. A concurrent visit is
// judged by what must hold for any linearizable outcome:
//   - "stable" topics, set before the readers start and never touched again, are visited by
//     every visit whose filter matches them, with their original contents;
//   - every visited message's topic matches the filter and appears at most once per visit;
//   - every message's bytes are intact: its contents are "<topic>|<version>|" followed by the
//     topic again, so a freed or torn message shows (ASan reports any use after free).
// Readers also keep a reference (MessageRef::share) to a message across quiescent states and
// check it later: the store's own reference may be gone by then, the reader's must not.
TEST(RetainedStoreConcurrent, ReadersSeeIntactMessagesWhileAWriterChurns) {
  sync::QsbrDomain domain;
  RetainedStore store(domain);
  auto contentsFor = [](std::string_view topic, int version) {
    std::string c(topic);
    c += "|" + std::to_string(version) + "|";
    c += topic;
    return c;
  };
  auto intact = [](const Message& m) {
    const std::string_view c = m.contents();
    const std::string_view t = m.topic();
    if (c.size() < 2 * t.size() + 2 || c.substr(0, t.size()) != t || c[t.size()] != '|')
      return false;
    return c.substr(c.size() - t.size()) == t && c[c.size() - t.size() - 1] == '|';
  };

  const std::vector<std::string> stable = {"s/1", "s/2/x", "a/b", "$SYS/up", "/", "a"};
  for (const std::string& t : stable)
    store.set(Message::make(t, contentsFor(t, 0), true));
  std::vector<std::string> churn;
  for (int i = 0; i < 300; ++i)
    churn.push_back("c/" + std::to_string(i % 13) + "/" + std::to_string(i));
  churn.insert(churn.end(), {"a/c", "a/b/c", "s/3", "$SYS/load", "c", "c/1"});
  const std::vector<std::string> filters = {"#",      "+/+",   "a/#", "s/+", "c/+/#",
                                            "$SYS/#", "c/5/+", "+",   "a/b", "+/2/x"};

  std::atomic<bool> done{false};
  std::atomic<std::uint64_t> visits{0};
  auto readerLoop = [&](std::uint32_t seed) {
    sync::QsbrDomain::Reader reader(domain);
    std::mt19937 rng(seed);
    MessageRef kept;
    int keptFor = 0;
    while (!done.load(std::memory_order_acquire)) {
      const bool everything = rng() % 8 == 0;
      const std::string& filter = filters[rng() % filters.size()];
      std::set<std::string> seen;
      bool ok = true;
      auto visit = [&](const Message& m) {
        ok = ok && intact(m) && (everything || filterMatches(filter, m.topic())) &&
             seen.insert(std::string(m.topic())).second;
        if (!kept && rng() % 4 == 0) kept = MessageRef::share(&m);
      };
      if (everything) {
        store.forEach(visit);
      } else {
        store.forEachMatch(filter, visit);
      }
      ASSERT_TRUE(ok) << "bad visit for " << (everything ? "forEach" : filter);
      for (const std::string& t : stable) {
        if (everything || filterMatches(filter, t)) {
          ASSERT_EQ(seen.count(t), 1u) << "stable " << t << " missing for " << filter;
        }
      }
      if (kept && ++keptFor == 20) {
        ASSERT_TRUE(intact(*kept));  // survived 20 quiescent states on our reference alone
        kept.reset();
        keptFor = 0;
      }
      visits.fetch_add(1, std::memory_order_relaxed);
      reader.quiescent();
    }
  };
  std::vector<std::thread> readers;
  for (std::uint32_t r = 0; r < 2; ++r)
    readers.emplace_back(readerLoop, r + 1);

  std::thread writer([&] {
    std::mt19937 rng(7);
    for (int op = 0; op < 20000; ++op) {
      const std::string& t = churn[rng() % churn.size()];
      switch (rng() % 4) {
        case 0:
          store.erase(t);
          break;
        case 1:
          store.set(Message::make(t, "", true));  // empty contents delete
          break;
        default:
          store.set(Message::make(t, contentsFor(t, op), true));
      }
    }
    done.store(true, std::memory_order_release);
  });
  writer.join();
  for (std::thread& t : readers)
    t.join();
  EXPECT_GT(visits.load(), 0u);
  EXPECT_GE(store.size(), stable.size());
}

}  // namespace
}  // namespace tern::routing

namespace tern::routing {
namespace {

TEST(RetainedStoreLimits, NewTopicsAreRefusedAtTheLimitsReplacementsAndDeletesAreNot) {
  const std::size_t small = common::Message::make("l/0", "v", true)->footprint();
  RetainedStore store(sync::QsbrDomain::global(), {3, 3 * small + 100});
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(store.set(common::Message::make("l/" + std::to_string(i), "v", true)),
              RetainedStore::SetResult::kStored);
  }
  EXPECT_EQ(store.set(common::Message::make("l/3", "v", true)), RetainedStore::SetResult::kRefused);
  EXPECT_EQ(store.size(), 3u);
  // Replacing a topic is always allowed while it does not grow past the byte limit.
  EXPECT_EQ(store.set(common::Message::make("l/0", "w", true)), RetainedStore::SetResult::kStored);
  EXPECT_EQ(store.set(common::Message::make("l/0", std::string(200, 'x'), true)),
            RetainedStore::SetResult::kRefused);
  EXPECT_EQ(store.bytes(), 3 * small);
  // Deleting makes room.
  EXPECT_EQ(store.set(common::Message::make("l/1", "", true)), RetainedStore::SetResult::kDeleted);
  EXPECT_EQ(store.set(common::Message::make("l/3", "v", true)), RetainedStore::SetResult::kStored);
  // A refused topic leaves no node behind: the walk sees exactly the stored ones.
  std::size_t seen = 0;
  store.forEach([&](const common::Message&) { ++seen; });
  EXPECT_EQ(seen, 3u);
}

}  // namespace
}  // namespace tern::routing
