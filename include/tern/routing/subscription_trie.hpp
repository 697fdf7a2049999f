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
// Cost model (see bench/ for measurements):
//   - match: O(levels) hash probes plus one visit per matching node and per matching subscriber;
//     deduplication (O(results), in a reused buffer) only when two or more nodes contributed.
//   - subscribe/unsubscribe: O(levels) amortized, independent of how many sessions share a filter
//     (a node's subscriber set grows and shrinks in place; it is never copied per change).
// Layout (src/routing/subscription_trie.cpp, src/routing/child_table.hpp):
//   - A node is one allocation: its level text, the text's hash, a child link and a subscriber
//     word. The child link is null, the only child itself, or an open-addressing table of atomic
//     slots (with tombstones) that grows and shrinks by rebuild-and-publish; the '+' and '#'
//     children have fields of their own in the table's header, so matching wildcards costs no
//     hash probe.
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

#include "tern/routing/subscriber_id.hpp"
#include "tern/sync/qsbr.hpp"

namespace tern::routing {

namespace detail {
struct TrieNode;  // defined in src/routing/subscription_trie.cpp
}

// Reusable result buffer of match(); owned by one thread. After match(), subscribers() holds one
// entry per subscriber key (session), with the highest QoS any of its matching filters granted.
class MatchResult {
 public:
  std::span<const SubscriberId> subscribers() const noexcept { return {ids_.data(), ids_.size()}; }
  std::size_t size() const noexcept { return ids_.size(); }
  bool empty() const noexcept { return ids_.empty(); }

 private:
  friend class SubscriptionTrie;
  // Capacities are kept across calls: no allocation in the steady state.
  std::vector<SubscriberId> ids_;
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

  // Prunes path_.back() and its ancestors while they hold no subscriber and no child.
  // REQUIRES: writerMutex_ held; path_ holds the nodes from the root to the node to prune.
  void pruneLocked();

  sync::QsbrDomain& domain_;
  Node* const root_;         // never pruned; the empty path in front of every filter's first level
  std::mutex writerMutex_;   // serializes subscribe/unsubscribe
  std::vector<Node*> path_;  // guarded by writerMutex_: root-to-leaf path of unsubscribe
  std::atomic<std::size_t> size_{0};  // written under writerMutex_, read relaxed anywhere
};

}  // namespace tern::routing
