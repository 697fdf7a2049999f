#include "tern/routing/shared_groups.hpp"

#include <algorithm>

namespace tern::routing {

SharedGroups::SharedGroups(sync::QsbrDomain& domain)
    : domain_(domain),
      trie_(domain),
      chunks_(std::make_unique<std::atomic<Slot*>[]>(kMaxGroups / kChunkSize)) {}

SharedGroups::~SharedGroups() {
  for (std::uint32_t c = 0; c < kMaxGroups / kChunkSize; ++c) {
    Slot* chunk = chunks_[c].load(std::memory_order_relaxed);
    if (chunk == nullptr) continue;
    for (std::uint32_t k = 0; k < kChunkSize; ++k)
      delete chunk[k].members.load(std::memory_order_relaxed);
    delete[] chunk;
  }
}

SharedGroups::Slot& SharedGroups::slotLocked(std::uint32_t slot) {
  std::atomic<Slot*>& chunk = chunks_[slot >> kChunkBits];
  Slot* slots = chunk.load(std::memory_order_relaxed);
  if (slots == nullptr) {
    slots = new Slot[kChunkSize];
    // Release: a reader that finds the chunk sees its slots initialized.
    chunk.store(slots, std::memory_order_release);
  }
  return slots[slot & (kChunkSize - 1)];
}

void SharedGroups::publishLocked(const Group& g) {
  const Members* fresh = g.ids.empty() ? nullptr : new Members{g.generation, g.ids};
  // Release: a reader that loads the array sees it filled.
  const Members* old = slotLocked(g.slot).members.exchange(fresh, std::memory_order_acq_rel);
  if (old != nullptr) domain_.retire(const_cast<Members*>(old));
}

SharedGroups::JoinResult SharedGroups::join(std::string_view name, std::string_view filter,
                                            SubscriberId member) {
  const std::lock_guard lock(mutex_);
  key_.assign(name).append("/").append(filter);
  auto it = groups_.find(key_);
  if (it == groups_.end()) {
    std::uint32_t slot = 0;
    if (!freeSlots_.empty()) {
      slot = freeSlots_.back();
      freeSlots_.pop_back();
    } else if (nextSlot_ < kMaxGroups) {
      slot = nextSlot_++;
    } else {
      return JoinResult::kFull;
    }
    const std::uint32_t generation = nextGeneration_++;
    it = groups_.emplace(key_, Group{slot, generation, {}}).first;
    Group& g = it->second;
    g.ids.push_back(member);
    publishLocked(g);
    // The members first, then the handle that leads readers to them.
    trie_.subscribe(filter, handleOf(slot, generation));
    memberships_.fetch_add(1, std::memory_order_relaxed);
    return JoinResult::kAdded;
  }
  Group& g = it->second;
  const auto known = std::find_if(g.ids.begin(), g.ids.end(),
                                  [&](SubscriberId id) { return id.key() == member.key(); });
  if (known != g.ids.end()) {
    if (*known == member) return JoinResult::kUnchanged;
    *known = member;
    publishLocked(g);
    return JoinResult::kReplaced;
  }
  g.ids.push_back(member);
  publishLocked(g);
  memberships_.fetch_add(1, std::memory_order_relaxed);
  return JoinResult::kAdded;
}

bool SharedGroups::leave(std::string_view name, std::string_view filter, SubscriberId member) {
  const std::lock_guard lock(mutex_);
  key_.assign(name).append("/").append(filter);
  const auto it = groups_.find(key_);
  if (it == groups_.end()) return false;
  Group& g = it->second;
  const auto known = std::find_if(g.ids.begin(), g.ids.end(),
                                  [&](SubscriberId id) { return id.key() == member.key(); });
  if (known == g.ids.end()) return false;
  g.ids.erase(known);
  memberships_.fetch_sub(1, std::memory_order_relaxed);
  if (g.ids.empty()) {
    // The handle goes first, then the members; a reader that still holds the handle finds no
    // members, or (once the slot is reused) another generation.
    trie_.unsubscribe(filter, handleOf(g.slot, g.generation));
    publishLocked(g);
    freeSlots_.push_back(g.slot);
    groups_.erase(it);
    return true;
  }
  publishLocked(g);
  return true;
}

std::span<const SubscriberId> SharedGroups::members(SubscriberId handle) const noexcept {
  const std::uint64_t bits = handle.bits();
  const std::uint64_t slotPlusOne = bits & kSlotMask;
  if (slotPlusOne == 0 || slotPlusOne > kMaxGroups) return {};
  const auto slot = static_cast<std::uint32_t>(slotPlusOne - 1);
  // Acquire: pairs with the writer's release stores of the chunk and of the array.
  const Slot* chunk = chunks_[slot >> kChunkBits].load(std::memory_order_acquire);
  if (chunk == nullptr) return {};
  const Members* m = chunk[slot & (kChunkSize - 1)].members.load(std::memory_order_acquire);
  if (m == nullptr || m->generation != static_cast<std::uint32_t>(bits >> kSlotBits)) return {};
  return {m->ids.data(), m->ids.size()};
}

}  // namespace tern::routing
