// Fanout: where a publish goes. One per worker: it matches the topic in the trie, hands each
// subscriber of this worker's sessions to the caller at once, and batches those of every other
// worker (DeliveryBatch: one reference per message run, not one per subscriber), posted once per
// loop turn: one inbox push per destination per turn however many deliveries.
//
// Shared subscriptions (routing::SharedGroups): after the ordinary subscribers, each group that
// matches gets the message once, for the member its turn comes to: round robin over the group's
// members with a cursor per group and per worker (no shared write on the publish path), which
// spreads each worker's publishes, and so all of them, evenly. A member that has no room declines
// and hands the message on (reroute(), SharedRoute).
//
// Batches go back to the worker that made them once delivered (a lock-free return queue, which
// never wakes anyone), so a batch is allocated, grown and freed on one thread.
//
// Flow control between workers: each worker counts the deliveries posted to it and not yet
// delivered (its backlog); while another worker's backlog is over kMaxBacklog, this worker stops
// reading input (TCP holds the publishers back), so no inbox grows without bound and nothing is
// dropped on this path.
//
// Ownership: owned by its Worker. Threads: route/flush/receive/collect: the owner's thread;
// backlog() and giveBack(): any thread.
#pragma once

#include <concurrentqueue/concurrentqueue.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

#include "delivery_batch.hpp"
#include "shared_route.hpp"
#include "tern/common/cache_line.hpp"
#include "tern/common/function_ref.hpp"
#include "tern/common/message.hpp"
#include "tern/routing/subscription_trie.hpp"

namespace tern::broker {

struct BrokerContext;
class StoreLink;

class Fanout {
 public:
  using Local =
      common::FunctionRef<void(routing::SubscriberId, const common::Message&, SharedRoute)>;
  static constexpr std::int64_t kMaxBacklog = 128 * 1024;

  Fanout(BrokerContext& context, unsigned index, unsigned workerCount);
  ~Fanout();
  Fanout(const Fanout&) = delete;
  Fanout& operator=(const Fanout&) = delete;

  // Matches `message` and delivers it: `local` for this worker's subscribers, this turn's batch
  // for the others'. REQUIRES: an online QSBR reader. Allocates only when a batch must grow.
  void route(const common::Message& message, Local local);
  // Sends `message`, which member `from` declined (or could not keep: its session ended), to
  // another member of route's group: false when the group has no other member.
  // REQUIRES: an online QSBR reader.
  bool reroute(const common::Message& message, SharedRoute route, routing::SubscriberId from,
               Local local);
  // Posts this turn's batches to their workers, with this turn's fence of `store`, if any.
  void flush(StoreLink& store);
  // Deliveries handed to other workers' batches so far (a publish compares it before and after:
  // did its fan-out leave this worker?).
  std::uint64_t remoteDeliveries() const noexcept { return remoteDeliveries_; }
  // A batch another worker posted here: `local` for each entry, then the batch goes back.
  void receive(DeliveryBatch* batch, Local local);
  // Takes back the batches other workers emptied (into the spare pool).
  void collectReturned();
  // Whether another worker's backlog is too long for this one to read input.
  bool destinationsOverloaded() const noexcept;

  // Deliveries posted to this worker and not yet delivered. Any thread.
  std::int64_t backlog() const noexcept { return backlog_.value.load(std::memory_order_relaxed); }
  // Hands back a batch this worker made. Any thread; never blocks, never wakes the owner.
  void giveBack(DeliveryBatch* batch) { returned_.enqueue(batch); }

 private:
  DeliveryBatch* spare();
  void send(routing::SubscriberId id, const common::Message& message, SharedRoute route,
            Local local);
  // The member of `group` whose turn it is, other than `exclude` (a key); empty when none.
  routing::SubscriberId pick(routing::SubscriberId group, std::uint64_t exclude);

  BrokerContext& context_;
  const unsigned index_;
  routing::MatchResult match_;  // reused by every publish: no allocation in the steady state
  std::vector<DeliveryBatch*> outboxes_;  // per destination worker: this turn's batch (owned)
  std::vector<DeliveryBatch*> spares_;    // owned
  std::uint64_t remoteDeliveries_ = 0;
  // Per shared group slot (SharedGroups::slotOf): where this worker's round robin stands. Grows
  // when a group with a higher slot is first seen.
  std::vector<std::uint32_t> cursors_;
  moodycamel::ConcurrentQueue<DeliveryBatch*> returned_;
  // Producers (other workers) add, the owner subtracts. Relaxed is enough: it only steers flow
  // control, and an early or late view delays or resumes reading by one loop turn. Written by
  // every worker that posts here: a cache line of its own.
  common::CacheAligned<std::atomic<std::int64_t>> backlog_;
};

}  // namespace tern::broker
