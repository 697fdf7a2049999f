// ChildTable: the children of one topic-level node in the RetainedStore (SubscriptionTrie keeps
// its nodes in one table keyed by filter prefix instead; see subscription_trie.cpp).
//
// An open-addressing hash table (linear probing, power-of-two capacity) of atomic child-pointer
// slots, read with no lock under QSBR (sync/qsbr.hpp) and written by one writer at a time (the
// owning structure's mutex). Readers see a slot go empty -> node -> tombstone -> node -> ... and
// never back to empty while a probe chain may run through it, so a probe that stops at an empty
// slot never misses a child that was present for its whole duration.
//
// Writers change a table in place when they can: a new child goes into the first free slot of its
// probe sequence (release store), a removed child becomes a tombstone (or an empty slot when no
// chain can run through it). When the table is too full (live children plus tombstones above 3/4)
// or too sparse (below 1/8), the writer builds a table of the right size, publishes it with a
// release store on the owner's ChildLink and retires the old one; every copy is paid for by at
// least a constant fraction of its size in inserts or erases since the previous one (amortized
// O(1)).
//
// Nodes carry their level text inline (one allocation, see makeLevelNode) and its 32-bit hash; a
// probe compares the hash first.
//
// Node requirements: `std::uint32_t hash` and `std::string_view level() const noexcept`.
//
// A node does not point at its table directly but holds a ChildLink: nothing, its only child
// (tagged pointer; no table, so a chain of single children costs no extra allocation and no extra
// cache miss per level), or a table.
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
// Computed once per level per match. Never allocates, never calls memcpy for the tail.
inline std::uint64_t hashLevel64(std::string_view level) noexcept {
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
  // The last 0..7 bytes with overlapping fixed-size loads: every byte counts, nothing is read
  // outside the level.
  std::uint64_t tail = 0;
  if (n >= 4) {
    std::uint32_t first;
    std::uint32_t last;
    std::memcpy(&first, p, 4);
    std::memcpy(&last, p + n - 4, 4);
    tail = (std::uint64_t{first} << 32) | last;
  } else if (n > 0) {
    tail = (std::uint64_t{static_cast<unsigned char>(p[0])} << 16) |
           (std::uint64_t{static_cast<unsigned char>(p[n / 2])} << 8) |
           static_cast<unsigned char>(p[n - 1]);
  }
  h = mix(h ^ tail, kMul1);
  return mix(h, kMul2);
}

// Whether two level texts of the same size `n` are equal. Inline compares for up to 16 bytes
// (most levels), memcmp beyond.
inline bool sameLevelText(const char* a, const char* b, std::size_t n) noexcept {
  auto load64 = [](const char* p) noexcept {
    std::uint64_t v;
    std::memcpy(&v, p, 8);
    return v;
  };
  auto load32 = [](const char* p) noexcept {
    std::uint32_t v;
    std::memcpy(&v, p, 4);
    return v;
  };
  if (n > 16) return std::memcmp(a, b, n) == 0;
  if (n >= 8) return load64(a) == load64(b) && load64(a + n - 8) == load64(b + n - 8);
  if (n >= 4) return load32(a) == load32(b) && load32(a + n - 4) == load32(b + n - 4);
  if (n == 0) return true;
  return a[0] == b[0] && a[n / 2] == b[n / 2] && a[n - 1] == b[n - 1];
}

// The same hash folded to 32 bits, as the child tables store it in each node.
inline std::uint32_t hashLevel(std::string_view level) noexcept {
  const std::uint64_t h = hashLevel64(level);
  return static_cast<std::uint32_t>(h ^ (h >> 32));
}

