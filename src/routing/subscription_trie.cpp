#include "tern/routing/subscription_trie.hpp"

#include <algorithm>
#include <bit>
#include <cassert>
#include <cstring>
#include <new>
#include <unordered_map>
#include <utility>

#include "routing/child_table.hpp"
#include "tern/routing/topic.hpp"

namespace tern::routing {
namespace detail {

// One filter level. A node of an ordinary level lives in the trie's NodeTable under its prefix
// key; a '+' or '#' node hangs off its parent's `plus`/`pound` field instead (matching a wildcard
// costs one load and no probe) and is in no table.
//
// The subscriber set is one atomic word:
//   0                      no subscriber
//   QoS bits (63..62) != 3 exactly one subscriber, this SubscriberId
//   QoS bits == 3          a SubscriberArray* (QoS 3 does not exist, so no id looks like this)
// Readers load the word once, so they see either the single id or one whole array.
//
// 48 bytes and then the level text, in one allocation: a node with a level of up to 16 bytes
// fits one 64-byte cache line, so a lookup that finds it costs one memory access.
struct TrieNode {
  TrieNode(std::uint64_t prefixKey, TrieNode* parentNode, std::uint32_t levelSize) noexcept
      : key(prefixKey), parent(parentNode), size(levelSize) {}
  std::string_view level() const noexcept {
    return {reinterpret_cast<const char*>(this + 1), size};
  }
  char* levelStorage() noexcept { return reinterpret_cast<char*>(this + 1); }
  const char* levelStorage() const noexcept { return reinterpret_cast<const char*>(this + 1); }

  const std::uint64_t key;  // prefixKey(parent->key, hashLevel64(level())); kRootKey for the root
  TrieNode* const parent;   // null for the root; readers only compare it
  std::atomic<std::uint64_t> subscribers{0};
  std::atomic<TrieNode*> plus{nullptr};
  std::atomic<TrieNode*> pound{nullptr};
  std::uint32_t children = 0;  // writer only: children in the table, plus the wildcard children
  const std::uint32_t size;    // the level text follows the node in the same allocation
};
static_assert(sizeof(TrieNode) == 48);

constexpr std::uint64_t kRootKey = 0x243F6A8885A308D3ull;
// Level texts up to this size share the node's cache line (with a 64-byte-aligned node).
constexpr std::size_t kOneLineLevel = 64 - sizeof(TrieNode);

// The key of the filter prefix that ends with a level of hash `levelHash` below a node with key
// `parentKey`: one 64x64->128-bit multiply, folded. Deterministic, so a reader derives the key
// of every level of a topic from the topic alone, before it touches the trie.
inline std::uint64_t prefixKey(std::uint64_t parentKey, std::uint64_t levelHash) noexcept {
  const unsigned __int128 r = static_cast<unsigned __int128>(parentKey ^ 0xA0761D6478BD642Full) *
                              (levelHash ^ 0xE7037ED1A0B428DBull);
  return static_cast<std::uint64_t>(r) ^ static_cast<std::uint64_t>(r >> 64);
}

TrieNode* makeNode(std::uint64_t key, TrieNode* parent, std::string_view level) {
  void* memory = ::operator new(sizeof(TrieNode) + level.size());
  auto* node = new (memory) TrieNode(key, parent, static_cast<std::uint32_t>(level.size()));
  if (!level.empty()) std::memcpy(node->levelStorage(), level.data(), level.size());
  return node;
}

// Matches QsbrDomain::Deleter.
void freeNode(void* node) {
  static_cast<TrieNode*>(node)->~TrieNode();
  ::operator delete(node);
}

// Every ordinary node of the trie in one open-addressing table (linear probing, power-of-two
// capacity) of atomic slots, keyed by prefix key. A slot holds a node pointer with the top 16 bits
// of the node's key in its unused high bits (x86-64), so a probe skips other nodes without loading
// them. A node is accepted only when its parent and level text are the ones looked for: a key
// collision costs a probe, never a wrong match.
//
// RCU rules are those of ChildTable (child_table.hpp): readers probe with acquire loads and no
// lock; the one writer (the trie's mutex) inserts and erases in place with release stores; a slot
// goes empty -> node -> tombstone -> node ... and back to empty only when no probe chain can run
// through it; when the table is too full (live + tombstones above 3/4) or too sparse (below 1/8)
// the writer builds one of the right size, publishes it and retires the old one, each copy paid
// for by a constant fraction of its size in inserts or erases since the previous one.
class NodeTable {
 public:
  NodeTable(const NodeTable&) = delete;
  NodeTable& operator=(const NodeTable&) = delete;

