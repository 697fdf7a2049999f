// The baselines tern's trie and retained store are measured against, in the same binary, on the
// same data, with the same result contract (one SubscriberId per session key, highest QoS).
//
//   NaiveScan / NaiveRetained: every filter (or retained topic) in a vector / hash map, each
//     match a scan with routing::filterMatches. The correctness oracle, and the floor any index
//     must beat.
//   LockedTrie / LockedRetained: the obvious design most brokers ship in some form (FlashMQ,
//     NanoMQ, RMQTT, HiveMQ): a tree of std::unordered_map<std::string, std::unique_ptr<Node>>
//     children, '+' and '#' children in fields of their own, subscribers in a hash map per node,
//     the whole tree guarded by one std::shared_mutex (shared on match, exclusive on change).
//     Lookups are heterogeneous (std::string_view, no allocation per level), results go into a
//     reused buffer: a fair version of the design, not a straw man.
//
// Threads: NaiveScan and NaiveRetained are single-threaded. LockedTrie and LockedRetained: any
// thread, any method (the mutex serializes).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "tern/common/function_ref.hpp"
#include "tern/common/message.hpp"
#include "tern/routing/subscriber_id.hpp"

namespace tern::bench {

// Keeps one id per key, the one with the highest QoS, in first-seen order. O(n); `seen` is scratch
// space kept across calls (no allocation once it is big enough).
void dedupByKey(std::vector<routing::SubscriberId>& ids, std::vector<std::uint32_t>& seen);

// Hash and equality that accept std::string_view for std::string keys (C++20 heterogeneous lookup).
struct StringHash {
  using is_transparent = void;
  std::size_t operator()(std::string_view text) const noexcept {
    return std::hash<std::string_view>{}(text);
  }
};
template <typename Value>
using StringMap = std::unordered_map<std::string, Value, StringHash, std::equal_to<>>;

class NaiveScan {
 public:
  // Adds an entry. REQUIRES: no entry for this filter and key yet (the benchmarks never repeat a
  // pair; checking would make every subscribe a scan).
  void subscribe(std::string_view filter, routing::SubscriberId id);
  // Removes the entry of id's key on filter; searches from the newest entry back.
  bool unsubscribe(std::string_view filter, routing::SubscriberId id);
  // Fills `out` with the subscribers whose filters match `topic`, one per key.
  void match(std::string_view topic, std::vector<routing::SubscriberId>& out);
  std::size_t size() const noexcept { return entries_.size(); }

 private:
  struct Entry {
    std::string filter;
    routing::SubscriberId id;
  };
  std::vector<Entry> entries_;
  std::vector<std::uint32_t> seen_;
};

class LockedTrie {
 public:
  LockedTrie();
  ~LockedTrie();
  void subscribe(std::string_view filter, routing::SubscriberId id);
  bool unsubscribe(std::string_view filter, routing::SubscriberId id);

  struct Node;
  // Per-thread buffers of match(), kept across calls.
  struct Scratch {
    std::vector<const Node*> frontier;
    std::vector<const Node*> next;
    std::vector<std::uint32_t> seen;
  };
  // Takes the shared lock.
  void match(std::string_view topic, std::vector<routing::SubscriberId>& out,
             Scratch& scratch) const;

 private:
  mutable std::shared_mutex mutex_;
  std::unique_ptr<Node> root_;
};

class NaiveRetained {
 public:
  void set(common::MessageRef message);
  bool erase(std::string_view topic);
  void forEachMatch(std::string_view filter,
                    common::FunctionRef<void(const common::Message&)> visit) const;
  std::size_t size() const noexcept { return messages_.size(); }

 private:
  StringMap<common::MessageRef> messages_;
};

class LockedRetained {
 public:
  LockedRetained();
  ~LockedRetained();
  void set(common::MessageRef message);
  bool erase(std::string_view topic);
  // Holds the shared lock while it visits.
  void forEachMatch(std::string_view filter,
                    common::FunctionRef<void(const common::Message&)> visit) const;

  struct Node;

 private:
  mutable std::shared_mutex mutex_;
  std::unique_ptr<Node> root_;
};

}  // namespace tern::bench
