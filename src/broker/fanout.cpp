#include "fanout.hpp"

#include "broker_context.hpp"
#include "tern/common/clock.hpp"
#include "worker.hpp"

namespace tern::broker {
namespace {

constexpr std::size_t kSpareBatches = 16;
constexpr std::size_t kReturnedPerPop = 64;

}  // namespace

Fanout::Fanout(BrokerContext& context, unsigned index, unsigned workerCount)
    : context_(context), index_(index), outboxes_(workerCount, nullptr) {}

Fanout::~Fanout() {
  collectReturned();
  for (DeliveryBatch* batch : outboxes_)
    delete batch;
  for (DeliveryBatch* batch : spares_)
    delete batch;
}

DeliveryBatch* Fanout::spare() {
  if (spares_.empty()) return new DeliveryBatch(index_);
  DeliveryBatch* batch = spares_.back();
  spares_.pop_back();
  return batch;
}

void Fanout::send(routing::SubscriberId id, const common::Message& message, SharedRoute route,
                  Local local) {
  const unsigned worker = id.worker();
  if (worker == index_) {
    local(id, message, route);
    return;
  }
  DeliveryBatch*& batch = outboxes_[worker];
  if (batch == nullptr) batch = spare();
  batch->add(message, id, route);
  ++remoteDeliveries_;
}

void Fanout::route(const common::Message& message, Local local) {
  context_.trie.match(message.topic(), match_);
  for (const routing::SubscriberId id : match_.subscribers())
    send(id, message, {}, local);
  if (context_.shared.empty()) return;
  context_.shared.match(message.topic(), match_);
  for (const routing::SubscriberId group : match_.subscribers()) {
    const routing::SubscriberId member = pick(group, 0);
    if (!member.empty()) send(member, message, SharedRoute::of(group), local);
  }
}

routing::SubscriberId Fanout::pick(routing::SubscriberId group, std::uint64_t exclude) {
  const std::span<const routing::SubscriberId> members = context_.shared.members(group);
  if (members.empty()) return {};
  const std::uint32_t slot = routing::SharedGroups::slotOf(group);
  if (slot >= cursors_.size()) cursors_.resize(slot + 1, 0);
  std::uint32_t& cursor = cursors_[slot];
  for (std::size_t tries = 0; tries < members.size(); ++tries) {
    const routing::SubscriberId member = members[cursor++ % members.size()];
    if (member.key() != exclude) return member;
  }
  return {};
}

bool Fanout::reroute(const common::Message& message, SharedRoute route, routing::SubscriberId from,
                     Local local) {
  const routing::SubscriberId member = pick(route.group(), from.key());
  if (member.empty()) return false;
  send(member, message, route, local);
  return true;
}

void Fanout::flush(StoreLink& store) {
  // --durability sync: when a publish of this turn waits for the writes its deliveries cause on
  // other workers, every batch carries the turn's fence and each destination answers it.
  unsigned posted = 0;
  for (const DeliveryBatch* batch : outboxes_)
    posted += batch != nullptr && !batch->empty() ? 1 : 0;
  const std::uint64_t fence = store.postTurnFence(posted);
  std::int64_t now = 0;  // one clock read per turn that posts anything
  for (std::size_t w = 0; w < outboxes_.size(); ++w) {
    DeliveryBatch*& batch = outboxes_[w];
    if (batch == nullptr || batch->empty()) continue;
    batch->fence = fence;
    if (now == 0) now = common::monotonicNanos();
    batch->postedAt = now;
    Worker& destination = *context_.workers[w];
    destination.fanout().backlog_.value.fetch_add(static_cast<std::int64_t>(batch->targets.size()),
                                                  std::memory_order_relaxed);
    InboxItem item;
    item.kind = InboxItem::Kind::kDeliveries;
    item.batch = std::exchange(batch, nullptr);
    destination.post(std::move(item));
  }
}

void Fanout::receive(DeliveryBatch* batch, Local local) {
  std::size_t next = 0;
  for (const DeliveryBatch::Run& run : batch->runs) {
    for (std::uint32_t k = 0; k < run.count; ++k)
      local(batch->targets[next++], *run.message, run.route);
  }
  backlog_.value.fetch_sub(static_cast<std::int64_t>(batch->targets.size()),
                           std::memory_order_relaxed);
  batch->clear();  // the message references are dropped here, the memory goes home
  context_.workers[batch->origin]->fanout().giveBack(batch);
}

void Fanout::collectReturned() {
  DeliveryBatch* batches[kReturnedPerPop];
  std::size_t n = 0;
  while ((n = returned_.try_dequeue_bulk(batches, kReturnedPerPop)) != 0) {
    for (std::size_t k = 0; k < n; ++k) {
      if (spares_.size() < kSpareBatches) {
        spares_.push_back(batches[k]);
      } else {
        delete batches[k];
      }
    }
  }
}

bool Fanout::destinationsOverloaded() const noexcept {
  for (const auto& w : context_.workers) {
    if (w->index() != index_ && w->fanout().backlog() > kMaxBacklog) return true;
  }
  return false;
}

}  // namespace tern::broker
