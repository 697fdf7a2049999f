#include "tern/routing/subscription_trie.hpp"

#include <algorithm>
#include <bit>
#include <cassert>
#include <unordered_map>
#include <utility>

#include "routing/child_table.hpp"
#include "tern/routing/topic.hpp"

namespace tern::routing {
namespace detail {

// The '+' and '#' children of a node, kept in the header of its child table so that leaves (most
// nodes) pay nothing for them and matching a wildcard costs one load, no hash probe.
struct WildcardChildren {
  std::atomic<TrieNode*> plus{nullptr};
  std::atomic<TrieNode*> pound{nullptr};
  void copyFrom(const WildcardChildren& other) noexcept {
    // Relaxed: only the writer copies, and the new table is published with a release store.
    plus.store(other.plus.load(std::memory_order_relaxed), std::memory_order_relaxed);
    pound.store(other.pound.load(std::memory_order_relaxed), std::memory_order_relaxed);
  }
  bool empty() const noexcept {
    return plus.load(std::memory_order_relaxed) == nullptr &&
           pound.load(std::memory_order_relaxed) == nullptr;
  }
};

using Children = ChildLink<TrieNode, WildcardChildren>;
using Branch = Children::Table;

// One filter level. The subscriber set is one atomic word:
//   0                      no subscriber
//   QoS bits (63..62) != 3 exactly one subscriber, this SubscriberId
//   QoS bits == 3          a SubscriberArray* (QoS 3 does not exist, so no id looks like this)
// Readers load the word once, so they see either the single id or one whole array.
struct TrieNode {
  TrieNode(std::uint32_t levelHash, std::uint32_t levelSize) noexcept
      : hash(levelHash), size(levelSize) {}
  std::string_view level() const noexcept {
    return {reinterpret_cast<const char*>(this + 1), size};
  }
  char* levelStorage() noexcept { return reinterpret_cast<char*>(this + 1); }

  std::atomic<std::uint64_t> subscribers{0};
  Children children;
  const std::uint32_t hash;  // hashLevel(level())
  const std::uint32_t size;  // the level text follows the node in the same allocation
};

}  // namespace detail

namespace {

using detail::Branch;
using detail::Children;
using detail::TrieNode;
using KeyIndex = std::unordered_map<std::uint64_t, std::uint32_t>;

constexpr std::uint64_t kArrayTag = std::uint64_t{3} << 62;
// Arrays start this small; more than kIndexedCapacity slots get a key -> slot index so that
// finding a key (unsubscribe, resubscribe) does not scan.
constexpr std::uint32_t kMinArrayCapacity = 4;
constexpr std::uint32_t kIndexedCapacity = 64;

// The subscribers of one node when there are two or more, as a growable array of atomic words
// (0 = empty). Writers only append at `end` and zero removed slots; a slot, once zeroed, is never
// written again in this array (holes are reclaimed by copying into a new array). Readers scan
// [0, end) with end loaded once, which makes every scan free of duplicate keys: a key removed and
// added again lands at or after the end a reader loaded (it does not see it), or before it, and
// then the acquire load of end also showed it the earlier removal.
struct SubscriberArray {
  explicit SubscriberArray(std::uint32_t slotCount) noexcept : capacity(slotCount) {}

  std::atomic<std::uint64_t>* slots() noexcept {
    return reinterpret_cast<std::atomic<std::uint64_t>*>(this + 1);
  }
  const std::atomic<std::uint64_t>* slots() const noexcept {
    return reinterpret_cast<const std::atomic<std::uint64_t>*>(this + 1);
  }

