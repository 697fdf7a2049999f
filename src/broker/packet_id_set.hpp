// PacketIdSet: a set of MQTT packet ids (1..65535) with O(1) insert, find and erase, for the
// inbound QoS 2 ids a session received and has not seen released yet (exactly-once delivery).
//
// An open-addressing table of 16-bit ids (0 marks an empty slot, and 0 is no valid packet id) with
// linear probing, at most half full, and backward-shift deletion, so no tombstones accumulate under
// churn. A new set allocates nothing (most sessions never use QoS 2); a set that emptied keeps its
// table (no allocation per message when ids come and go one at a time) until releaseIfEmpty(),
// which the worker's once-a-second sweep calls; a set of n ids holds at most 8n + 16 bytes. Not
// thread-safe: owned by its session's worker, like the session.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

namespace tern::broker {

class PacketIdSet {
 public:
  std::size_t size() const noexcept { return size_; }
  bool empty() const noexcept { return size_ == 0; }
  // Heap bytes held.
  std::size_t capacityBytes() const noexcept { return capacity_ * sizeof(std::uint16_t); }

  bool contains(std::uint16_t id) const noexcept {
    if (capacity_ == 0 || id == 0) return false;
    for (std::size_t i = slotOf(id);; i = (i + 1) & (capacity_ - 1)) {
      if (slots_[i] == id) return true;
      if (slots_[i] == 0) return false;
    }
  }

  // Adds `id`; false when it was already present. REQUIRES: id != 0. May allocate.
  bool insert(std::uint16_t id) {
    if (contains(id)) return false;
    if ((size_ + 1) * 2 > capacity_) grow();
    place(id);
    ++size_;
    return true;
  }

  // Removes `id`; false when it was absent. Never allocates.
  bool erase(std::uint16_t id) noexcept {
    if (capacity_ == 0 || id == 0) return false;
    const std::size_t mask = capacity_ - 1;
    std::size_t i = slotOf(id);
    while (slots_[i] != id) {
      if (slots_[i] == 0) return false;
      i = (i + 1) & mask;
    }
    // Backward shift: move each later entry of the probe run into the hole when its home slot
    // does not lie (cyclically) between the hole and its current slot.
    std::size_t hole = i;
    for (std::size_t j = (i + 1) & mask; slots_[j] != 0; j = (j + 1) & mask) {
      const std::size_t home = slotOf(slots_[j]);
      const bool stays = hole <= j ? (hole < home && home <= j) : (hole < home || home <= j);
      if (stays) continue;
      slots_[hole] = slots_[j];
      hole = j;
    }
    slots_[hole] = 0;
    --size_;
    return true;
  }

  // Frees the table when the set is empty.
  void releaseIfEmpty() noexcept {
    if (size_ == 0) clear();
  }

  // Empties the set and frees its memory.
  void clear() noexcept {
    slots_.reset();
    capacity_ = 0;
    size_ = 0;
  }

 private:
  std::size_t slotOf(std::uint16_t id) const noexcept {
    // Fibonacci hashing spreads consecutive ids (clients count up) over the table.
    return (static_cast<std::uint32_t>(id) * 40503u) & (capacity_ - 1);
  }
  void place(std::uint16_t id) noexcept {
    std::size_t i = slotOf(id);
    while (slots_[i] != 0)
      i = (i + 1) & (capacity_ - 1);
    slots_[i] = id;
  }
  void grow() {
    const std::size_t old = capacity_;
    std::unique_ptr<std::uint16_t[]> previous = std::move(slots_);
    capacity_ = old == 0 ? 8 : old * 2;
    slots_ = std::make_unique<std::uint16_t[]>(capacity_);  // zeroed: all empty
    for (std::size_t i = 0; i < old; ++i) {
      if (previous[i] != 0) place(previous[i]);
    }
  }

  std::unique_ptr<std::uint16_t[]> slots_;
  std::size_t capacity_ = 0;  // a power of two, or 0
  std::size_t size_ = 0;
};

}  // namespace tern::broker
