// MemoryBudget: whether a worker may take more memory for a delivery, under the --memory-limit
// that all workers share.
//
// A worker's own memory (its MemoryAccount) is exact and live; the others' is not. So the
// workers keep one shared sum of claims (BrokerContext::memoryClaimed), each worker's claim being
// what it may hold: at the start of a turn (startTurn) its memory now plus its share of the
// headroom the other claims leave under the limit (the headroom divided by the number of
// workers, so that one busy worker does not take what the others will need this turn), at the
// end of a turn (endTurn) what it holds, so that a sleeping worker reserves nothing. Within a turn
// it grows for deliveries only as far as its claim, and the sum of the claims never passes the
// limit: the deliveries of all workers together stay under it however their turns interleave. A
// delivery is judged by the capacity it adds (ByteBuffer::growthFor: a buffer that doubles adds
// its whole size at once, and slow consumers of the same messages double together), not by its
// own bytes.
//
// Memory a worker takes for anything but deliveries (input buffers, sliced work) is not held
// back here (other limits bound it); it only leaves less room for deliveries.
//
// Ownership: one per worker, used on its thread only; the shared sum outlives it. Two atomic
// read-modify-writes on the shared sum per turn, none per delivery.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>

namespace tern::broker {

class MemoryBudget {
 public:
  MemoryBudget(std::atomic<std::int64_t>& claimed, std::size_t limit, unsigned workers) noexcept
      : claimed_(claimed),
        limit_(static_cast<std::int64_t>(limit)),
        workers_(std::max(1u, workers)) {}
  ~MemoryBudget() { claimed_.fetch_sub(claim_, std::memory_order_relaxed); }
  MemoryBudget(const MemoryBudget&) = delete;
  MemoryBudget& operator=(const MemoryBudget&) = delete;

  // At the start of a turn, with this worker's memory at `own`: claims its share of the headroom.
  // Relaxed is enough for the shared sum: it is only ever changed by read-modify-writes (which
  // read the latest value in its modification order, so no claim is lost or counted twice), and
  // nothing else is published through it.
  void startTurn(std::int64_t own) noexcept {
    std::int64_t total = claimed_.load(std::memory_order_relaxed);
    std::int64_t fresh = own;
    do {
      const std::int64_t headroom = limit_ - (total - claim_) - own;
      fresh = own + std::max<std::int64_t>(0, headroom) / workers_;
    } while (
        !claimed_.compare_exchange_weak(total, total - claim_ + fresh, std::memory_order_relaxed));
    claim_ = fresh;
  }
  // At the end of a turn: the claim becomes what the worker holds.
  void endTurn(std::int64_t own) noexcept {
    claimed_.fetch_add(own - claim_, std::memory_order_relaxed);
    claim_ = own;
  }
  // Whether growing by `growth` bytes, with this worker's memory at `own` now, stays within its
  // claim (what adds nothing always does; what it freed this turn is room again).
  bool admits(std::int64_t own, std::size_t growth) const noexcept {
    return growth == 0 || own + static_cast<std::int64_t>(growth) <= claim_;
  }

 private:
  std::atomic<std::int64_t>& claimed_;
  const std::int64_t limit_;
  const std::int64_t workers_;
  std::int64_t claim_ = 0;  // what this worker has added to the shared sum
};

}  // namespace tern::broker
