// persist::PublishRollback: at start-up, which queued deliveries belong to a QoS 2 publish whose
// packet id never reached the disk.
//
// In --durability sync the inbound QoS 2 packet id of a persistent publisher is written only once
// every delivery of its publish is durable, and the PUBREC only after that. A crash in between
// leaves deliveries on disk but no id: the client never got its PUBREC and publishes the message
// again after the restart, which delivers it again. So those deliveries are rolled back (erased)
// at start-up, and the resend delivers the message exactly once. A message record names the
// publish it came from (MessageRecord::publisher*); the publisher's inbound records say whether
// that publish was resolved:
//   - its session's resolved-through serial (InboundQos2 packet id 0) is at or above the
//     publish's serial: it was released (or refused) before the crash;
//   - or an inbound record of its packet id holds its serial or a later one: the id reached the
//     disk (awaiting its PUBREL, or released and kept);
//   - or the publisher's session is gone, or has no resolved-through record (written by a tern
//     that did not keep one): nothing will publish it again.
// Otherwise it rolls back.
//
// Ownership and threads: a start-up helper of the broker's main thread; it borrows the loaded
// sessions it indexes until it is destroyed.
#pragma once

#include <string_view>
#include <unordered_map>

#include "tern/persist/records.hpp"
#include "tern/persist/store.hpp"

namespace tern::persist {

class PublishRollback {
 public:
  // Indexes `session` as a possible publisher. `session.inbound` must be in packet-id order (as
  // Store::loadSessions gives it) and outlive this object.
  void addPublisher(const LoadedSession& session);

  // Whether the deliveries of `message` (its queue entries) roll back.
  bool rollsBack(const MessageRecord& message) const;

  // The session's resolved-through serial, or 0 when it has none.
  static std::uint64_t resolvedThrough(const LoadedSession& session) noexcept;

 private:
  std::unordered_map<std::string_view, const LoadedSession*> publishers_;
};

}  // namespace tern::persist
