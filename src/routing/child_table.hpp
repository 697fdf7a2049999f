// ChildTable: the children of one topic-level node, shared by SubscriptionTrie and RetainedStore.
//
// An open-addressing hash table (linear probing, power-of-two capacity) of std::atomic<Node*>
// slots, read with no lock under QSBR (sync/qsbr.hpp) and written by one writer at a time (the
// owning structure's mutex). Readers see a slot go empty -> node -> tombstone -> node -> ... and
// never back to empty while a probe chain may run through it, so a probe that stops at an empty
// slot never misses a child that was present for its whole duration.
//
// Writers change a table in place when they can: a new child goes into the first free slot of its
// probe sequence (release store), a removed child becomes a tombstone (or an empty slot when no
// chain can run through it). When the table is too full (live children plus tombstones above 3/4)
// or too sparse (below 1/8), the writer builds a table of the right size, publishes it with a
// release store on the owner's pointer and retires the old one; every copy is paid for by at least
// a constant fraction of its size in inserts or erases since the previous one (amortized O(1)).
//
// Nodes carry their level text inline (one allocation, see makeLevelNode) and its 32-bit hash; a
// probe compares the hash first. `Extra` is a header the owner may add to each table (the trie
// keeps its '+' and '#' children there); it is copied into every rebuilt table.
//
// Node requirements: `std::uint32_t hash` and `std::string_view level() const noexcept`.
// Extra requirements: default-constructible and `void copyFrom(const Extra&) noexcept`.
#pragma once

#include <atomic>
#include <bit>
#include <cassert>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <new>
#include <string_view>

#include "tern/sync/qsbr.hpp"

namespace tern::routing::detail {

// Hash of one topic level: 8 bytes at a time, folded 64x64->128-bit multiplies (wyhash-like).
// Computed once per level per match and stored in each node. Never allocates.
inline std::uint32_t hashLevel(std::string_view level) noexcept {
  constexpr std::uint64_t kMul1 = 0x9E3779B97F4A7C15ull;
  constexpr std::uint64_t kMul2 = 0xD6E8FEB86659FD93ull;
  auto mix = [](std::uint64_t a, std::uint64_t b) noexcept {
    const unsigned __int128 r = static_cast<unsigned __int128>(a) * b;
    return static_cast<std::uint64_t>(r) ^ static_cast<std::uint64_t>(r >> 64);
  };
  const char* p = level.data();
  std::size_t n = level.size();
  std::uint64_t h = kMul2 ^ n;
  while (n >= 8) {
    std::uint64_t word;
    std::memcpy(&word, p, 8);
    h = mix(h ^ word, kMul1);
    p += 8;
    n -= 8;
  }
  std::uint64_t tail = 0;
  if (n > 0) std::memcpy(&tail, p, n);
  h = mix(h ^ tail, kMul1);
  h = mix(h, kMul2);
  return static_cast<std::uint32_t>(h ^ (h >> 32));
}

// Allocates a Node with `level` stored inline right after it. Node must be constructible from
// (hash, size) and expose `char* levelStorage()` pointing just past itself.
template <typename Node>
Node* makeLevelNode(std::string_view level, std::uint32_t hash) {
  void* memory = ::operator new(sizeof(Node) + level.size());
  auto* node = new (memory) Node(hash, static_cast<std::uint32_t>(level.size()));
  if (!level.empty()) std::memcpy(node->levelStorage(), level.data(), level.size());
  return node;
}

// Frees a node made by makeLevelNode. Matches QsbrDomain::Deleter.
template <typename Node>
void freeLevelNode(void* node) {
  static_cast<Node*>(node)->~Node();
  ::operator delete(node);
}

struct NoExtra {
  void copyFrom(const NoExtra&) noexcept {}
};

// Aligned so that the slots that follow the header are aligned even when Extra is empty.
template <typename Node, typename Extra = NoExtra>
class alignas(alignof(std::atomic<Node*>)) ChildTable : public Extra {
 public:
  ChildTable(const ChildTable&) = delete;
  ChildTable& operator=(const ChildTable&) = delete;

  // A table with room for `capacity` children (0 or a power of two), all slots empty.
  static ChildTable* make(std::uint32_t capacity) {
    assert(capacity == 0 || std::has_single_bit(capacity));
    void* memory = ::operator new(sizeof(ChildTable) + capacity * sizeof(Slot));
    auto* table = new (memory) ChildTable(capacity);
    for (std::uint32_t i = 0; i < capacity; ++i)
      new (&table->slots()[i]) Slot(nullptr);
    return table;
  }
  // Frees the table, not the children. Matches QsbrDomain::Deleter.
  static void destroy(void* table) {
    static_cast<ChildTable*>(table)->~ChildTable();
    ::operator delete(table);
  }

  // The child whose level is `level` (with hashLevel(level) == hash), or null. Readers (online)
  // and the writer. Never allocates; at most capacity() probes.
  Node* find(std::string_view level, std::uint32_t hash) const noexcept {
    const std::uint32_t capacity = capacity_;
    if (capacity == 0) return nullptr;
    const std::uint32_t mask = capacity - 1;
    std::uint32_t i = hash & mask;
    for (std::uint32_t probes = 0; probes < capacity; ++probes, i = (i + 1) & mask) {
      // Acquire: the node's hash and text were written before the release store that linked it.
      Node* node = slots()[i].load(std::memory_order_acquire);
      if (node == nullptr) return nullptr;
      if (node == tombstone()) continue;
      if (node->hash == hash && node->level() == level) return node;
    }
    return nullptr;
  }

  // Calls visit(Node*) for every child present. Readers and the writer. Never allocates.
  template <typename Visit>
  void forEach(Visit&& visit) const {
    for (std::uint32_t i = 0; i < capacity_; ++i) {
      // Acquire: as in find().
      Node* node = slots()[i].load(std::memory_order_acquire);
      if (node != nullptr && node != tombstone()) visit(node);
    }
  }