  static constexpr std::uint64_t kMinCapacity = 16;

  // A table with `capacity` (a power of two, at least kMinCapacity) empty slots.
  static NodeTable* make(std::uint64_t capacity) {
    assert(std::has_single_bit(capacity) && capacity >= kMinCapacity);
    void* memory = ::operator new(sizeof(NodeTable) + capacity * sizeof(Slot));
    auto* table = new (memory) NodeTable(capacity);
    for (std::uint64_t i = 0; i < capacity; ++i)
      new (&table->slots()[i]) Slot(kEmpty);
    return table;
  }
  // Frees the table, not the nodes. Matches QsbrDomain::Deleter.
  static void destroy(void* table) {
    static_cast<NodeTable*>(table)->~NodeTable();
    ::operator delete(table);
  }

  // The node with this key, parent and level, or null. Readers (online) and the writer. Never
  // allocates.
  [[gnu::always_inline]] TrieNode* find(std::uint64_t key, const TrieNode* parent,
                                        std::string_view level) const noexcept {
    const std::uintptr_t tag = tagOf(key);
    std::uint64_t i = key & mask_;
    for (std::uint64_t probes = 0; probes <= mask_; ++probes, i = (i + 1) & mask_) {
      // Acquire: the node's fields and text were written before the release store that linked it.
      const std::uintptr_t word = slots()[i].load(std::memory_order_acquire);
      if (word == kEmpty) return nullptr;
      if (word == kTombstone || (word & kTagMask) != tag) continue;
      TrieNode* node = nodeOf(word);
      if (node->key == key && node->parent == parent && node->size == level.size() &&
          sameLevelText(node->levelStorage(), level.data(), level.size()))
        return node;
    }
    return nullptr;
  }

  // Starts loading the slot where a search for `key` begins. Reader side; a hint, no access.
  void prefetchSlot(std::uint64_t key) const noexcept { __builtin_prefetch(&slots()[key & mask_]); }
  // Starts loading the node a search for `key` most likely finds: the one in its first slot, when
  // the tag agrees. `levelSize` tells whether the level text reaches the node's second line.
  void prefetchNode(std::uint64_t key, std::size_t levelSize) const noexcept {
    // Relaxed: the pointer is only a hint for the prefetch; find() loads it again with acquire
    // before anything is read through it.
    const std::uintptr_t word = slots()[key & mask_].load(std::memory_order_relaxed);
    if (word <= kTombstone || (word & kTagMask) != tagOf(key)) return;
    const char* node = reinterpret_cast<const char*>(nodeOf(word));
    __builtin_prefetch(node);
    if (levelSize > kOneLineLevel) __builtin_prefetch(node + 64);
  }

  // Writer only: adds `node` (not present yet) in place; false when the table must be rebuilt.
  bool insertInPlace(TrieNode* node) noexcept {
    std::uint64_t i = node->key & mask_;
    for (std::uint64_t probes = 0; probes <= mask_; ++probes, i = (i + 1) & mask_) {
      const std::uintptr_t word = slots()[i].load(std::memory_order_relaxed);
      if (word == kTombstone) {
        --tombstones_;
      } else if (word != kEmpty) {
        continue;
      } else if (live_ + tombstones_ + 1 > maxFill()) {
        return false;
      }
      // Release: publishes the node's contents to readers that load this slot with acquire.
      slots()[i].store(slotValue(node), std::memory_order_release);
      ++live_;
      return true;
    }
    return false;
  }

  // Writer only: removes `node`, which must be present.
  void eraseInPlace(TrieNode* node) noexcept {
    std::uint64_t i = node->key & mask_;
    const std::uintptr_t value = slotValue(node);
    while (slots()[i].load(std::memory_order_relaxed) != value)
      i = (i + 1) & mask_;
    --live_;
    vacateSlot(slots(), i, mask_, tombstones_);
  }

  // Writer only: a new, unpublished table with room for `live` nodes, holding those of `old`.
  static NodeTable* rebuild(const NodeTable& old, std::uint64_t live) {
    NodeTable* table = make(capacityFor(live));
    old.forEach([&](TrieNode* node) { table->insertInPlace(node); });
    return table;
  }

