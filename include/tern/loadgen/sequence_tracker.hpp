// SequenceTracker: loss, duplicate and reorder detection for one (publisher, subscriber) pair in
// 16 bytes, however long the run.
//
// A publisher numbers its messages 0, 1, 2, ...; the broker must deliver them to each subscriber
// once and in order. The tracker keeps `base_`, the lowest sequence neither received nor given up,
// and a 64-bit window of the sequences base_ .. base_+63 received ahead of it (bit 0 is always
// clear). Each arrival is classified:
//   - kInOrder:   first arrival, above every sequence seen so far (possibly after a gap);
//   - kReordered: first arrival, but below the highest sequence already seen;
//   - kDuplicate: seen before, or below the window (see below).
// When a sequence arrives 64 or more above base_, the window slides and the unreceived sequences
// that fall out of it are given up (counted in `givenUp`): a message 64 positions behind its
// successors is taken as lost for the running "lost so far" figure. A later arrival of such a
// sequence cannot be told from a duplicate with bounded memory and is classified kDuplicate (the
// final loss figure, expected minus unique deliveries, then overstates loss by one; either way the
// run is marked failed). A broker that keeps per-publisher order never reaches that case.
//
// Ownership: a plain value owned by the subscriber's thread. Never allocates. Not thread-safe.
#pragma once

#include <cstdint>

namespace tern::loadgen {

class SequenceTracker {
 public:
  enum class Outcome : std::uint8_t { kInOrder, kReordered, kDuplicate };
  struct Result {
    Outcome outcome;
    // Sequences given up by this arrival (the window slid past them unreceived).
    std::uint64_t givenUp;
  };
  static constexpr std::uint64_t kWindow = 64;

  // Classifies the arrival of `sequence`. O(1). Never allocates.
  Result observe(std::uint64_t sequence) noexcept;

  // Sequences received (first arrivals) or given up: every sequence below this is settled.
  std::uint64_t settledBelow() const noexcept { return base_; }
  // True when any sequence >= settledBelow() was received (the window holds a gap).
  bool hasGap() const noexcept { return window_ != 0; }

 private:
  // Drops the received sequences at the bottom of the window into base_.
  void settle() noexcept;

  std::uint64_t base_ = 0;
  std::uint64_t window_ = 0;  // bit i: base_ + i received
};

}  // namespace tern::loadgen