  std::uint32_t capacity() const noexcept { return capacity_; }
  // Children present. Writer only.
  std::uint32_t live() const noexcept { return live_; }

  // Adds `child`, whose level must not be present yet, to the table `owner` points to (which may
  // be null). Either stores it into a free slot of the current table or publishes a rebuilt table
  // on `owner` and retires the old one. Writer only.
  static void insert(std::atomic<ChildTable*>& owner, Node* child, sync::QsbrDomain& domain) {
    ChildTable* table = owner.load(std::memory_order_relaxed);  // only this writer stores it
    if (table != nullptr && table->insertInPlace(child)) return;
    const std::uint32_t live = table == nullptr ? 0 : table->live_;
    ChildTable* bigger = rebuild(table, capacityFor(live + 1));
    bigger->insertInPlace(child);
    publish(owner, table, bigger, domain);
  }

  // Removes `child`, which must be present, from the table `owner` points to; may publish a
  // smaller table and retire the old one. The table stays (possibly with no children): the owner
  // decides when to drop it. Writer only.
  static void erase(std::atomic<ChildTable*>& owner, Node* child, sync::QsbrDomain& domain) {
    ChildTable* table = owner.load(std::memory_order_relaxed);  // only this writer stores it
    table->eraseInPlace(child);
    if (table->capacity_ > kSmallCapacity && table->live_ < table->capacity_ / 8) {
      publish(owner, table, rebuild(table, capacityFor(table->live_)), domain);
    }
  }

 private:
  using Slot = std::atomic<Node*>;
  // Tables this small may fill up completely: a failed probe costs at most this many compares.
  static constexpr std::uint32_t kSmallCapacity = 4;

  explicit ChildTable(std::uint32_t capacity) noexcept : capacity_(capacity) {}
  ~ChildTable() = default;

  static Node* tombstone() noexcept { return reinterpret_cast<Node*>(std::uintptr_t{1}); }
  Slot* slots() noexcept { return reinterpret_cast<Slot*>(this + 1); }
  const Slot* slots() const noexcept { return reinterpret_cast<const Slot*>(this + 1); }

  // Slots that may be non-empty (live + tombstones) before a rebuild is due.
  static std::uint32_t maxFill(std::uint32_t capacity) noexcept {
    return capacity <= kSmallCapacity ? capacity : capacity / 4 * 3;
  }
  // Capacity of a rebuilt table holding `live` children: at most half full, so that the next
  // rebuild is at least capacity/4 inserts or capacity/8 erases away.
  static std::uint32_t capacityFor(std::uint32_t live) noexcept {
    if (live == 0) return 0;
    if (live <= kSmallCapacity) return std::bit_ceil(live);
    return std::bit_ceil(live * 2);
  }

  bool insertInPlace(Node* child) noexcept {
    if (capacity_ == 0) return false;
    const std::uint32_t mask = capacity_ - 1;
    std::uint32_t i = child->hash & mask;
    for (std::uint32_t probes = 0; probes < capacity_; ++probes, i = (i + 1) & mask) {
      Node* node = slots()[i].load(std::memory_order_relaxed);
      if (node == tombstone()) {
        --tombstones_;
      } else if (node != nullptr) {
        continue;
      } else if (live_ + tombstones_ + 1 > maxFill(capacity_)) {
        return false;
      }
      // Release: publishes the child's contents to readers that load this slot with acquire.
      slots()[i].store(child, std::memory_order_release);
      ++live_;
      return true;
    }
    return false;
  }

  void eraseInPlace(Node* child) noexcept {
    const std::uint32_t mask = capacity_ - 1;
    std::uint32_t i = child->hash & mask;
    while (slots()[i].load(std::memory_order_relaxed) != child)
      i = (i + 1) & mask;
    --live_;
    // A slot followed by an empty one lies on no probe chain (a chain never crosses an empty
    // slot), so it may become empty again, and so may the tombstones just before it. This keeps
    // tombstones from piling up under churn. Relaxed: readers never dereference what they find
    // here; a stale child they may still see stays valid until the grace period.
    if (slots()[(i + 1) & mask].load(std::memory_order_relaxed) != nullptr) {
      slots()[i].store(tombstone(), std::memory_order_relaxed);
      ++tombstones_;
      return;
    }
    slots()[i].store(nullptr, std::memory_order_relaxed);
    for (std::uint32_t n = 1; n < capacity_; ++n) {
      const std::uint32_t j = (i - n) & mask;
      if (slots()[j].load(std::memory_order_relaxed) != tombstone()) break;
      slots()[j].store(nullptr, std::memory_order_relaxed);
      --tombstones_;
    }
  }

  // A new, unpublished table of `capacity` holding the children of `old` (may be null).
  static ChildTable* rebuild(const ChildTable* old, std::uint32_t capacity) {
    ChildTable* table = make(capacity);
    if (old != nullptr) {
      table->Extra::copyFrom(*old);
      old->forEach([&](Node* child) { table->insertInPlace(child); });
    }
    return table;
  }

  static void publish(std::atomic<ChildTable*>& owner, ChildTable* old, ChildTable* table,
                      sync::QsbrDomain& domain) {
    // Release: the new table's slots and header are complete before readers can load it.
    owner.store(table, std::memory_order_release);
    if (old != nullptr) domain.retire(old, &ChildTable::destroy);
  }

  const std::uint32_t capacity_;  // constant after construction: 0 or a power of two
  std::uint32_t live_ = 0;        // writer only
  std::uint32_t tombstones_ = 0;  // writer only
};

}  // namespace tern::routing::detail
