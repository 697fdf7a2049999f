// SharedRoute: what a delivery made for a shared subscription ($share/<name>/<filter>) carries
// with it: the group's handle (routing::SharedGroups) and how many members declined it so far.
// A member with no room for it (output or queue full, offline, a line session for a message the
// line protocol cannot frame) declines, and the message goes to another member of the group; after
// kMaxDeclines the member it reaches takes it or drops it like any delivery. One word, so delivery
// batches and MQTT queues carry it at no cost; zero for an ordinary delivery.
#pragma once

#include <cstdint>

#include "tern/routing/subscriber_id.hpp"

namespace tern::broker {

struct SharedRoute {
  static constexpr unsigned kMaxDeclines = 4;
  static constexpr unsigned kDeclineShift = 56;
  static constexpr std::uint64_t kGroupMask = (std::uint64_t{1} << kDeclineShift) - 1;

  std::uint64_t bits = 0;

  static SharedRoute of(routing::SubscriberId group) noexcept {
    return {group.bits() & kGroupMask};
  }
  bool shared() const noexcept { return bits != 0; }
  routing::SubscriberId group() const noexcept {
    return routing::SubscriberId::fromBits(bits & kGroupMask);
  }
  unsigned declines() const noexcept { return static_cast<unsigned>(bits >> kDeclineShift); }
  // Whether the member it reaches may hand it on instead of dropping or queueing it.
  bool mayDecline() const noexcept { return shared() && declines() < kMaxDeclines; }
  // The route after one more member declined.
  SharedRoute declined() const noexcept { return {bits + (std::uint64_t{1} << kDeclineShift)}; }
  // The route of a message that must be taken where it lands (no other member can be found).
  SharedRoute last() const noexcept {
    return {(bits & kGroupMask) | (std::uint64_t{kMaxDeclines} << kDeclineShift)};
  }
  // The route of a message handed on afresh (its member's session ended before it was acked).
  SharedRoute restarted() const noexcept { return {bits & kGroupMask}; }
};

}  // namespace tern::broker