// Whether two level texts are equal (sameLevelText with a size check first).
inline bool sameLevel(std::string_view a, std::string_view b) noexcept {
  return a.size() == b.size() && sameLevelText(a.data(), b.data(), a.size());
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

// Writer only: empties slot `i` of an open-addressing table of `mask + 1` slot words (0 empty,
// 1 tombstone, otherwise a node) whose node was just unlinked, keeping `tombstones` counted.
// Shared by ChildTable and the subscription trie's NodeTable, which probe linearly the same way.
// A slot followed by an empty one lies on no probe chain (a chain never crosses an empty slot),
// so it may become empty again, and so may the tombstones just before it; this keeps churn from
// filling the table with tombstones. Relaxed: readers never dereference what they find in a
// slot without checking it, and a node they may still see stays valid until the grace period.
inline constexpr std::uintptr_t kEmptySlot = 0;
inline constexpr std::uintptr_t kTombstoneSlot = 1;  // nodes are at least 8-byte aligned

template <typename Count>
void vacateSlot(std::atomic<std::uintptr_t>* slots, std::uint64_t i, std::uint64_t mask,
                Count& tombstones) noexcept {
  if (slots[(i + 1) & mask].load(std::memory_order_relaxed) != kEmptySlot) {
    slots[i].store(kTombstoneSlot, std::memory_order_relaxed);
    ++tombstones;
    return;
  }
  slots[i].store(kEmptySlot, std::memory_order_relaxed);
  for (std::uint64_t n = 1; n <= mask; ++n) {
    const std::uint64_t j = (i - n) & mask;
    if (slots[j].load(std::memory_order_relaxed) != kTombstoneSlot) break;
    slots[j].store(kEmptySlot, std::memory_order_relaxed);
    --tombstones;
  }
}

// Aligned so that the slots that follow the header are aligned.
template <typename Node>
class alignas(alignof(std::atomic<std::uintptr_t>)) ChildTable {
 public:
  ChildTable(const ChildTable&) = delete;
  ChildTable& operator=(const ChildTable&) = delete;

  // A table with room for `capacity` children (0 or a power of two), all slots empty.
  static ChildTable* make(std::uint32_t capacity) {
    assert(capacity == 0 || std::has_single_bit(capacity));
    void* memory = ::operator new(sizeof(ChildTable) + capacity * sizeof(Slot));
    auto* table = new (memory) ChildTable(capacity);
    for (std::uint32_t i = 0; i < capacity; ++i)
      new (&table->slots()[i]) Slot(kEmpty);
    return table;
  }
  // Frees the table, not the children. Matches QsbrDomain::Deleter.
  static void destroy(void* table) {
    static_cast<ChildTable*>(table)->~ChildTable();
    ::operator delete(table);
  }

  // The child whose level is `level` (with hashLevel(level) == hash), or null. Readers (online)
  // and the writer. Never allocates; at most one probe per slot.
  Node* find(std::string_view level, std::uint32_t hash) const noexcept {
    const std::uint32_t capacity = capacity_;
    if (capacity == 0) return nullptr;
    const std::uint32_t mask = capacity - 1;
    const std::uintptr_t tag = tagOf(hash);
    std::uint32_t i = hash & mask;
    for (std::uint32_t probes = 0; probes < capacity; ++probes, i = (i + 1) & mask) {
      // Acquire: the node's hash and text were written before the release store that linked it.
      const std::uintptr_t word = slots()[i].load(std::memory_order_acquire);
      if (word == kEmpty) return nullptr;
      if (word == kTombstone || (word & kTagMask) != tag) continue;
      Node* node = childOf(word);
      if (node->hash == hash && sameLevel(node->level(), level)) return node;
    }
    return nullptr;
  }

  // Calls visit(Node*) for every child present. Readers and the writer. Never allocates.
  template <typename Visit>
  void forEach(Visit&& visit) const {
    for (std::uint32_t i = 0; i < capacity_; ++i) {
      // Acquire: as in find().
      const std::uintptr_t word = slots()[i].load(std::memory_order_acquire);
      if (word != kEmpty && word != kTombstone) visit(childOf(word));
    }
  }

 private:
  template <typename>
  friend class ChildLink;
  // A slot holds kEmpty, kTombstone, or a child pointer with a tag in its unused top bits.
  using Slot = std::atomic<std::uintptr_t>;
  static constexpr std::uintptr_t kEmpty = kEmptySlot;
  static constexpr std::uintptr_t kTombstone = kTombstoneSlot;
#if defined(__x86_64__)
  // User-space addresses on x86-64 fit in 47 bits (Linux hands out higher ones only to mmap calls
  // that ask for them), so the top 16 bits of a slot carry 16 bits of the child's hash: a probe
  // skips almost every other child without loading it, which in a big table is a cache miss each.
  static constexpr int kTagShift = 48;
  static constexpr std::uintptr_t kTagMask = ~((std::uintptr_t{1} << kTagShift) - 1);
#else
  // No spare pointer bits assumed: every probe compares the child itself.
  static constexpr int kTagShift = 0;
  static constexpr std::uintptr_t kTagMask = 0;
#endif
  // Tables this small may fill up completely: a failed probe costs at most this many compares.
  static constexpr std::uint32_t kSmallCapacity = 4;

  explicit ChildTable(std::uint32_t capacity) noexcept : capacity_(capacity) {}
  ~ChildTable() = default;

  // The tag bits of a slot holding a child with this hash (its high bits: the low ones pick the
  // slot).
  static std::uintptr_t tagOf(std::uint32_t hash) noexcept {
    if constexpr (kTagShift == 0) return 0;
    return static_cast<std::uintptr_t>(hash >> 16) << kTagShift;
  }
  static std::uintptr_t slotValue(Node* child) noexcept {
    const auto bits = reinterpret_cast<std::uintptr_t>(child);
    assert((bits & kTagMask) == 0);
    return bits | tagOf(child->hash);
  }
  static Node* childOf(std::uintptr_t word) noexcept {
    return reinterpret_cast<Node*>(word & ~kTagMask);
  }
  Slot* slots() noexcept {
    return reinterpret_cast<Slot*>(this + 1);
  }
  const Slot* slots() const noexcept {
    return reinterpret_cast<const Slot*>(this + 1);
  }

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
      const std::uintptr_t word = slots()[i].load(std::memory_order_relaxed);
      if (word == kTombstone) {
        --tombstones_;
      } else if (word != kEmpty) {
        continue;
      } else if (live_ + tombstones_ + 1 > maxFill(capacity_)) {
        return false;
      }
      // Release: publishes the child's contents to readers that load this slot with acquire.
      slots()[i].store(slotValue(child), std::memory_order_release);
      ++live_;
      return true;
    }
    return false;
  }

  void eraseInPlace(Node* child) noexcept {
    const std::uint32_t mask = capacity_ - 1;
    std::uint32_t i = child->hash & mask;
    const std::uintptr_t value = slotValue(child);
    while (slots()[i].load(std::memory_order_relaxed) != value)
      i = (i + 1) & mask;
    --live_;
    vacateSlot(slots(), i, mask, tombstones_);
  }

  // A new, unpublished table of `capacity` holding the children of `old` (may be null).
  static ChildTable* rebuild(const ChildTable* old, std::uint32_t capacity) {
    ChildTable* table = make(capacity);
    if (old != nullptr) old->forEach([&](Node* child) { table->insertInPlace(child); });
    return table;
  }

  const std::uint32_t capacity_;  // constant after construction: 0 or a power of two
  std::uint32_t live_ = 0;        // writer only
  std::uint32_t tombstones_ = 0;  // writer only
};