  // Calls visit(TrieNode*) for every node present. Writer side (or no readers).
  template <typename Visit>
  void forEach(Visit&& visit) const {
    for (std::uint64_t i = 0; i <= mask_; ++i) {
      const std::uintptr_t word = slots()[i].load(std::memory_order_relaxed);
      if (word > kTombstone) visit(nodeOf(word));
    }
  }

  std::uint64_t live() const noexcept { return live_; }
  // Writer only: whether an erase left the table sparse enough to shrink.
  bool tooSparse() const noexcept { return mask_ + 1 > kMinCapacity && live_ < (mask_ + 1) / 8; }

 private:
  using Slot = std::atomic<std::uintptr_t>;
  static constexpr std::uintptr_t kEmpty = kEmptySlot;
  static constexpr std::uintptr_t kTombstone = kTombstoneSlot;
#if defined(__x86_64__)
  // User-space addresses on x86-64 fit in 47 bits (see ChildTable), so the top 16 bits of a slot
  // carry 16 bits of the node's key.
  static constexpr int kTagShift = 48;
  static constexpr std::uintptr_t kTagMask = ~((std::uintptr_t{1} << kTagShift) - 1);
#else
  static constexpr int kTagShift = 0;
  static constexpr std::uintptr_t kTagMask = 0;
#endif

  explicit NodeTable(std::uint64_t capacity) noexcept : mask_(capacity - 1) {}
  ~NodeTable() = default;

  // The high bits of the key (the low ones pick the slot).
  static std::uintptr_t tagOf(std::uint64_t key) noexcept {
    if constexpr (kTagShift == 0) return 0;
    return static_cast<std::uintptr_t>(key >> kTagShift) << kTagShift;
  }
  static std::uintptr_t slotValue(TrieNode* node) noexcept {
    const auto bits = reinterpret_cast<std::uintptr_t>(node);
    assert((bits & kTagMask) == 0);
    return bits | tagOf(node->key);
  }
  static TrieNode* nodeOf(std::uintptr_t word) noexcept {
    return reinterpret_cast<TrieNode*>(word & ~kTagMask);
  }
  Slot* slots() noexcept {
    return reinterpret_cast<Slot*>(this + 1);
  }
  const Slot* slots() const noexcept {
    return reinterpret_cast<const Slot*>(this + 1);
  }
  std::uint64_t maxFill() const noexcept {
    return (mask_ + 1) / 4 * 3;
  }
  // At most half full after a rebuild: the next one is at least capacity/4 inserts or
  // capacity/8 erases away.
  static std::uint64_t capacityFor(std::uint64_t live) noexcept {
    return std::max(kMinCapacity, std::bit_ceil(live * 2));
  }

