// SubscriberId: what the trie stores per subscription, packed into one 64-bit word so that readers
// load it with a single atomic load and the matcher copies it without touching the session.
//
//   bits 63..62  granted QoS (0..2; the line protocol always uses 0)
//   bits 61..54  worker index (which event loop owns the session)
//   bits 53..32  slot of the session in that worker's session table
//   bits 31..0   generation of the slot (never 0), so a stale id of a closed session is detected
//
// The "key" is the id without its QoS: one session has one key, and the trie keeps at most one
// entry per key per filter (subscribing again with another QoS replaces the entry).
#pragma once

#include <cstdint>

namespace tern::routing {

class SubscriberId {
 public:
  static constexpr unsigned kMaxWorkers = 256;
  static constexpr std::uint32_t kMaxSlots = 1u << 22;

  constexpr SubscriberId() noexcept = default;
  // REQUIRES: worker < kMaxWorkers, slot < kMaxSlots, generation != 0, qos <= 2.
  static constexpr SubscriberId make(unsigned worker, std::uint32_t slot, std::uint32_t generation,
                                     unsigned qos = 0) noexcept {
    return SubscriberId((std::uint64_t{qos} << 62) | (std::uint64_t{worker} << 54) |
                        (std::uint64_t{slot} << 32) | generation);
  }
  static constexpr SubscriberId fromBits(std::uint64_t bits) noexcept { return SubscriberId(bits); }

  constexpr std::uint64_t bits() const noexcept { return bits_; }
  constexpr std::uint64_t key() const noexcept { return bits_ & ~(std::uint64_t{3} << 62); }
  constexpr unsigned qos() const noexcept { return static_cast<unsigned>(bits_ >> 62); }
  constexpr unsigned worker() const noexcept { return static_cast<unsigned>((bits_ >> 54) & 0xFF); }
  constexpr std::uint32_t slot() const noexcept {
    return static_cast<std::uint32_t>((bits_ >> 32) & (kMaxSlots - 1));
  }
  constexpr std::uint32_t generation() const noexcept { return static_cast<std::uint32_t>(bits_); }
  constexpr bool empty() const noexcept { return bits_ == 0; }
  constexpr SubscriberId withQos(unsigned qos) const noexcept {
    return SubscriberId(key() | (std::uint64_t{qos} << 62));
  }

  friend constexpr bool operator==(SubscriberId a, SubscriberId b) noexcept {
    return a.bits_ == b.bits_;
  }

 private:
  explicit constexpr SubscriberId(std::uint64_t bits) noexcept : bits_(bits) {}
  std::uint64_t bits_ = 0;
};

}  // namespace tern::routing
