#include "tern/routing/retained_cursor.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <map>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "tern/routing/retained_store.hpp"
#include "tern/routing/topic.hpp"

namespace tern::routing {
namespace {

using common::Message;
using common::MessageRef;
using Scope = RetainedCursor::Scope;
using Topics = std::set<std::string>;
// topic -> how many times it was taken: a multiset, so that a duplicate shows.
using Taken = std::map<std::string, int>;

MessageRef msg(std::string_view topic, std::string_view contents) {
  return Message::make(topic, contents, true);
}

// The topics of a walk, each of which must have been taken exactly once.
Topics onceEach(const Taken& taken) {
  Topics out;
  for (const auto& [topic, count] : taken) {
    EXPECT_EQ(count, 1) << "taken " << count << " times: " << topic;
    out.insert(topic);
  }
  return out;
}

// Each test owns its domain; `reader` registers the test thread. settle() lets a grace period
// pass and frees everything retired so far, so that a cursor still pointing at a pruned node, a
// replaced table or a replaced message would be a use after free that ASan reports.
struct Harness {
  Topics match(std::string_view filter) {
    Topics out;
    store.forEachMatch(filter, [&](const Message& m) { out.emplace(m.topic()); });
    return out;
  }
  Topics all() {
    Topics out;
    store.forEach([&](const Message& m) { out.emplace(m.topic()); });
    return out;
  }
  void settle() {
    reader.offline();
    domain.barrier();
    reader.online();
  }
  // Walks `cursor` to the end; take() refuses with probability `refuse`; between slices calls
  // between() and lets a grace period pass.
  template <typename Between>
  Taken walk(RetainedCursor& cursor, std::size_t budget, double refuse, std::uint32_t seed,
             Between between) {
    std::mt19937 rng(seed);
    std::bernoulli_distribution refuseNow(refuse);
    Taken taken;
    for (int slice = 0;; ++slice) {
      if (slice > 10'000'000) {
        ADD_FAILURE() << "the walk does not end";
        break;
      }
      const bool complete = cursor.resume(store, budget, [&](const Message& m) {
        if (refuseNow(rng)) return false;
        ++taken[std::string(m.topic())];
        return true;
      });
      if (complete) break;
      between();
      reader.quiescent();
    }
    EXPECT_TRUE(cursor.done());
    return taken;
  }
  Taken walk(RetainedCursor& cursor, std::size_t budget, double refuse = 0,
             std::uint32_t seed = 1) {
    return walk(cursor, budget, refuse, seed, [] {});
  }
  sync::QsbrDomain domain;
  sync::QsbrDomain::Reader reader{domain};
  RetainedStore store{domain};
};

TEST(RetainedCursor, EmptyStoreCompletesAtOnce) {
  Harness h;
  for (const char* filter : {"#", "+", "a/b", "a/+/#"}) {
    RetainedCursor cursor(filter);
    EXPECT_FALSE(cursor.done());
    EXPECT_TRUE(cursor.resume(h.store, 1, [](const Message&) { return true; }));
    EXPECT_TRUE(cursor.done());
  }
  RetainedCursor everything("", Scope::kEverything);
  EXPECT_TRUE(everything.resume(h.store, 1, [](const Message&) { return true; }));
}

TEST(RetainedCursor, FollowsTheMatchingRulesOfForEachMatch) {
  Harness h;
  for (const char* topic : {"a", "a/", "a/b", "a/b/c", "a//c", "/a", "b/c", "$SYS/x", "$", "a*"})
    h.store.set(msg(topic, std::string("v:") + topic));
  for (const char* filter : {"a/#", "a/+", "a/+/c", "+", "+/+", "#", "+/#", "$SYS/#", "$SYS/+", "$",
                             "a*", "/+", "a/b/c/d", "x/#", "a//c", "/#", "+/", "a/"}) {
    RetainedCursor cursor(filter);
    EXPECT_EQ(onceEach(h.walk(cursor, 1)), h.match(filter)) << filter;
  }
  RetainedCursor everything("ignored", Scope::kEverything);
  const Topics everyTopic = onceEach(h.walk(everything, 1));
  EXPECT_EQ(everyTopic, h.all());
  EXPECT_EQ(everyTopic.size(), 10u);  // '$' topics included
}

// Random stores of short and deep topics over levels that exercise the rules ("", "$", "*"),
// random filters, every budget, with and without refusals: what the cursor takes must be exactly
// what forEachMatch (or forEach) visits, each topic once.
TEST(RetainedCursor, TakesWhatForEachMatchVisitsWithAnyBudgetAndRefusals) {
  Harness h;
  static const char* const kLevels[] = {"a", "b", "", "ab", "*", "$s"};
  std::mt19937 rng(5);
  auto pick = [&](int n) { return std::uniform_int_distribution<int>(0, n - 1)(rng); };
  auto topic = [&] {
    std::string t = kLevels[pick(6)];
    const int levels = pick(10) == 0 ? 12 + pick(20) : pick(5);
    for (int i = 0; i < levels; ++i)
      t += std::string("/") + kLevels[pick(pick(10) == 0 ? 6 : 5)];
    return t.empty() ? std::string("b") : t;
  };
  auto filter = [&] {
    std::string f;
    for (int i = 0, levels = 1 + pick(5); i < levels; ++i) {
      if (i > 0) f += "/";
      const int r = pick(10);
      if (r < 3) {
        f += "+";
      } else if (r == 3) {
        return f + "#";
      } else {
        f += kLevels[pick(i == 0 ? 6 : 5)];
      }
    }
    return f.empty() ? std::string("b") : f;
  };
  std::uint32_t seed = 0;
  for (int round = 0; round < 8; ++round) {
    for (int i = 0; i < 120; ++i)
      h.store.set(msg(topic(), std::to_string(round)));
    std::vector<std::string> filters = {"#", "+/#", "+", "+/+/+", "$s/#", "a/#"};
    for (int i = 0; i < 25; ++i)
      filters.push_back(filter());
    for (const std::string& f : filters) {
      const Topics expected = h.match(f);
      for (const std::size_t budget : {1, 2, 3, 7, 1000}) {
        for (const double refuse : {0.0, 0.3}) {
          RetainedCursor cursor(f);
          ASSERT_EQ(onceEach(h.walk(cursor, budget, refuse, ++seed)), expected)
              << "filter " << f << " budget " << budget << " refuse " << refuse;
        }
      }
    }
    for (const std::size_t budget : {1, 3, 1000}) {
      RetainedCursor everything("", Scope::kEverything);
      ASSERT_EQ(onceEach(h.walk(everything, budget, 0.3, ++seed)), h.all()) << budget;
    }
  }
}

TEST(RetainedCursor, RefusedMessageIsOfferedAgainFirstInItsCurrentVersion) {
  Harness h;
  for (const char* topic : {"a/1", "a/2", "a/3"})
    h.store.set(msg(topic, "old"));
  RetainedCursor cursor("a/+");
  std::string refused;
  EXPECT_FALSE(cursor.resume(h.store, 1000, [&](const Message& m) {
    refused = m.topic();
    return false;
  }));
  ASSERT_FALSE(refused.empty());
  h.store.set(msg(refused, "new"));
  h.settle();
  std::vector<std::pair<std::string, std::string>> offers;
  EXPECT_TRUE(cursor.resume(h.store, 1000, [&](const Message& m) {
    offers.emplace_back(m.topic(), m.contents());
    return true;
  }));
  ASSERT_EQ(offers.size(), 3u);
  EXPECT_EQ(offers[0], std::make_pair(refused, std::string("new")));
  EXPECT_EQ(offers[1].second, "old");
  EXPECT_EQ(offers[2].second, "old");
}

TEST(RetainedCursor, DeletingTheRefusedTopicSkipsIt) {
  Harness h;
  for (const char* topic : {"a/1", "a/2", "a/3", "a/2/below"})
    h.store.set(msg(topic, "x"));
  RetainedCursor cursor("a/#");
  Taken taken;
  std::string refused;
  auto takeOrRefuse = [&](const Message& m) {
    if (refused.empty() && m.topic() != "a") {
      refused = m.topic();
      return false;
    }
    ++taken[std::string(m.topic())];
    return true;
  };
  EXPECT_FALSE(cursor.resume(h.store, 1000, takeOrRefuse));
  ASSERT_FALSE(refused.empty());
  ASSERT_TRUE(h.store.erase(refused));
  h.settle();
  EXPECT_TRUE(cursor.resume(h.store, 1000, takeOrRefuse));
  Topics expected = {"a/1", "a/2", "a/3", "a/2/below"};
  expected.erase(refused);
  EXPECT_EQ(onceEach(taken), expected);
}

// The walk is inside x/y/... when the whole x subtree is deleted (its nodes pruned and freed):
// the cursor drops the frames whose node is gone and goes on with the next sibling of x.
TEST(RetainedCursor, PruningTheSubtreeBeingWalkedDropsItsFrames) {
  Harness h;
  const Topics stable = {"a/1", "a/2", "c", "d/e/f"};
  for (const std::string& t : stable)
    h.store.set(msg(t, "s"));
  Topics doomed;
  for (int i = 0; i < 20; ++i)
    doomed.insert("x/y/" + std::to_string(i));
  doomed.insert("x/y");
  doomed.insert("x");
  for (const std::string& t : doomed)
    h.store.set(msg(t, "d"));
  for (const char* filter : {"#", "+/#", "x/#", "x/y/+"}) {
    for (const std::string& t : doomed)
      h.store.set(msg(t, "d"));
    RetainedCursor cursor(filter);
    bool deleted = false;
    Taken taken;
    while (!cursor.resume(h.store, 2, [&](const Message& m) {
      ++taken[std::string(m.topic())];
      return true;
    })) {
      if (!deleted && std::any_of(taken.begin(), taken.end(),
                                  [](const auto& t) { return t.first.starts_with("x/y/"); })) {
        for (const std::string& t : doomed)
          h.store.erase(t);
        deleted = true;
      }
      h.settle();
    }
    EXPECT_TRUE(deleted) << filter;
    Topics expected;
    for (const std::string& t : stable)
      if (filterMatches(filter, t)) expected.insert(t);
    Topics seen = onceEach(taken);
    for (const std::string& t : doomed)
      seen.erase(t);
    EXPECT_EQ(seen, expected) << filter;
  }
}

// Between slices, siblings are added until the parent's child table is rebuilt several times
// larger, then deleted until it shrinks back and falls to the single-child form, while the walk
// is inside that parent. The stable siblings are taken exactly once, nothing twice.
TEST(RetainedCursor, ChildTablesGrowingAndShrinkingBetweenSlices) {
  Harness h;
  Topics stable;
  for (int i = 0; i < 6; ++i)
    stable.insert("g/s" + std::to_string(i));
  stable.insert("g/s0/below");
  stable.insert("h");
  for (const std::string& t : stable)
    h.store.set(msg(t, "s"));
  std::vector<std::string> extra;
  for (int i = 0; i < 600; ++i)
    extra.push_back("g/n" + std::to_string(i));
  for (const char* filter : {"g/+", "g/#", "#", "+/+"}) {
    for (const std::size_t budget : {1, 3}) {
      RetainedCursor cursor(filter);
      int slice = 0;
      const Taken taken = h.walk(cursor, budget, 0.2, 9, [&] {
        ++slice;
        if (slice == 2) {
          for (const std::string& t : extra)  // grow: several rebuilds
            h.store.set(msg(t, "n"));
        } else if (slice == 5) {
          for (const std::string& t : extra)  // shrink: rebuilds down to a small table
            h.store.erase(t);
        } else if (slice == 7) {
          for (int i = 1; i < 6; ++i)  // away and back: direct form, then a table again
            h.store.erase("g/s" + std::to_string(i));
          for (int i = 1; i < 6; ++i)
            h.store.set(msg("g/s" + std::to_string(i), "s"));
        }
        h.settle();
      });
      Topics expected;
      for (const std::string& t : stable)
        if (filterMatches(filter, t)) expected.insert(t);
      Topics seen = onceEach(taken);
      for (const std::string& t : extra)
        seen.erase(t);
      // g/s1..g/s5 were deleted and set again during the walk: they may or may not be taken.
      for (int i = 1; i < 6; ++i) {
        const std::string t = "g/s" + std::to_string(i);
        if (seen.count(t) == 0) expected.erase(t);
      }
      EXPECT_EQ(seen, expected) << filter << " budget " << budget;
    }
  }
}

TEST(RetainedCursor, ReplacedMessagesAreTakenOnceInTheVersionCurrentWhenVisited) {
  Harness h;
  for (int i = 0; i < 10; ++i)
    h.store.set(msg("r/" + std::to_string(i), "v0"));
  RetainedCursor cursor("r/+");
  std::map<std::string, std::string> taken;
  int version = 0;
  for (;;) {
    const bool complete = cursor.resume(h.store, 3, [&](const Message& m) {
      EXPECT_TRUE(taken.emplace(m.topic(), m.contents()).second) << "twice: " << m.topic();
      return true;
    });
    if (complete) break;
    ++version;
    for (int i = 0; i < 10; ++i)  // every topic replaced after every slice
      h.store.set(msg("r/" + std::to_string(i), "v" + std::to_string(version)));
    h.settle();
  }
  ASSERT_EQ(taken.size(), 10u);
  std::set<std::string> versions;
  for (const auto& [topic, contents] : taken)
    versions.insert(contents);
  EXPECT_GT(versions.size(), 1u);  // later topics were taken in later versions
}

// A node on the path of the walk is pruned and created again (same level text, new object,
// new children) between slices. What was taken before is not taken again.
TEST(RetainedCursor, PrunedAndRecreatedNodesAreNotWalkedTwice) {
  Harness h;
  std::vector<std::string> topics;
  for (int i = 0; i < 12; ++i)
    topics.push_back("p/q/" + std::to_string(i));
  h.store.set(msg("z", "stable"));
  for (const char* filter : {"p/q/+", "p/#", "#"}) {
    for (const std::size_t budget : {1, 2, 5}) {
      for (const std::string& t : topics)
        h.store.set(msg(t, "x"));
      RetainedCursor cursor(filter);
      int slice = 0;
      const Taken taken = h.walk(cursor, budget, 0, 3, [&] {
        if (++slice % 3 != 0) return;
        for (const std::string& t : topics)  // p and p/q pruned...
          h.store.erase(t);
        h.settle();
        for (const std::string& t : topics)  // ...and created again
          h.store.set(msg(t, "y"));
        h.settle();
      });
      onceEach(taken);
      if (std::string_view(filter) == "#") {
        EXPECT_EQ(taken.count("z"), 1u);
      }
    }
  }
}

// take() itself deletes and re-creates topics while the slice runs, so that entries snapshotted
// in this slice (still node pointers) name nodes that were pruned since: entering one offers
// nothing (a pruned node has no message and no child, for good), the end of the slice drops it,
// and the re-created topic may or may not be taken, at most once.
TEST(RetainedCursor, TakeMayChangeTheStoreWhileTheSliceRuns) {
  Harness h;
  std::vector<std::string> siblings;
  for (int i = 0; i < 40; ++i)
    siblings.push_back("m/" + std::to_string(i));
  const Topics stable = {"m/s", "m/t/u", "n"};
  for (const char* filter : {"m/+", "m/#", "#", "+/+"}) {
    for (const std::size_t budget : {3, 20, 1000}) {
      for (const std::string& t : stable)
        h.store.set(msg(t, "s"));
      for (const std::string& t : siblings)
        h.store.set(msg(t, "x"));
      RetainedCursor cursor(filter);
      std::mt19937 rng(budget);
      Taken taken;
      while (!cursor.resume(h.store, budget, [&](const Message& m) {
        ++taken[std::string(m.topic())];
        const std::string& t = siblings[rng() % siblings.size()];
        h.store.erase(t);                                  // pruned: its node is now empty for good
        if (rng() % 2 == 0) h.store.set(msg(t, "again"));  // a new node for the same topic
        return true;
      })) {
        h.settle();
      }
      Topics seen = onceEach(taken);
      for (const std::string& t : siblings)
        seen.erase(t);
      Topics expected;
      for (const std::string& t : stable)
        if (filterMatches(filter, t)) expected.insert(t);
      EXPECT_EQ(seen, expected) << filter << " budget " << budget;
    }
  }
}

// Random sets and erases between slices (single thread, so every offer can be checked against
// the model at the moment it is made), with grace periods passing. Judged by the guarantees:
// every offered message is the topic's current one and matches; nothing is taken twice; a topic
// present from start to end and never touched ("stable") is taken exactly once.
TEST(RetainedCursor, RandomMutationsBetweenSlicesKeepTheGuarantees) {
  Harness h;
  static const char* const kLevels[] = {"a", "b", "", "c", "$d"};
  std::mt19937 rng(17);
  auto pick = [&](int n) { return std::uniform_int_distribution<int>(0, n - 1)(rng); };
  auto topic = [&](const char* first) {
    std::string t = first;
    for (int i = pick(4); i > 0; --i)
      t += std::string("/") + kLevels[pick(5)];
    for (int i = pick(3); i > 0; --i)
      t += "/n" + std::to_string(pick(40));
    return t.empty() ? std::string("e") : t;  // a topic has at least one byte
  };
  std::map<std::string, std::string> model;
  Topics stable;
  for (int i = 0; i < 150; ++i) {  // stable topics start with "s" or "$s": churn never hits them
    const std::string t = topic(i % 7 == 0 ? "$s" : "s");
    if (stable.insert(t).second) {
      model[t] = "stable";
      h.store.set(msg(t, "stable"));
    }
  }
  // Churned topics share every level below the first with the stable ones, and also live under
  // "s" (siblings of stable topics), so tables grow and shrink around stable children. A fixed
  // pool, so that a walk has a bounded number of paths to visit however long the churn runs.
  std::vector<std::string> pool;
  for (int i = 0; i < 400; ++i) {
    std::string t = topic(pick(3) == 0 ? "s" : kLevels[pick(5)]);
    if (pick(2) == 0) t += "/x" + std::to_string(pick(30));
    while (stable.count(t) != 0)
      t += "/x";
    pool.push_back(t);
  }
  const std::vector<std::string> filters = {"#",    "+/#",   "s/#",   "+",    "+/+",     "s/+/+",
                                            "$s/#", "s/a/#", "a/+/#", "s//#", "+/+/+/#", "s/+/n1"};
  std::uint32_t seed = 0;
  for (int round = 0; round < 20; ++round) {
    for (const std::string& f : filters) {
      const std::size_t budget = std::vector<std::size_t>{1, 2, 3, 7, 40}[pick(5)];
      const bool everything = pick(6) == 0;
      RetainedCursor cursor(f, everything ? Scope::kEverything : Scope::kFilter);
      std::bernoulli_distribution refuse(0.25);
      std::mt19937 takeRng(++seed);
      Taken taken;
      bool complete = false;
      for (int slice = 0; !complete; ++slice) {
        ASSERT_LT(slice, 100000);
        complete = cursor.resume(h.store, budget, [&](const Message& m) {
          const std::string t(m.topic());
          auto current = model.find(t);
          EXPECT_TRUE(current != model.end() && current->second == m.contents())
              << "offered a message that is not the current one: " << t;
          EXPECT_TRUE(everything || filterMatches(f, t)) << t << " does not match " << f;
          if (refuse(takeRng)) return false;
          ++taken[t];
          return true;
        });
        for (int op = pick(3); op > 0; --op) {
          const std::string& t = pool[pick(static_cast<int>(pool.size()))];
          if (pick(2) == 0) {
            const std::string contents = std::to_string(round) + "." + std::to_string(op);
            h.store.set(msg(t, contents));
            model[t] = contents;
          } else {
            h.store.erase(t);
            model.erase(t);
          }
        }
        if (pick(64) == 0) h.settle();
        h.reader.quiescent();
      }
      for (const auto& [t, count] : taken)
        ASSERT_EQ(count, 1) << t << " taken twice for " << f;
      for (const std::string& t : stable) {
        if (everything || filterMatches(f, t)) {
          ASSERT_EQ(taken.count(t), 1u) << "stable " << t << " missed by " << f;
        }
      }
    }
  }
}

// The budget bound, judged two ways: by what the caller sees (take() calls per resume, and the
// number of resumes a walk needs, which shows progress) and by the cursor's own count of units,
// which must stay within budget - 1 + max(1, C) (C: children of the largest snapshot taken in
// that resume: the one step that is not split).
TEST(RetainedCursor, NoResumeExceedsItsBudget) {
  Harness h;
  constexpr std::size_t kTopics = 3000;
  for (std::size_t i = 0; i < kTopics; ++i)
    h.store.set(msg("t" + std::to_string(i), "x"));
  for (int i = 0; i < 30; ++i)
    for (int j = 0; j < 30; ++j)
      h.store.set(msg("n/" + std::to_string(i) + "/" + std::to_string(j), "x"));
  for (const char* filter : {"#", "+", "n/+/+", "n/#", "+/+/#"}) {
    const std::size_t matches = h.match(filter).size();
    for (const std::size_t budget : {1, 2, 5, 16, 256}) {
      RetainedCursor cursor(filter);
      std::size_t resumes = 0;
      std::size_t takenTotal = 0;
      std::size_t snapshotted = 0;
      bool complete = false;
      while (!complete) {
        std::size_t takes = 0;
        complete = cursor.resume(h.store, budget, [&](const Message&) {
          ++takes;
          return true;
        });
        ++resumes;
        takenTotal += takes;
        const RetainedCursor::SliceStats& s = cursor.lastSlice();
        ASSERT_LE(takes, budget);
        ASSERT_GE(s.units, takes);
        ASSERT_LE(s.units, budget - 1 + std::max<std::size_t>(1, s.largestSnapshot))
            << filter << " budget " << budget;
        if (s.largestSnapshot == 0) {
          ASSERT_LE(s.units, budget);
        }
        snapshotted += s.largestSnapshot;
        ASSERT_LT(resumes, 1'000'000u);
      }
      EXPECT_EQ(takenTotal, matches);
      // Each match costs two units (entering its node, offering it) plus its share of the
      // interior nodes and snapshots: the walk needs no more resumes than all its units allow.
      const std::size_t worstUnits = 3 * (kTopics + std::size_t{30 * 31}) + snapshotted;
      EXPECT_LE(resumes, worstUnits / budget + 2) << filter << " budget " << budget;
    }
  }
}

TEST(RetainedCursor, VeryDeepTopicsNeedNoRecursionAndEveryResumeProgresses) {
  Harness h;
  std::string deep = "a";
  for (int i = 0; i < 20000; ++i)
    deep += "/a";
  h.store.set(msg(deep, "deep"));
  h.store.set(msg("a/a/a", "shallow"));
  h.store.set(msg("b", "top"));
  for (const std::string& filter : {std::string("#"), deep, std::string("a/+/+/#")}) {
    RetainedCursor cursor(filter);
    std::size_t resumes = 0;
    std::size_t maxRelookups = 0;
    Taken taken;
    while (!cursor.resume(h.store, 256, [&](const Message& m) {
      ++taken[std::string(m.topic())];
      return true;
    })) {
      ++resumes;
      maxRelookups = std::max(maxRelookups, cursor.lastSlice().relookups);
      ASSERT_LE(cursor.lastSlice().units, 256u);
      h.reader.quiescent();
    }
    EXPECT_EQ(onceEach(taken), h.match(filter));
    EXPECT_LE(maxRelookups, 20001u);          // the re-descent: one lookup per level
    EXPECT_LE(resumes, 3 * 20003 / 256 + 2);  // and yet each resume moved on
  }
}

TEST(RetainedCursor, MemoryFollowsThePathAndIsGivenBackWhenDone) {
  Harness h;
  for (int i = 0; i < 1000; ++i)
    h.store.set(msg("wide/" + std::to_string(i), "x"));
  RetainedCursor cursor("#");
  std::size_t peak = 0;
  while (!cursor.resume(h.store, 16, [](const Message&) { return true; })) {
    peak = std::max(peak, cursor.memoryBytes());
  }
  // The snapshot of 'wide' holds 1000 levels of up to 3 characters with an 8-byte end each.
  EXPECT_GT(peak, 1000u * 8);
  EXPECT_LT(peak, 1000u * (8 + 3) * 4);  // vectors may have doubled their capacity
  EXPECT_EQ(cursor.memoryBytes(), 0u);
}

TEST(RetainedCursor, CompletedCursorOffersNothing) {
  Harness h;
  h.store.set(msg("a", "x"));
  RetainedCursor cursor("#");
  EXPECT_EQ(onceEach(h.walk(cursor, 1)), Topics{"a"});
  h.store.set(msg("b", "x"));
  int offers = 0;
  EXPECT_TRUE(cursor.resume(h.store, 100, [&](const Message&) {
    ++offers;
    return true;
  }));
  EXPECT_EQ(offers, 0);
}

// Writers churn topics (set, replace, erase, delete by empty contents) around stable topics that
// they never touch, while readers walk with small budgets and random refusals, passing a
// quiescent state (and sometimes going offline) between slices, so the reclaimer frees pruned
// nodes, replaced tables and messages while cursors are between slices. A walk is judged by the
// cursor's guarantees, which hold for any interleaving:
//   - every stable topic that matches is taken exactly once per walk;
//   - no topic is taken twice in one walk, and every taken topic matches the filter;
//   - every message is intact: its contents are "<topic>|<version>|<topic>", so a freed or torn
//     message shows (and ASan reports a use after free; TSan a missing happens-before).
TEST(RetainedCursorConcurrent, StableTopicsAreTakenExactlyOncePerWalkWhileWritersChurn) {
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

  std::vector<std::string> stable = {"a", "a/b", "/", "$SYS/up", "d/1/2/3/4"};
  for (int i = 0; i < 8; ++i)
    stable.push_back("g/s" + std::to_string(i));  // siblings of 300 churned topics
  for (const std::string& t : stable)
    store.set(Message::make(t, contentsFor(t, 0), true));
  std::vector<std::string> churn;
  for (int i = 0; i < 300; ++i)
    churn.push_back("g/" + std::to_string(i));  // grows, shrinks, rebuilds g's table
  for (int i = 0; i < 60; ++i)                  // whole subtrees pruned and re-created
    churn.push_back("p/" + std::to_string(i % 4) + "/" + std::to_string(i));
  for (int i = 0; i < 20; ++i) {
    churn.push_back("d/1/2/3/x" + std::to_string(i));  // deep siblings
    churn.push_back("$SYS/c" + std::to_string(i));
    churn.push_back("a/c" + std::to_string(i));
  }
  churn.insert(churn.end(), {"a/b/c", "d/1", "d", "g", "p"});
  const std::vector<std::string> filters = {"#",   "+/#", "g/+",    "g/#",       "a/#",
                                            "p/#", "+/+", "$SYS/#", "d/+/+/+/+", "+"};

  // Writers churn until both readers have finished their walks, so every walk overlaps churn.
  constexpr int kWalksPerReader = 800;
  std::atomic<int> readersLeft{2};
  std::atomic<std::uint64_t> writes{0};
  std::atomic<std::uint64_t> slices{0};
  auto readerLoop = [&](std::uint32_t seed) {
    // Counted down however the loop ends (a failed ASSERT returns early), so writers stop.
    struct Leave {
      std::atomic<int>& left;
      ~Leave() { left.fetch_sub(1, std::memory_order_relaxed); }
    } leave{readersLeft};
    sync::QsbrDomain::Reader reader(domain);
    std::mt19937 rng(seed);
    for (int walk = 0; walk < kWalksPerReader; ++walk) {
      const bool everything = rng() % 6 == 0;
      const std::string& filter = filters[rng() % filters.size()];
      const std::size_t budget = std::vector<std::size_t>{1, 2, 3, 7, 32}[rng() % 5];
      RetainedCursor cursor(filter, everything ? Scope::kEverything : Scope::kFilter);
      std::map<std::string, int> taken;
      bool ok = true;
      for (bool complete = false; !complete;) {
        const std::uint64_t writesBefore = writes.load(std::memory_order_relaxed);
        complete = cursor.resume(store, budget, [&](const Message& m) {
          if (rng() % 5 == 0) return false;
          ok = ok && intact(m) && (everything || filterMatches(filter, m.topic()));
          ++taken[std::string(m.topic())];
          return true;
        });
        slices.fetch_add(1, std::memory_order_relaxed);
        reader.quiescent();
        // Every slice overlaps churn: the next one waits (offline, so that no grace period waits
        // for it) until the writers have written since this one began, however the threads are
        // scheduled.
        reader.offline();
        while (writes.load(std::memory_order_relaxed) == writesBefore)
          std::this_thread::yield();
        reader.online();
      }
      ASSERT_TRUE(ok) << "bad message for " << (everything ? "everything" : filter);
      for (const auto& [t, count] : taken)
        ASSERT_EQ(count, 1) << t << " taken " << count << " times for " << filter;
      for (const std::string& t : stable) {
        if (everything || filterMatches(filter, t)) {
          ASSERT_EQ(taken.count(t), 1u) << "stable " << t << " missed by " << filter;
        }
      }
    }
  };
  auto writerLoop = [&](std::uint32_t seed) {
    std::mt19937 rng(seed);
    for (int op = 0; readersLeft.load(std::memory_order_relaxed) > 0; ++op) {
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
      writes.fetch_add(1, std::memory_order_relaxed);
      if (op % 64 == 0) std::this_thread::yield();  // on few cores, let the readers run
    }
  };
  std::vector<std::thread> threads;
  for (std::uint32_t r = 0; r < 2; ++r)
    threads.emplace_back(readerLoop, r + 1);
  for (std::uint32_t w = 0; w < 2; ++w)
    threads.emplace_back(writerLoop, w + 100);
  for (std::thread& t : threads)
    t.join();
  // Relaxed counters: read after join(), which orders them.
  // Each reader's slices each saw a write of their own: the churn is there by construction.
  EXPECT_GE(writes.load(), slices.load() / 2);
  EXPECT_GE(store.size(), stable.size());
}

}  // namespace
}  // namespace tern::routing