  const std::uint32_t capacity;       // constant after construction
  std::atomic<std::uint32_t> end{0};  // slots at and after it were never written
  std::uint32_t live = 0;             // writer only: non-zero slots
  KeyIndex* index = nullptr;          // writer only: key -> slot, iff capacity > kIndexedCapacity
};

SubscriberArray* makeArray(std::uint32_t capacity) {
  void* memory = ::operator new(sizeof(SubscriberArray) + capacity * sizeof(std::uint64_t));
  auto* array = new (memory) SubscriberArray(capacity);
  for (std::uint32_t i = 0; i < capacity; ++i)
    new (&array->slots()[i]) std::atomic<std::uint64_t>(0);
  return array;
}

void freeArray(void* object) {
  auto* array = static_cast<SubscriberArray*>(object);
  delete array->index;
  array->~SubscriberArray();
  ::operator delete(object);
}

bool isArray(std::uint64_t word) noexcept {
  return (word & kArrayTag) == kArrayTag;
}
SubscriberArray* asArray(std::uint64_t word) noexcept {
  return reinterpret_cast<SubscriberArray*>(word & ~kArrayTag);
}
std::uint64_t tagArray(const SubscriberArray* array) noexcept {
  const auto bits = reinterpret_cast<std::uintptr_t>(array);
  assert((bits & kArrayTag) == 0);
  return bits | kArrayTag;
}
std::uint64_t keyOf(std::uint64_t bits) noexcept {
  return SubscriberId::fromBits(bits).key();
}

// Slot of `key` in `array`, or -1. Writer only.
std::int64_t findKey(const SubscriberArray& array, std::uint64_t key) {
  if (array.index != nullptr) {
    const auto it = array.index->find(key);
    return it == array.index->end() ? -1 : std::int64_t{it->second};
  }
  const std::uint32_t end = array.end.load(std::memory_order_relaxed);
  for (std::uint32_t i = 0; i < end; ++i) {
    const std::uint64_t bits = array.slots()[i].load(std::memory_order_relaxed);
    if (bits != 0 && keyOf(bits) == key) return i;
  }
  return -1;
}

// Appends `bits` to an array with room left. Writer only.
void append(SubscriberArray& array, std::uint64_t bits) {
  const std::uint32_t end = array.end.load(std::memory_order_relaxed);
  assert(end < array.capacity);
  // Relaxed: the release store of `end` below publishes the slot.
  array.slots()[end].store(bits, std::memory_order_relaxed);
  if (array.index != nullptr) array.index->emplace(keyOf(bits), end);
  ++array.live;
  // Release: readers that load the new end with acquire see the slot and every earlier removal.
  array.end.store(end + 1, std::memory_order_release);
}

// A new, unpublished array of `capacity` holding the live subscribers of `old`, compacted. Moves
// or builds the key index as the new capacity requires. Writer only.
SubscriberArray* rebuildArray(SubscriberArray& old, std::uint32_t capacity) {
  SubscriberArray* array = makeArray(capacity);
  if (capacity > kIndexedCapacity) {
    array->index = old.index != nullptr ? std::exchange(old.index, nullptr) : new KeyIndex();
    array->index->reserve(old.live);
  }
  const std::uint32_t end = old.end.load(std::memory_order_relaxed);
  std::uint32_t out = 0;
  for (std::uint32_t i = 0; i < end; ++i) {
    const std::uint64_t bits = old.slots()[i].load(std::memory_order_relaxed);
    if (bits == 0) continue;
    array->slots()[out].store(bits, std::memory_order_relaxed);
    if (array->index != nullptr) (*array->index)[keyOf(bits)] = out;
    ++out;
  }
  array->live = out;
  array->end.store(out, std::memory_order_relaxed);  // published with the array itself
  return array;
}

// Capacity for `count` subscribers: at least twice as many slots, so that the next copy is at
// least count appends (growth) or 3/4 of count removals (compaction below 1/8) away.
std::uint32_t arrayCapacityFor(std::uint32_t count) noexcept {
  return std::bit_ceil(std::max(kMinArrayCapacity, count * 2));
}

SubscriptionTrie::SubscribeResult addSubscriber(TrieNode& node, SubscriberId id,
                                                sync::QsbrDomain& domain) {
  using Result = SubscriptionTrie::SubscribeResult;
  // Relaxed loads of the writer's own data; release stores publish to readers (they load the
  // word with acquire before dereferencing an array).
  const std::uint64_t word = node.subscribers.load(std::memory_order_relaxed);
  if (word == 0) {
    node.subscribers.store(id.bits(), std::memory_order_release);
    return Result::kAdded;
  }
  if (!isArray(word)) {
    if (keyOf(word) == id.key()) {
      if (word == id.bits()) return Result::kUnchanged;
      node.subscribers.store(id.bits(), std::memory_order_release);
      return Result::kReplaced;
    }
    SubscriberArray* array = makeArray(kMinArrayCapacity);
    append(*array, word);
    append(*array, id.bits());
    node.subscribers.store(tagArray(array), std::memory_order_release);
    return Result::kAdded;
  }
  SubscriberArray* array = asArray(word);
  const std::int64_t slot = findKey(*array, id.key());
  if (slot >= 0) {
    auto& cell = array->slots()[slot];
    if (cell.load(std::memory_order_relaxed) == id.bits()) return Result::kUnchanged;
    cell.store(id.bits(), std::memory_order_release);  // same key, same slot: no duplicate
    return Result::kReplaced;
  }
  if (array->end.load(std::memory_order_relaxed) < array->capacity) {
    append(*array, id.bits());
    return Result::kAdded;
  }
  SubscriberArray* bigger = rebuildArray(*array, arrayCapacityFor(array->live + 1));
  append(*bigger, id.bits());
  node.subscribers.store(tagArray(bigger), std::memory_order_release);
  domain.retire(array, &freeArray);
  return Result::kAdded;
}

bool removeSubscriber(TrieNode& node, std::uint64_t key, sync::QsbrDomain& domain) {
  const std::uint64_t word = node.subscribers.load(std::memory_order_relaxed);
  if (word == 0) return false;
  if (!isArray(word)) {
    if (keyOf(word) != key) return false;
    node.subscribers.store(0, std::memory_order_release);
    return true;
  }
  SubscriberArray* array = asArray(word);
  const std::int64_t slot = findKey(*array, key);
  if (slot < 0) return false;
  // Relaxed: a reader that still sees the old id is ordered before this removal.
  array->slots()[slot].store(0, std::memory_order_relaxed);
  if (array->index != nullptr) array->index->erase(key);
  --array->live;
  if (array->live <= 1) {
    // Back to the single-word form. Compaction below 1/8 keeps the scan short.
    std::uint64_t remaining = 0;
    const std::uint32_t end = array->end.load(std::memory_order_relaxed);
    for (std::uint32_t i = 0; i < end && remaining == 0; ++i)
      remaining = array->slots()[i].load(std::memory_order_relaxed);
    node.subscribers.store(remaining, std::memory_order_release);
    domain.retire(array, &freeArray);
  } else if (array->capacity > kMinArrayCapacity && array->live < array->capacity / 8) {
    node.subscribers.store(tagArray(rebuildArray(*array, arrayCapacityFor(array->live))),
                           std::memory_order_release);
    domain.retire(array, &freeArray);
  }
  return true;
}

// Appends the subscribers of `node` to `out`; returns whether there were any. Reader side.
bool collect(const TrieNode& node, std::vector<SubscriberId>& out) noexcept {
  // Acquire: the array (contents and header) was complete before the release store of the word.
  const std::uint64_t word = node.subscribers.load(std::memory_order_acquire);
  if (word == 0) return false;
  if (!isArray(word)) {
    out.push_back(SubscriberId::fromBits(word));
    return true;
  }
  const SubscriberArray* array = asArray(word);
  // Acquire: pairs with append()'s release store; slots below end hold their appended value or a
  // later one, so the slots themselves can be loaded relaxed (they are values, not pointers).
  const std::uint32_t end = array->end.load(std::memory_order_acquire);
  const std::size_t before = out.size();
  for (std::uint32_t i = 0; i < end; ++i) {
    const std::uint64_t bits = array->slots()[i].load(std::memory_order_relaxed);
    if (bits != 0) out.push_back(SubscriberId::fromBits(bits));
  }
  return out.size() != before;
}

// Keeps one entry per key in `ids`, with the highest QoS of that key, in first-seen order. O(n)
// with an open-addressing set of positions in `seen` (cleared here); allocates only when `seen`
// must grow.
void dedupByKey(std::vector<SubscriberId>& ids, std::vector<std::uint32_t>& seen) noexcept {
  const std::size_t count = ids.size();
  const std::size_t capacity = std::bit_ceil(count * 2);
  const int shift = 64 - std::countr_zero(capacity);
  if (seen.size() < capacity) seen.resize(capacity);
  std::fill_n(seen.begin(), capacity, 0u);
  const std::size_t mask = capacity - 1;
  std::size_t kept = 0;
  for (std::size_t i = 0; i < count; ++i) {
    const SubscriberId id = ids[i];
    const std::uint64_t key = id.key();
    // Fibonacci hashing: the high bits of key * 2^64/phi spread the packed fields well.
    std::size_t slot = static_cast<std::size_t>((key * 0x9E3779B97F4A7C15ull) >> shift) & mask;
    for (;;) {
      const std::uint32_t entry = seen[slot];
      if (entry == 0) {
        seen[slot] = static_cast<std::uint32_t>(kept + 1);
        ids[kept++] = id;
        break;
      }
      SubscriberId& earlier = ids[entry - 1];
      if (earlier.key() == key) {
        if (id.qos() > earlier.qos()) earlier = id;
        break;
      }
      slot = (slot + 1) & mask;
    }
  }
  ids.resize(kept);
}

// Frees `node` and everything below it at once. REQUIRES: no reader can reach it.
void destroySubtree(TrieNode* root) {
  std::vector<TrieNode*> stack{root};
  while (!stack.empty()) {
    TrieNode* node = stack.back();
    stack.pop_back();
    const std::uint64_t word = node->subscribers.load(std::memory_order_relaxed);
    if (isArray(word)) freeArray(asArray(word));
    const Children::View children = node->children.load();
    children.forEach([&](TrieNode* child) { stack.push_back(child); });
    if (const Branch* branch = children.table()) {
      if (TrieNode* plus = branch->plus.load(std::memory_order_relaxed)) stack.push_back(plus);
      if (TrieNode* pound = branch->pound.load(std::memory_order_relaxed)) stack.push_back(pound);
    }
    node->children.destroyTable();
    detail::freeLevelNode<TrieNode>(node);
  }
}

}  // namespace

SubscriptionTrie::SubscriptionTrie(sync::QsbrDomain& domain)
    : domain_(domain), root_(detail::makeLevelNode<TrieNode>({}, 0)) {}

SubscriptionTrie::~SubscriptionTrie() {
  destroySubtree(root_);
}

SubscriptionTrie::SubscribeResult SubscriptionTrie::subscribe(std::string_view filter,
                                                              SubscriberId id) {
  assert(validateTopicFilter(filter) == TopicStatus::kOk);
  assert(!id.empty() && id.qos() <= 2);
  std::lock_guard lock(writerMutex_);
  Node* node = root_;
  LevelCursor cursor(filter);
  std::string_view level;
  while (cursor.next(level)) {
    // A new child is linked empty with a release store; readers may see it before it has a
    // subscriber or children, which matches nothing.
    if (level == "+" || level == "#") {
      Branch& branch = node->children.table(domain_);
      std::atomic<Node*>& wildcard = level == "+" ? branch.plus : branch.pound;
      Node* child = wildcard.load(std::memory_order_relaxed);
      if (child == nullptr) {
        child = detail::makeLevelNode<Node>(level, 0);
        wildcard.store(child, std::memory_order_release);
      }
      node = child;
      continue;
    }
    const std::uint32_t hash = detail::hashLevel(level);
    Node* child = node->children.load().find(level, hash);
    if (child == nullptr) {
      child = detail::makeLevelNode<Node>(level, hash);
      node->children.insert(child, domain_);
    }
    node = child;
  }
  const SubscribeResult result = addSubscriber(*node, id, domain_);
  if (result == SubscribeResult::kAdded) size_.fetch_add(1, std::memory_order_relaxed);
  return result;
}

bool SubscriptionTrie::unsubscribe(std::string_view filter, SubscriberId id) {
  assert(validateTopicFilter(filter) == TopicStatus::kOk);
  std::lock_guard lock(writerMutex_);
  path_.clear();
  path_.push_back(root_);
  LevelCursor cursor(filter);
  std::string_view level;
  while (cursor.next(level)) {
    const Children::View children = path_.back()->children.load();
    const Branch* branch = children.table();
    Node* child = nullptr;
    if (level == "+") {
      child = branch == nullptr ? nullptr : branch->plus.load(std::memory_order_relaxed);
    } else if (level == "#") {
      child = branch == nullptr ? nullptr : branch->pound.load(std::memory_order_relaxed);
    } else {
      child = children.find(level, detail::hashLevel(level));
    }
    if (child == nullptr) return false;
    path_.push_back(child);
  }
  if (!removeSubscriber(*path_.back(), id.key(), domain_)) return false;
  size_.fetch_sub(1, std::memory_order_relaxed);
  pruneLocked();
  return true;
}

void SubscriptionTrie::pruneLocked() {
  while (path_.size() > 1) {
    Node* node = path_.back();
    if (node->subscribers.load(std::memory_order_relaxed) != 0) return;
    if (!node->children.load().empty()) return;
    path_.pop_back();
    Children& siblings = path_.back()->children;
    Branch* branch = siblings.writerTable();
    // Unlinking a wildcard child is a relaxed store: readers that still reach the node find it
    // empty (or with subscribers removed concurrently), and it stays valid until the grace period.
    if (branch != nullptr && branch->plus.load(std::memory_order_relaxed) == node) {
      branch->plus.store(nullptr, std::memory_order_relaxed);
      siblings.collapse(domain_);
    } else if (branch != nullptr && branch->pound.load(std::memory_order_relaxed) == node) {
      branch->pound.store(nullptr, std::memory_order_relaxed);
      siblings.collapse(domain_);
    } else {
      siblings.erase(node, domain_);
    }
    domain_.retire(node, &detail::freeLevelNode<Node>);
  }
}

void SubscriptionTrie::match(std::string_view topic, MatchResult& out) const noexcept {
  assert(validateTopicName(topic) == TopicStatus::kOk);
  std::vector<SubscriberId>& ids = out.ids_;
  std::vector<const Node*>& frontier = out.frontier_;
  std::vector<const Node*>& next = out.next_;
  ids.clear();
  frontier.clear();
  frontier.push_back(root_);
  std::uint32_t contributors = 0;
  // The '$' rule: a filter whose first level is a wildcard does not match a topic starting
  // with '$', so the root's wildcard children are skipped for such topics.
  bool wildcardsApply = topic.front() != '$';
  LevelCursor cursor(topic);
  std::string_view level;
  while (cursor.next(level)) {
    const std::uint32_t hash = detail::hashLevel(level);
    next.clear();
    for (const Node* node : frontier) {
      const Children::View children = node->children.load();
      // Acquire (on every pointer below): the target was complete before its release store.
      const Branch* branch = children.table();
      if (branch != nullptr && wildcardsApply) {
        // '#' matches this level and everything after it.
        if (const Node* pound = branch->pound.load(std::memory_order_acquire))
          contributors += collect(*pound, ids);
        if (const Node* plus = branch->plus.load(std::memory_order_acquire)) next.push_back(plus);
      }
      if (const Node* child = children.find(level, hash)) next.push_back(child);
    }
    frontier.swap(next);
    if (frontier.empty()) break;
    wildcardsApply = true;
  }
  for (const Node* node : frontier) {
    contributors += collect(*node, ids);
    // "a/#" also matches "a" itself.
    if (const Branch* branch = node->children.load().table()) {
      if (const Node* pound = branch->pound.load(std::memory_order_acquire))
        contributors += collect(*pound, ids);
    }
  }
  // One node's subscribers hold each key once (see SubscriberArray); several nodes may share keys.
  if (contributors > 1) dedupByKey(ids, out.seen_);
}

}  // namespace tern::routing