// What a node holds to reach its children: one atomic word that is 0 (no child), a Node* with
// bit 0 set (exactly one child), or a ChildTable*. Readers load it once
// (load()) and see one consistent form; the writer switches forms by publishing a new word with a
// release store and retiring the table it replaced.
template <typename Node>
class ChildLink {
 public:
  using Table = ChildTable<Node>;

  // One loaded value of the link. Valid until the reader's next quiescent state.
  class View {
   public:
    bool empty() const noexcept { return word_ == 0; }
    // The table, or null when there is none.
    const Table* table() const noexcept {
      return (word_ & kDirectTag) != 0 ? nullptr : reinterpret_cast<const Table*>(word_);
    }
    // The child whose level is `level` (hash == hashLevel(level)), or null. Never allocates.
    Node* find(std::string_view level, std::uint32_t hash) const noexcept {
      if ((word_ & kDirectTag) != 0) {
        Node* child = reinterpret_cast<Node*>(word_ & ~kDirectTag);
        return child->hash == hash && sameLevel(child->level(), level) ? child : nullptr;
      }
      return word_ == 0 ? nullptr : table()->find(level, hash);
    }
    // Calls visit(Node*) for every child present.
    template <typename Visit>
    void forEach(Visit&& visit) const {
      if ((word_ & kDirectTag) != 0) {
        visit(reinterpret_cast<Node*>(word_ & ~kDirectTag));
      } else if (word_ != 0) {
        table()->forEach(visit);
      }
    }

