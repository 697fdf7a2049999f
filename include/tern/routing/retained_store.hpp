// RetainedStore: the retained message of each topic, findable by topic filter.
//
// A trie of topic levels with the same read-copy-update scheme as SubscriptionTrie: readers
// (SUBSCRIBE's retained replay, LIST, MQTT subscribe) walk it with no lock; writers (retained
// publishes) serialize on a mutex, replace a node's message pointer with a release store, and hand
// the old message and pruned nodes to the QSBR domain.
//
// Matching a filter visits only the branches that can match: an exact level is one hash probe, '+'
// walks one level of children, '#' walks the subtree below it. The cost grows with the number of
// matches, not with the size of the store. Nodes and child tables are those of the trie
// (src/routing/child_table.hpp); a node holds one reference to its retained message, and the store
// drops it only after a grace period, so a reader may still MessageRef::share() what it found.
//
// Ownership: one store per broker, shared by all workers. Threads:
//   - forEachMatch(), forEach(): registered, online readers of the domain. The Message passed to
//     the visitor is valid until the caller's next quiescent state; take a reference
//     (MessageRef::share) to keep it longer.
//   - set(), erase(), size(), bytes(): any thread; writers serialize internally.
// A walk that must be cut into bounded slices (with quiescent states in between) is a
// RetainedCursor (retained_cursor.hpp), which reads the trie through the private seam below.
#pragma once

#include <atomic>
#include <cstddef>
#include <mutex>
#include <string_view>
#include <vector>

#include "tern/common/cache_line.hpp"
#include "tern/common/function_ref.hpp"
#include "tern/common/message.hpp"
#include "tern/sync/qsbr.hpp"

namespace tern::routing {

namespace detail {
struct RetainedNode;  // defined in src/routing/retained_store.cpp
}
class RetainedCursor;

class RetainedStore {
 public:
  // Bounds of the store (--max-retained-messages, --max-retained-bytes), in messages and in the
  // bytes their messages hold (Message::footprint).
  struct Limits {
    std::size_t maxMessages = ~std::size_t{0};
    std::size_t maxBytes = ~std::size_t{0};
  };
  enum class SetResult {
    kStored,   // a new topic, or a replaced message
    kDeleted,  // empty contents: the topic's retained message (if any) is gone
    kRefused,  // storing it would pass a limit: the store is unchanged
  };

  explicit RetainedStore(sync::QsbrDomain& domain = sync::QsbrDomain::global());
  RetainedStore(sync::QsbrDomain& domain, Limits limits);
  // REQUIRES: no reader is inside forEach/forEachMatch.
  ~RetainedStore();
  RetainedStore(const RetainedStore&) = delete;
  RetainedStore& operator=(const RetainedStore&) = delete;

  // Stores `message` as the retained message of message->topic(), replacing any previous one; a
  // message with empty contents deletes the topic's retained message instead. Refused when a new
  // topic would pass maxMessages, or the bytes held would pass maxBytes (a replacement only when
  // it is larger than what it replaces). Visible to every reader that starts after the call
  // returns. REQUIRES: valid topic name. Any thread.
  SetResult set(common::MessageRef message);

  // Deletes the retained message of `topic`; false when there was none. Any thread.
  bool erase(std::string_view topic);

  // Calls `visit` for each retained message whose topic matches `filter` (with the '$' rule).
  // REQUIRES: valid filter; registered, online reader. Never locks.
  void forEachMatch(std::string_view filter,
                    common::FunctionRef<void(const common::Message&)> visit) const;

  // Calls `visit` for every retained message, '$' topics included. Same requirements.
  void forEach(common::FunctionRef<void(const common::Message&)> visit) const;

  // Number of retained messages and the heap bytes their messages hold. Any thread.
  std::size_t size() const noexcept { return size_.load(std::memory_order_relaxed); }
  std::size_t bytes() const noexcept { return bytes_.load(std::memory_order_relaxed); }

 private:
  using Node = detail::RetainedNode;

  // Read-only seam for RetainedCursor, which keeps its position as level texts between slices
  // and looks nodes up again on every slice. Registered, online reader only; every pointer
  // returned is valid until the caller's next quiescent state. Never lock, never allocate.
  friend class RetainedCursor;
  const Node* rootNode() const noexcept { return root_; }
  // The child of `node` whose level is `level`, or null. One hash probe.
  static const Node* findChild(const Node* node, std::string_view level) noexcept;
  // The retained message of `node`, or null.
  static const common::Message* messageOf(const Node* node) noexcept;
  static bool hasChildren(const Node* node) noexcept;
  static std::string_view levelOf(const Node* node) noexcept;
  // Calls visit(child) for each child of `node` present, leaving out those whose level starts
  // with '$' when `skipDollar`; returns how many children it examined (skipped ones included).
  // O(capacity of the child table); loads a child only for the '$' test.
  static std::size_t forEachChild(const Node* node, bool skipDollar,
                                  common::FunctionRef<void(const Node*)> visit);

  // Removes the message of path_.back() and prunes it and its ancestors while they hold no
  // message and no child. REQUIRES: writerMutex_ held; path_ is the root-to-node path.
  void eraseLocked();

  sync::QsbrDomain& domain_;
  const Limits limits_;
  Node* const root_;  // never pruned, never holds a message (every topic has a first level)
  // The writer's fields start a cache line of their own, away from root_, which every reader
  // loads (see SubscriptionTrie).
  alignas(common::kCacheLine) std::mutex writerMutex_;
  std::vector<Node*> path_;  // guarded by writerMutex_: root-to-node path of set/erase
  // Written under writerMutex_, read relaxed anywhere (statistics only).
  std::atomic<std::size_t> size_{0};
  std::atomic<std::size_t> bytes_{0};
};

}  // namespace tern::routing
