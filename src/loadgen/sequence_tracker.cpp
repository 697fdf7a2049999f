#include "tern/loadgen/sequence_tracker.hpp"

#include <bit>

namespace tern::loadgen {

void SequenceTracker::settle() noexcept {
  const auto run = static_cast<unsigned>(std::countr_one(window_));
  if (run == 0) return;
  window_ = run >= 64 ? 0 : window_ >> run;
  base_ += run;
}

SequenceTracker::Result SequenceTracker::observe(std::uint64_t sequence) noexcept {
  if (sequence < base_) return {Outcome::kDuplicate, 0};

  std::uint64_t givenUp = 0;
  if (sequence - base_ >= kWindow) {
    // Slide so that `sequence` lands on bit 63; everything unreceived below the new base is lost.
    const std::uint64_t shift = sequence - base_ - (kWindow - 1);
    if (shift >= kWindow) {
      givenUp = (kWindow - static_cast<std::uint64_t>(std::popcount(window_))) + (shift - kWindow);
      window_ = 0;
    } else {
      const std::uint64_t leaving = window_ & ((std::uint64_t{1} << shift) - 1);
      givenUp = shift - static_cast<std::uint64_t>(std::popcount(leaving));
      window_ >>= shift;
    }
    base_ += shift;
  }

  const std::uint64_t bit = std::uint64_t{1} << (sequence - base_);
  if ((window_ & bit) != 0) return {Outcome::kDuplicate, givenUp};
  // The highest sequence seen is the top bit of the window (when it is not empty).
  const bool belowHighest =
      window_ != 0 && sequence - base_ < 63 - static_cast<std::uint64_t>(std::countl_zero(window_));
  window_ |= bit;
  settle();
  return {belowHighest ? Outcome::kReordered : Outcome::kInOrder, givenUp};
}

}  // namespace tern::loadgen
