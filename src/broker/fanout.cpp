#include "fanout.hpp"

#include "broker_context.hpp"
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

void Fanout::route(const common::Message& message, Local local) {
  context_.trie.match(message.topic(), match_);
  for (const routing::SubscriberId id : match_.subscribers()) {
    const unsigned worker = id.worker();
    if (worker == index_) {
      local(id, message);
      continue;
    }
    DeliveryBatch*& batch = outboxes_[worker];
    if (batch == nullptr) batch = spare();
    batch->add(message, id);
  }
}

void Fanout::flush() {
  for (std::size_t w = 0; w < outboxes_.size(); ++w) {
    DeliveryBatch*& batch = outboxes_[w];
    if (batch == nullptr || batch->empty()) continue;
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
      local(batch->targets[next++], *run.message);
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
