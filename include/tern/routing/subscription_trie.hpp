// SubscriptionTrie: every subscription of the broker, matched against each published topic.
//
// Read-copy-update design (sync/qsbr.hpp): match() runs on worker threads with no lock, no atomic
// read-modify-write and no allocation in the steady state; subscribe()/unsubscribe() serialize on a
// writer mutex, publish changes with release stores, and retire unlinked nodes and arrays through
// the QSBR domain, which frees them after a grace period.
//
// Ownership: one trie per broker, shared by all workers; it lives longer than every Reader of its
// domain. Threads:
//   - match(): any thread registered with the domain and online. Lock-free, wait-free per level.
//   - subscribe(), unsubscribe(), size(): any thread; writers serialize on an internal mutex.
// Cost model (bench/topic_match_bench.cpp, docs/performance.md):
//   - match: O(levels) hash probes plus one visit per matching node and per matching subscriber;
//     deduplication (O(results), in a reused buffer) only when two or more nodes contributed.
//     The probes of a topic's own levels are issued together (see Layout), so a match against a
//     set much larger than the caches costs about two memory latencies, not two per level.
//   - subscribe/unsubscribe: O(levels) amortized, independent of how many sessions share a filter
//     (a node's subscriber set grows and shrinks in place; it is never copied per change).
//     Growing or shrinking the node table copies it (amortized O(1), but one subscribe in a
//     million pays for copying a table of a million slots).
// Layout (src/routing/subscription_trie.cpp):
//   - A node is one allocation: its prefix key, its parent, a subscriber word, its '+' and '#'
//     children, and its level text inline (48 bytes + text).
//   - Every node of an ordinary level lives in one open-addressing table of atomic slots keyed by
//     its prefix key, a hash of the whole filter prefix ending at the node, derived level by level
//     from the parent's key and the level's hash. A lookup accepts a node only when its parent and
//     level text are the ones sought. Since the keys of all the levels of a topic follow from the
//     topic alone, match() first starts the slot loads of every level, then the node loads, then
//     walks: the memory accesses of the levels overlap instead of following one another.
//   - '+' and '#' children hang off their parent's fields (no probe, no table entry).
//   - The table grows and shrinks by rebuild-and-publish; in place it uses tombstones.
//   - The subscriber word is one SubscriberId, or a tagged pointer to an append-only array of
//     atomic ids (0 = removed) that readers scan up to its published end; the writer keeps a key ->
//     slot index for large arrays and compacts them into a new array when they get sparse.
//   - Nodes left with no subscriber and no child are pruned (unlinked, then retired).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <string_view>
#include <vector>

#include "tern/common/cache_line.hpp"
#include "tern/routing/subscriber_id.hpp"
#include "tern/sync/qsbr.hpp"

namespace tern::routing {

namespace detail {
struct TrieNode;  // defined in src/routing/subscription_trie.cpp
class NodeTable;  // defined in src/routing/subscription_trie.cpp
}  // namespace detail

// Reusable result buffer of match(); owned by one thread. After match(), subscribers() holds one
// entry per subscriber key (session), with the highest QoS any of its matching filters granted.
class MatchResult {
 public:
  std::span<const SubscriberId> subscribers() const noexcept { return {ids_.data(), ids_.size()}; }
  std::size_t size() const noexcept { return ids_.size(); }
  bool empty() const noexcept { return ids_.empty(); }

 private:
  friend class SubscriptionTrie;
  // One topic level, its hash and the prefix key of the topic up to it (subscription_trie.cpp).
  struct Level {
    std::string_view text;
    std::uint64_t hash;
    std::uint64_t key;
  };
  // Capacities are kept across calls: no allocation in the steady state.
  std::vector<SubscriberId> ids_;
  std::vector<Level> levels_;
  // The trie nodes that match the topic levels seen so far, and those of the next level.
  std::vector<const detail::TrieNode*> frontier_;
  std::vector<const detail::TrieNode*> next_;
  // Open-addressing set of positions in ids_ (plus one; 0 = empty) used to deduplicate keys.
  std::vector<std::uint32_t> seen_;
};

class SubscriptionTrie {
 public:
  enum class SubscribeResult { kAdded, kReplaced, kUnchanged };

  explicit SubscriptionTrie(sync::QsbrDomain& domain = sync::QsbrDomain::global());
  // REQUIRES: no thread is inside match(). Frees every node at once (no grace period needed).
  ~SubscriptionTrie();
  SubscriptionTrie(const SubscriptionTrie&) = delete;
  SubscriptionTrie& operator=(const SubscriptionTrie&) = delete;

  // Adds `id` to `filter`. An entry with the same key is replaced when its QoS differs (kReplaced)
  // and left alone when equal (kUnchanged). The change is visible to every match() that starts
  // after the call returns. REQUIRES: validateTopicFilter(filter) == kOk, !id.empty(). Any thread.
  SubscribeResult subscribe(std::string_view filter, SubscriberId id);

  // Removes the entry of `id.key()` from `filter`; false when there was none. Prunes nodes left
  // without subscribers and children. Any thread.
  bool unsubscribe(std::string_view filter, SubscriberId id);

  // Clears `out` and fills it with the subscribers whose filters match `topic`, one per key.
  // REQUIRES: validateTopicName(topic) == kOk; the calling thread is a registered, online reader
  // of the domain. Never blocks, never locks; allocates only when `out` must grow.
  void match(std::string_view topic, MatchResult& out) const noexcept;

  // Number of (filter, key) entries. Any thread.
  std::size_t size() const noexcept { return size_.load(std::memory_order_relaxed); }

 private:
  using Node = detail::TrieNode;

  // Fills filterKeys_ with the prefix key of each level of `filter` and starts loading their
  // slots and nodes. REQUIRES: writerMutex_ held.
  void keyFilterLocked(std::string_view filter);
  // Links `node` into the node table, rebuilding it when full. REQUIRES: writerMutex_ held.
  void insertLocked(Node* node);
  // Prunes `node` and its ancestors while they hold no subscriber and no child.
  // REQUIRES: writerMutex_ held.
  void pruneLocked(Node* node);

  sync::QsbrDomain& domain_;
  Node* const root_;  // never pruned, in no table; the empty path in front of every filter
  // Every node but the root and the wildcard nodes. Replaced (release store) by the writer when
  // rebuilt; readers load it once per match.
  std::atomic<detail::NodeTable*> table_;
  // The writer's fields start a cache line of their own: every subscribe/unsubscribe writes the
  // mutex and size_, and sharing a line with root_ and table_ would make every reader's next
  // match miss on them.
  alignas(common::kCacheLine) std::mutex writerMutex_;  // serializes subscribe/unsubscribe
  std::vector<std::uint64_t> filterKeys_;  // guarded by writerMutex_: see keyFilterLocked()
  std::atomic<std::size_t> size_{0};       // written under writerMutex_, read relaxed anywhere
};

}  // namespace tern::routing