   private:
    friend class ChildLink;
    explicit View(std::uintptr_t word) noexcept : word_(word) {}
    std::uintptr_t word_;
  };

  ChildLink() noexcept = default;
  ChildLink(const ChildLink&) = delete;
  ChildLink& operator=(const ChildLink&) = delete;

  // Readers (online) and the writer.
  View load() const noexcept {
    // Acquire: the table or child it points to was complete before the release store.
    return View(word_.load(std::memory_order_acquire));
  }

  // Adds `child`, whose level must not be present yet. Writer only.
  void insert(Node* child, sync::QsbrDomain& domain) {
    const std::uintptr_t word = word_.load(std::memory_order_relaxed);  // only the writer stores
    if (word == 0) {
      publish(tagDirect(child), nullptr, domain);
      return;
    }
    Table* old = (word & kDirectTag) != 0 ? nullptr : reinterpret_cast<Table*>(word);
    if (old != nullptr && old->insertInPlace(child)) return;
    Table* table = old != nullptr ? Table::rebuild(old, Table::capacityFor(old->live_ + 1))
                                  : Table::make(Table::capacityFor(2));
    if (old == nullptr) table->insertInPlace(reinterpret_cast<Node*>(word & ~kDirectTag));
    table->insertInPlace(child);
    publish(reinterpret_cast<std::uintptr_t>(table), old, domain);
  }

  // Removes `child`, which must be present. May shrink the table or fall back to the direct
  // form. Writer only.
  void erase(Node* child, sync::QsbrDomain& domain) {
    const std::uintptr_t word = word_.load(std::memory_order_relaxed);
    if ((word & kDirectTag) != 0) {
      assert(word == tagDirect(child));
      publish(0, nullptr, domain);
      return;
    }
    Table* table = reinterpret_cast<Table*>(word);
    table->eraseInPlace(child);
    if (collapse(domain)) return;
    if (table->capacity_ > Table::kSmallCapacity && table->live_ < table->capacity_ / 8) {
      Table* smaller = Table::rebuild(table, Table::capacityFor(table->live_));
      publish(reinterpret_cast<std::uintptr_t>(smaller), table, domain);
    }
  }

  // Replaces a table that has at most one child by the direct form (or nothing); true when it
  // did. Writer only.
  bool collapse(sync::QsbrDomain& domain) {
    const std::uintptr_t word = word_.load(std::memory_order_relaxed);
    if (word == 0 || (word & kDirectTag) != 0) return false;
    Table* table = reinterpret_cast<Table*>(word);
    if (table->live_ > 1) return false;
    std::uintptr_t direct = 0;
    table->forEach([&](Node* child) { direct = tagDirect(child); });
    publish(direct, table, domain);
    return true;
  }

  // Frees the table (not the children) at once. REQUIRES: no reader can reach it.
  void destroyTable() {
    const std::uintptr_t word = word_.load(std::memory_order_relaxed);
    if (word != 0 && (word & kDirectTag) == 0) Table::destroy(reinterpret_cast<Table*>(word));
    word_.store(0, std::memory_order_relaxed);
  }

 private:
  static constexpr std::uintptr_t kDirectTag = 1;  // nodes are at least 8-byte aligned

  static std::uintptr_t tagDirect(Node* child) noexcept {
    return reinterpret_cast<std::uintptr_t>(child) | kDirectTag;
  }

  void publish(std::uintptr_t word, Table* old, sync::QsbrDomain& domain) {
    // Release: the new table's slots and header (or the direct child) are complete before readers
    // can load the word. Readers that still hold the old table use it until their next quiescent
    // state; it is freed after the grace period.
    word_.store(word, std::memory_order_release);
    if (old != nullptr) domain.retire(old, &Table::destroy);
  }

  std::atomic<std::uintptr_t> word_{0};
};

}  // namespace tern::routing::detail
