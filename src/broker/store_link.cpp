#include "store_link.hpp"

#include <algorithm>
#include <chrono>
#include <utility>

#include "tern/common/clock.hpp"
#include "tern/common/log.hpp"
#include "tern/persist/records.hpp"

namespace tern::broker {

std::uint64_t StoreLink::unixMillisOf(std::int64_t monotonicDeadline) noexcept {
  return common::DeadlineClocks().unixMillisOf(monotonicDeadline);
}

std::uint64_t StoreLink::writeRetained(const common::Message& m) {
  if (store_ == nullptr) return 0;
  if (m.topic().size() > persist::kMaxStringBytes) {
    if (const std::uint64_t times = unstorableLog_.admit(common::monotonicNanos())) {
      TERN_LOG_WARN(
          "{} retained publish(es) not stored: a topic of {} bytes is longer than the data "
          "directory keeps ({} bytes)",
          times, m.topic().size(), persist::kMaxStringBytes);
    }
    return kUnstorable;
  }
  persist::WriteRequest request;
  if (m.contents().empty()) {
    request.eraseRetained(m.topic());
  } else {
    persist::RetainedRecord record;
    record.topic.assign(m.topic());
    record.payload.assign(m.contents());
    record.qos = m.qos();
    record.properties.assign(m.properties());
    record.expiryUnixMs = unixMillisOf(m.expiresAt());
    request.put(record);
  }
  return submit(std::move(request));
}

std::uint64_t StoreLink::submit(persist::WriteRequest&& request) {
  const std::uint64_t ticket = ++lastTicket_;
  request.setToken(persist::CompletionToken{index_, ticket});
  ++outstanding_;
  // Behind a backlog, a request waits its turn: the store sees requests in ticket order.
  if (!backlog_.empty() || !store_->tryPush(std::move(request))) {
    backlog_.push_back(std::move(request));
  }
  return ticket;
}

void StoreLink::stall(Connection& c) {
  if (c.heldByStore) return;
  c.heldByStore = true;
  stalled_.push_back(c.socket);
}

StoreLink::~StoreLink() {
  for (const HeldAck& ack : acks_) {
    if (ack.resolves != nullptr) ack.resolves->release();
  }
}

void StoreLink::hold(Connection& c, HeldAck ack) {
  ack.socket = c.socket;
  ++c.heldAcks;
  acks_.push_back(ack);
}

void StoreLink::holdThen(Connection& c, HeldAck ack, persist::WriteRequest then) {
  if (acks_.empty() && ack.ticket == 0 && ack.fence == 0) {
    // Nothing to wait for first: the follow-up goes now (not at the next poll).
    ack.after = lastTicket_;
    ack.ticket = submit(std::move(then));
    hold(c, ack);
    return;
  }
  ack.then = true;
  thens_.push_back({std::move(then), false});
  hold(c, ack);
}

void StoreLink::cancelThen(std::string_view keyPrefix) {
  for (FollowUp& f : thens_) {
    const auto& ops = f.request.ops();
    if (!ops.empty() && ops.front().key.starts_with(keyPrefix)) f.cancelled = true;
  }
}

void StoreLink::complete(const persist::Completion& completion) {
  if (outstanding_ != 0) --outstanding_;
  completedThrough_ = std::max(completedThrough_, completion.cookie);
  if (completion.status != persist::WriteStatus::kOk) failed_.push_back(completion.cookie);
}

bool StoreLink::failedIn(std::uint64_t after, std::uint64_t through) const noexcept {
  for (const std::uint64_t t : failed_) {
    if (t > after && t <= through) return true;
  }
  return false;
}

bool StoreLink::fenceDone(std::uint64_t id, bool& ok) const noexcept {
  if (fences_.empty() || id < fences_.front().id) return false;  // not posted yet
  const std::size_t at = static_cast<std::size_t>(id - fences_.front().id);
  if (at >= fences_.size()) return false;  // posted at the end of this turn
  const Fence& fence = fences_[at];
  if (fence.remaining != 0) return false;
  ok = ok && fence.ok;
  return true;
}

bool StoreLink::settle(HeldAck& ack) noexcept {
  if (ack.ticket > completedThrough_) return false;
  bool ok = ack.ticket == 0 || !failedIn(ack.after, ack.ticket);
  if (ack.fence != 0 && !fenceDone(ack.fence, ok)) return false;
  ack.ok = ok;
  return true;
}

void StoreLink::pruneFailures() noexcept {
  // Failures older than every range still waiting are not asked about again. The ranges of the
  // acknowledgements increase along acks_ except for followed ones, so the scan goes on past
  // those (only while some failure is kept: rarely).
  if (failed_.empty()) return;
  std::uint64_t oldest = lastTicket_;
  for (const HeldAck& ack : acks_) {
    if (ack.ticket == 0) continue;
    oldest = std::min(oldest, ack.after);
    if (!ack.followed) break;
  }
  if (!arrived_.empty()) oldest = std::min(oldest, arrived_.front().after);
  while (!failed_.empty() && failed_.front() <= oldest)
    failed_.pop_front();
}

std::uint64_t StoreLink::turnFence() {
  if (turnFence_ == 0) turnFence_ = ++lastFence_;
  return turnFence_;
}

std::uint64_t StoreLink::postTurnFence(unsigned batches) {
  const std::uint64_t fence = std::exchange(turnFence_, 0);
  if (fence == 0) return 0;
  fences_.push_back({fence, batches, true});
  return fence;
}

void StoreLink::fencePassed(std::uint64_t fence, bool ok) {
  if (fences_.empty() || fence < fences_.front().id) return;
  const std::size_t at = static_cast<std::size_t>(fence - fences_.front().id);
  if (at >= fences_.size()) return;
  Fence& f = fences_[at];
  if (f.remaining != 0) --f.remaining;
  f.ok = f.ok && ok;
}

void StoreLink::fenceArrived(unsigned origin, std::uint64_t fence, std::uint64_t after,
                             std::uint64_t onward) {
  arrived_.push_back({origin, fence, after, lastTicket_, onward});
}

std::uint64_t StoreLink::referenceMessage(const common::Message& m,
                                          persist::WriteRequest& request) {
  auto [it, fresh] = messages_.try_emplace(&m, Persisted{0, 0});
  if (fresh) {
    it->second.id = nextId();
    persist::MessageRecord record;
    record.id = it->second.id;
    record.topic.assign(m.topic());
    record.payload.assign(m.contents());
    record.qos = m.qos();
    record.retain = m.retain();
    record.properties.assign(m.properties());
    record.expiryUnixMs = unixMillisOf(m.expiresAt());
    if (const common::PublishName name = m.publisher(); name.serial != 0) {
      record.publisherId.assign(name.clientId);
      record.publisherPacketId = name.packetId;
      record.publishSerial = name.serial;
    }
    request.putNew(record);  // ids are never reused (BrokerContext::nextMessageId)
  }
  ++it->second.refs;
  return it->second.id;
}

void StoreLink::releaseMessage(const common::Message& m, persist::WriteRequest& request) {
  const auto it = messages_.find(&m);
  if (it == messages_.end()) return;
  if (--it->second.refs != 0) return;
  request.eraseMessage(it->second.id);
  messages_.erase(it);
}

void StoreLink::adoptMessage(const common::Message& m, std::uint64_t id, bool pinned) {
  auto [it, fresh] = messages_.try_emplace(&m, Persisted{id, 0});
  if (fresh && pinned) it->second.refs = std::uint64_t{1} << 62;  // never reaches 0
  ++it->second.refs;
}

void StoreLink::pushBacklog() {
  while (!backlog_.empty() && store_->tryPush(std::move(backlog_.front()))) {
    backlog_.pop_front();
  }
}

}  // namespace tern::broker
