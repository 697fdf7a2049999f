#include "store_link.hpp"

#include <chrono>

#include "tern/common/clock.hpp"
#include "tern/common/log.hpp"
#include "tern/persist/records.hpp"

namespace tern::broker {

std::uint64_t StoreLink::unixMillisOf(std::int64_t monotonicDeadline) noexcept {
  if (monotonicDeadline == 0) return 0;
  const std::int64_t left = monotonicDeadline - common::monotonicNanos();
  const std::int64_t nowMs = std::chrono::duration_cast<std::chrono::milliseconds>(
                                 std::chrono::system_clock::now().time_since_epoch())
                                 .count();
  // An already expired deadline becomes one millisecond after the epoch: still "expired".
  return static_cast<std::uint64_t>(std::max<std::int64_t>(1, nowMs + left / 1'000'000));
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

void StoreLink::hold(Connection& c, HeldAck ack) {
  ack.socket = c.socket;
  if (ack.ticket == 0) ack.done = true;
  ++c.heldAcks;
  acks_.push_back(ack);
}

void StoreLink::complete(const persist::Completion& completion) noexcept {
  if (outstanding_ != 0) --outstanding_;
  const bool ok = completion.status == persist::WriteStatus::kOk;
  // Held acknowledgements waiting for a write are in ticket order, and completions arrive in
  // submission order, so the one this completes (if any) is near the front.
  for (HeldAck& ack : acks_) {
    if (ack.ticket > completion.cookie) break;
    if (ack.ticket == completion.cookie) {
      ack.done = true;
      ack.ok = ok;
      break;
    }
  }
}

void StoreLink::pushBacklog() {
  while (!backlog_.empty() && store_->tryPush(std::move(backlog_.front()))) {
    backlog_.pop_front();
  }
}

}  // namespace tern::broker
