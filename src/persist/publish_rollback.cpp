#include "tern/persist/publish_rollback.hpp"

#include <algorithm>

namespace tern::persist {

void PublishRollback::addPublisher(const LoadedSession& session) {
  publishers_[session.session.clientId] = &session;
}

std::uint64_t PublishRollback::resolvedThrough(const LoadedSession& session) noexcept {
  // Packet id 0 sorts first.
  if (session.inbound.empty() || session.inbound.front().packetId != 0) return 0;
  return session.inbound.front().serial;
}

bool PublishRollback::rollsBack(const MessageRecord& message) const {
  if (message.publishSerial == 0) return false;
  const auto found = publishers_.find(message.publisherId);
  if (found == publishers_.end()) return false;
  const LoadedSession& publisher = *found->second;
  const std::uint64_t through = resolvedThrough(publisher);
  if (through == 0 || message.publishSerial <= through) return false;
  const auto& inbound = publisher.inbound;
  const auto it = std::lower_bound(
      inbound.begin(), inbound.end(), message.publisherPacketId,
      [](const InboundQos2& in, std::uint16_t packetId) { return in.packetId < packetId; });
  return it == inbound.end() || it->packetId != message.publisherPacketId ||
         it->serial < message.publishSerial;
}

}  // namespace tern::persist
