// SharedGroups: the shared subscriptions of the broker ($share/<name>/<filter>, MQTT 5.0 4.8.2),
// for sessions of every protocol. A group is one (name, filter) pair; each message that matches
// its filter goes to one member of the group, not to all of them.
//
// Read-copy-update like the SubscriptionTrie it is built on: the filters live in a trie of their
// own whose "subscribers" are group handles, and each group's members are one immutable array,
// replaced whole (release store) when a member joins or leaves and retired through the QSBR
// domain. A publish matches the group trie and reads the member arrays with plain loads: no lock,
// no read-modify-write, no allocation. Which member gets a message is the caller's choice
// (Fanout: round robin per worker, skipping members that decline).
//
// A group handle (a SubscriberId with QoS 0) names a group slot and the slot's generation; a slot
// whose group ended and was reused by another group has another generation, so a handle that a
// reader obtained before the change finds no members instead of the other group's.
//
// Ownership: one per broker (BrokerContext), shared by all workers; it outlives every reader of
// its domain. Threads:
//   - match(), members(), empty(): any online reader of the domain. Lock-free.
//   - join(), leave(), groups(), memberships(): any thread; writers serialize on an internal mutex.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "tern/routing/shared_filter.hpp"
#include "tern/routing/subscriber_id.hpp"
#include "tern/routing/subscription_trie.hpp"
#include "tern/sync/qsbr.hpp"

namespace tern::routing {

class SharedGroups {
 public:
  static constexpr std::uint32_t kMaxGroups = 1u << 20;

  explicit SharedGroups(sync::QsbrDomain& domain = sync::QsbrDomain::global());
  // REQUIRES: no reader is inside match() or holds a members() span.
  ~SharedGroups();
  SharedGroups(const SharedGroups&) = delete;
  SharedGroups& operator=(const SharedGroups&) = delete;

  enum class JoinResult { kAdded, kReplaced, kUnchanged, kFull };
  // Adds `member` (with its granted QoS) to the group (name, filter), creating the group. A member
  // with the same key is replaced when its QoS differs. kFull: kMaxGroups groups exist.
  // REQUIRES: `filter` is a valid topic filter, `name` a valid share name, !member.empty().
  JoinResult join(std::string_view name, std::string_view filter, SubscriberId member);
  // Removes the member with `member.key()`; false when it was not in the group. The group ends
  // with its last member.
  bool leave(std::string_view name, std::string_view filter, SubscriberId member);

  // Clears `out` and fills it with the handles of the groups whose filter matches `topic`.
  // REQUIRES: validateTopicName(topic) == kOk; an online reader.
  void match(std::string_view topic, MatchResult& out) const noexcept { trie_.match(topic, out); }
  // The members of the group `handle` names (each with its QoS), in the order they joined; empty
  // when the group ended. Valid until the reader's next quiescent state.
  std::span<const SubscriberId> members(SubscriberId handle) const noexcept;
  // True when no group exists: a publish then costs one load more than without shared groups.
  bool empty() const noexcept { return trie_.size() == 0; }

  // The slot a handle names: dense, below kMaxGroups (callers index per-group state with it).
  static std::uint32_t slotOf(SubscriberId handle) noexcept {
    return static_cast<std::uint32_t>(handle.bits() & kSlotMask) - 1;
  }

  std::size_t groups() const noexcept { return trie_.size(); }
  std::size_t memberships() const noexcept { return memberships_.load(std::memory_order_relaxed); }

 private:
  static constexpr unsigned kSlotBits = 24;
  static constexpr std::uint64_t kSlotMask = (std::uint64_t{1} << kSlotBits) - 1;
  static constexpr unsigned kChunkBits = 12;
  static constexpr std::uint32_t kChunkSize = 1u << kChunkBits;
  static_assert(kMaxGroups < kSlotMask);

  // Immutable once published.
  struct Members {
    std::uint32_t generation;
    std::vector<SubscriberId> ids;
  };
  struct Slot {
    std::atomic<const Members*> members{nullptr};
  };
  // Writer-side state of a live group, guarded by mutex_.
  struct Group {
    std::uint32_t slot;
    std::uint32_t generation;
    std::vector<SubscriberId> ids;
  };

  static SubscriberId handleOf(std::uint32_t slot, std::uint32_t generation) noexcept {
    return SubscriberId::fromBits((std::uint64_t{generation} << kSlotBits) | (slot + 1));
  }
  Slot& slotLocked(std::uint32_t slot);
  // Publishes g's members (release) and retires the array they replace. REQUIRES: mutex_ held.
  void publishLocked(const Group& g);

  sync::QsbrDomain& domain_;
  SubscriptionTrie trie_;  // filter -> group handles
  // Slots in chunks allocated on first use and kept until destruction, so a reader's pointer to a
  // slot never dangles. Release store by the writer, acquire load by readers.
  std::unique_ptr<std::atomic<Slot*>[]> chunks_;
  std::mutex mutex_;  // serializes join/leave
  // Guarded by mutex_: the live groups by "<name>/<filter>" (a name holds no '/'), the free
  // slots, and the counters that number slots and generations.
  std::unordered_map<std::string, Group> groups_;
  std::vector<std::uint32_t> freeSlots_;
  std::uint32_t nextSlot_ = 0;
  std::uint32_t nextGeneration_ = 1;
  std::string key_;
  // Written under mutex_, read relaxed anywhere (statistics).
  std::atomic<std::size_t> memberships_{0};
};

}  // namespace tern::routing
