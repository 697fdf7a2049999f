// PacketIdWindow: the MQTT packet identifiers of one client's publishes in flight, and what each
// one is waiting for.
//
// loadgen pipelines its QoS 1/2 publishes (MQTT allows any number in flight from the client), so
// it needs up to 65535 distinct 16-bit ids and must never reuse one still in flight
// [MQTT-2.3.1-2]. Ids are handed out in sequence, 1..65535 then 1 again, and the ids in the window
// are always the contiguous run [oldest, oldest + size) (mod 65535): an id acknowledged out of
// order is retired at once but keeps its place until every older id is retired too, so the next id
// handed out is free exactly when the window is not full. Brokers acknowledge in publish order
// [MQTT-4.6.0-2], so in practice the oldest id retires first and the window stays short.
//
// Each id carries the publish's intended send time (for the acknowledgement latency) and its stage:
// QoS 1 waits for PUBACK; QoS 2 waits for PUBREC, then (after loadgen's PUBREL) for PUBCOMP.
//
// Storage is a ring that doubles up to 65536 entries, so acquiring allocates only while the window
// reaches its working depth. Owned by one session on one thread. Not thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

namespace tern::loadgen {

class PacketIdWindow {
 public:
  // Ids in flight at most: every non-zero 16-bit value.
  static constexpr std::size_t kMaxInFlight = 65535;

  enum class Stage : std::uint8_t {
    kRetired,       // acknowledged (kept only until the older ids retire)
    kAwaitingAck,   // QoS 1: PUBACK
    kAwaitingRec,   // QoS 2: PUBREC
    kAwaitingComp,  // QoS 2: PUBCOMP (PUBREL sent)
  };

  // Ids between the oldest one not retired and the newest handed out, retired ones included.
  std::size_t size() const noexcept { return size_; }
  // Ids still waiting for an acknowledgement.
  std::size_t inFlight() const noexcept { return inFlight_; }
  bool empty() const noexcept { return size_ == 0; }
  bool full() const noexcept { return size_ == kMaxInFlight; }

  // Hands out the next id for a publish intended at `intendedNs`, waiting at `stage`.
  // REQUIRES: !full(); stage != kRetired. Allocates only when the ring grows.
  std::uint16_t acquire(std::int64_t intendedNs, Stage stage);

  // The stage of `id`: kRetired when it is not in flight (never handed out, or already retired).
  Stage stage(std::uint16_t id) const noexcept;
  // Moves an id from kAwaitingRec to kAwaitingComp (PUBREC arrived). False when `id` is not
  // waiting for PUBREC. Never allocates.
  bool received(std::uint16_t id) noexcept;
  // Retires an id waiting at `expected` and returns its intended time through `intendedNs`. False
  // (nothing changes) when `id` is not waiting at that stage. Never allocates.
  bool retire(std::uint16_t id, Stage expected, std::int64_t& intendedNs) noexcept;

 private:
  struct Entry {
    std::int64_t intendedNs;
    Stage stage;
  };

  // Position of `id` in the window (0 = oldest), or size_ and beyond when it is not in it.
  std::size_t offsetOf(std::uint16_t id) const noexcept;
  Entry& at(std::size_t offset) noexcept { return ring_[(head_ + offset) & (capacity_ - 1)]; }
  const Entry& at(std::size_t offset) const noexcept {
    return ring_[(head_ + offset) & (capacity_ - 1)];
  }
  void grow();

  std::unique_ptr<Entry[]> ring_;
  std::size_t capacity_ = 0;  // a power of two, at most 65536
  std::size_t head_ = 0;      // ring index of the oldest id
  std::size_t size_ = 0;
  std::size_t inFlight_ = 0;
  std::uint16_t oldestId_ = 1;  // the id at head_ (or the next one handed out when empty)
};

}  // namespace tern::loadgen
