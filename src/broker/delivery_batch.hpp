// DeliveryBatch: the deliveries one worker sends another in one loop turn.
//
// Ownership: built by the publishing worker (`origin`), moved through the destination's inbox,
// delivered and emptied by the destination, and given back to its origin (Fanout), which reuses or
// frees it: its memory is allocated and freed on one thread. Never shared: exactly one thread
// touches it at a time.
//
// Messages are grouped in runs: consecutive targets of the same message share one reference, so a
// publish fanned out to many sessions of another worker costs one atomic increment, not one per
// subscriber. A run also carries the SharedRoute of its deliveries (zero unless they were made
// for a shared subscription).
#pragma once

#include <cstdint>
#include <vector>

#include "shared_route.hpp"
#include "tern/common/message.hpp"
#include "tern/routing/subscriber_id.hpp"

namespace tern::broker {

struct DeliveryBatch {
  explicit DeliveryBatch(unsigned originWorker) noexcept : origin(originWorker) {}

  struct Run {
    const common::Message* message;  // one reference owned by the batch
    std::uint32_t count;             // number of consecutive entries of `targets`
    SharedRoute route;
  };
  const unsigned origin;  // the worker that made it, and gets it back
  std::vector<Run> runs;
  std::vector<routing::SubscriberId> targets;
  // When the origin posted it (monotonic ns), for the destination's inbox-wait histogram.
  std::int64_t postedAt = 0;
  // --durability sync: the origin's fence (StoreLink) this batch carries; the destination answers
  // it once the writes its deliveries caused are durable. 0: none.
  std::uint64_t fence = 0;

  bool empty() const noexcept { return targets.empty(); }

  // Adds a delivery of `message` to `target`, taking a reference for a new run.
  void add(const common::Message& message, routing::SubscriberId target, SharedRoute route = {}) {
    if (runs.empty() || runs.back().message != &message || runs.back().route.bits != route.bits) {
      message.addRefs(1);
      runs.push_back({&message, 0, route});
    }
    ++runs.back().count;
    targets.push_back(target);
  }

  // Drops every reference and empties the batch, keeping its capacity.
  void clear() noexcept {
    for (const Run& run : runs)
      run.message->release();
    runs.clear();
    targets.clear();
    fence = 0;
  }

  ~DeliveryBatch() { clear(); }
};

}  // namespace tern::broker