  const std::uint64_t mask_;      // constant after construction: capacity - 1
  std::uint64_t live_ = 0;        // writer only
  std::uint64_t tombstones_ = 0;  // writer only
};
static_assert(alignof(NodeTable) >= alignof(std::atomic<std::uintptr_t>));

}  // namespace detail

namespace {

using detail::NodeTable;
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

// Stand-ins for the level hashes of '+' and '#' in the keys of wildcard nodes (which are in no
// table; their keys only seed their children's). Any constants do: a collision with an ordinary
// sibling's key costs a probe, not a wrong match.
constexpr std::uint64_t kPlusHash = 0x2B5A9E3779B97F4Bull;
constexpr std::uint64_t kPoundHash = 0x23C2B2AE3D27D4EBull;

}  // namespace

SubscriptionTrie::SubscriptionTrie(sync::QsbrDomain& domain)
    : domain_(domain),
      root_(detail::makeNode(detail::kRootKey, nullptr, {})),
      table_(NodeTable::make(NodeTable::kMinCapacity)) {}

SubscriptionTrie::~SubscriptionTrie() {
  // Every node is the root, in the table, or a wildcard child of one of those.
  NodeTable* table = table_.load(std::memory_order_relaxed);
  std::vector<TrieNode*> stack{root_};
  table->forEach([&](TrieNode* node) { stack.push_back(node); });
  while (!stack.empty()) {
    TrieNode* node = stack.back();
    stack.pop_back();
    if (TrieNode* plus = node->plus.load(std::memory_order_relaxed)) stack.push_back(plus);
    if (TrieNode* pound = node->pound.load(std::memory_order_relaxed)) stack.push_back(pound);
    const std::uint64_t word = node->subscribers.load(std::memory_order_relaxed);
    if (isArray(word)) freeArray(asArray(word));
    detail::freeNode(node);
  }
  NodeTable::destroy(table);
}

SubscriptionTrie::SubscribeResult SubscriptionTrie::subscribe(std::string_view filter,
                                                              SubscriberId id) {
  assert(validateTopicFilter(filter) == TopicStatus::kOk);
  assert(!id.empty() && id.qos() <= 2);
  std::lock_guard lock(writerMutex_);
  keyFilterLocked(filter);
  Node* node = root_;
  LevelCursor cursor(filter);
  std::string_view level;
  for (std::size_t i = 0; cursor.next(level); ++i) {
    const std::uint64_t key = filterKeys_[i];
    // A new node is linked empty with a release store; readers may see it before it has a
    // subscriber or children, which matches nothing.
    if (level == "+" || level == "#") {
      std::atomic<Node*>& wildcard = level == "+" ? node->plus : node->pound;
      Node* child = wildcard.load(std::memory_order_relaxed);
      if (child == nullptr) {
        child = detail::makeNode(key, node, level);
        wildcard.store(child, std::memory_order_release);
        ++node->children;
      }
      node = child;
      continue;
    }
    Node* child = table_.load(std::memory_order_relaxed)->find(key, node, level);
    if (child == nullptr) {
      child = detail::makeNode(key, node, level);
      insertLocked(child);
      ++node->children;
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
  keyFilterLocked(filter);
  const NodeTable* table = table_.load(std::memory_order_relaxed);
  Node* node = root_;
  LevelCursor cursor(filter);
  std::string_view level;
  for (std::size_t i = 0; cursor.next(level); ++i) {
    if (level == "+") {
      node = node->plus.load(std::memory_order_relaxed);
    } else if (level == "#") {
      node = node->pound.load(std::memory_order_relaxed);
    } else {
      node = table->find(filterKeys_[i], node, level);
    }
    if (node == nullptr) return false;
  }
  if (!removeSubscriber(*node, id.key(), domain_)) return false;
  size_.fetch_sub(1, std::memory_order_relaxed);
  pruneLocked(node);
  return true;
}

void SubscriptionTrie::keyFilterLocked(std::string_view filter) {
  // As in match(): the keys of every level follow from the filter alone, so the slots and nodes
  // of all its levels are fetched at once before the walk needs them.
  const NodeTable* table = table_.load(std::memory_order_relaxed);
  filterKeys_.clear();
  std::uint64_t key = detail::kRootKey;
  LevelCursor cursor(filter);
  std::string_view level;
  while (cursor.next(level)) {
    const bool plus = level == "+";
    const bool wildcard = plus || level == "#";
    key = detail::prefixKey(
        key, wildcard ? (plus ? kPlusHash : kPoundHash) : detail::hashLevel64(level));
    filterKeys_.push_back(key);
    if (!wildcard) table->prefetchSlot(key);
  }
  cursor = LevelCursor(filter);
  for (std::size_t i = 0; cursor.next(level); ++i) {
    if (level != "+" && level != "#") table->prefetchNode(filterKeys_[i], level.size());
  }
}

void SubscriptionTrie::insertLocked(Node* node) {
  NodeTable* table = table_.load(std::memory_order_relaxed);  // only the writer stores it
  if (table->insertInPlace(node)) return;
  NodeTable* bigger = NodeTable::rebuild(*table, table->live() + 1);
  bigger->insertInPlace(node);
  // Release: the new table's slots are complete before readers can load it. Readers still in the
  // old one use it until their next quiescent state.
  table_.store(bigger, std::memory_order_release);
  domain_.retire(table, &NodeTable::destroy);
}

void SubscriptionTrie::pruneLocked(Node* node) {
  while (node != root_ && node->children == 0 &&
         node->subscribers.load(std::memory_order_relaxed) == 0) {
    Node* parent = node->parent;
    // Unlinking is a relaxed store: readers that still reach the node find it empty (or with
    // subscribers removed concurrently), and it stays valid until the grace period.
    if (parent->plus.load(std::memory_order_relaxed) == node) {
      parent->plus.store(nullptr, std::memory_order_relaxed);
    } else if (parent->pound.load(std::memory_order_relaxed) == node) {
      parent->pound.store(nullptr, std::memory_order_relaxed);
    } else {
      NodeTable* table = table_.load(std::memory_order_relaxed);
      table->eraseInPlace(node);
      if (table->tooSparse()) {
        // Release: as in insertLocked().
        table_.store(NodeTable::rebuild(*table, table->live()), std::memory_order_release);
        domain_.retire(table, &NodeTable::destroy);
      }
    }
    --parent->children;
    domain_.retire(node, &detail::freeNode);
    node = parent;
  }
}

void SubscriptionTrie::match(std::string_view topic, MatchResult& out) const noexcept {
  assert(validateTopicName(topic) == TopicStatus::kOk);
  std::vector<SubscriberId>& ids = out.ids_;
  std::vector<MatchResult::Level>& levels = out.levels_;
  std::vector<const Node*>& frontier = out.frontier_;
  std::vector<const Node*>& next = out.next_;
  ids.clear();
  levels.clear();
  // Acquire: the table's header and slots were complete before the release store of the pointer.
  const NodeTable* table = table_.load(std::memory_order_acquire);
  // The nodes of a topic are scattered over memory much larger than the caches, and a plain walk
  // waits for each level's slot and then its node before it can start on the next level. The
  // prefix keys of all levels follow from the topic alone, so the walk is preceded by two passes
  // that start every level's slot load at once, then every node load at once: two memory
  // latencies per match instead of two per level.
  std::uint64_t key = detail::kRootKey;
  LevelCursor cursor(topic);
  std::string_view level;
  while (cursor.next(level)) {
    const std::uint64_t hash = detail::hashLevel64(level);
    key = detail::prefixKey(key, hash);
    levels.push_back({level, hash, key});
    table->prefetchSlot(key);
  }
  for (const MatchResult::Level& l : levels)
    table->prefetchNode(l.key, l.text.size());

  frontier.clear();
  frontier.push_back(root_);
  std::uint32_t contributors = 0;
  // The '$' rule: a filter whose first level is a wildcard does not match a topic starting
  // with '$', so the root's wildcard children are skipped for such topics.
  bool wildcardsApply = topic.front() != '$';
  // Off the topic's own path (below a '+'), the walk cannot fetch ahead from the topic alone, so
  // it fetches one level ahead as it goes: the wildcard children of each node it finds, and the
  // slot of each '+' node's child at the next level (its key is known without loading it).
  for (std::size_t k = 0; k < levels.size(); ++k) {
    const MatchResult::Level& l = levels[k];
    const MatchResult::Level* following = k + 1 < levels.size() ? &levels[k + 1] : nullptr;
    next.clear();
    for (const Node* node : frontier) {
      // Acquire (on every pointer below): the target was complete before its release store.
      if (wildcardsApply) {
        // '#' matches this level and everything after it.
        if (const Node* pound = node->pound.load(std::memory_order_acquire))
          contributors += collect(*pound, ids);
        if (const Node* plus = node->plus.load(std::memory_order_acquire)) {
          next.push_back(plus);
          if (following != nullptr) {
            const std::uint64_t plusKey = detail::prefixKey(node->key, kPlusHash);  // plus->key
            table->prefetchSlot(detail::prefixKey(plusKey, following->hash));
          }
        }
      }
      if (const Node* child = table->find(detail::prefixKey(node->key, l.hash), node, l.text)) {
        next.push_back(child);
        // Relaxed: prefetch hints; the next level loads them again with acquire.
        if (const Node* pound = child->pound.load(std::memory_order_relaxed))
          __builtin_prefetch(pound);
        if (const Node* plus = child->plus.load(std::memory_order_relaxed))
          __builtin_prefetch(plus);
      }
    }
    frontier.swap(next);
    if (frontier.empty()) break;
    wildcardsApply = true;
  }
  for (const Node* node : frontier) {
    contributors += collect(*node, ids);
    // "a/#" also matches "a" itself.
    if (const Node* pound = node->pound.load(std::memory_order_acquire))
      contributors += collect(*pound, ids);
  }
  // One node's subscribers hold each key once (see SubscriberArray); several nodes may share keys.
  if (contributors > 1) dedupByKey(ids, out.seen_);
}

}  // namespace tern::routing
