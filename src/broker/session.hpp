// Session: one client session: a line-protocol session (up to two request sockets and one push
// socket) or an MQTT session (one connection, which a persistent session outlives).
//
// Ownership: owned by the worker that is its home (the worker its client id hashes to); all of its
// sockets are owned by that worker too, so a session is only ever touched by one thread. Other
// workers refer to it only by SubscriberId (worker, slot, generation) inside delivery batches; a
// stale id (session ended, slot reused) is detected by the generation and the delivery dropped.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "connection.hpp"
#include "lazy_queue.hpp"
#include "packet_id_set.hpp"
#include "shared_route.hpp"
#include "tern/auth/acl_file.hpp"
#include "tern/common/message.hpp"
#include "tern/common/string_map.hpp"
#include "tern/net/byte_buffer.hpp"
#include "tern/routing/subscriber_id.hpp"

namespace tern::broker {

// The MQTT part of a session: QoS 1/2 state, the will, the offline queue.
struct MqttState {
  Connection* connection = nullptr;  // null while a persistent session is offline
  // Ends with its connection: 3.1.1 clean session 1, 5.0 Session Expiry Interval 0.
  bool cleanSession = true;
  // Protocol level of the current (or last) connection: 3, 4 or 5 (which layout its packets use).
  std::uint8_t level = 4;
  // Seconds an offline persistent session lives (5.0: the interval in effect; 3.1.1:
  // --session-expiry); 0 never expires.
  double expirySeconds = 0;
  // 5.0: the subscriptions (of Session::filters) with options other than their defaults: No
  // Local, Retain As Published, a Subscription Identifier. Empty for most sessions, whose
  // deliveries then cost nothing more; otherwise a delivery looks up which of them match.
  struct Options {
    bool noLocal = false;
    bool retainAsPublished = false;
    std::uint32_t subscriptionId = 0;  // 0: none
  };
  common::StringMap<Options> options;
  // 5.0 Topic Aliases of the current connection (reset by each CONNECT): the topics the client
  // named by alias (index alias - 1, at most MqttProtocol::kInboundTopicAliases), and the aliases
  // this server gave topics towards the client (at most the client's Topic Alias Maximum and
  // MqttProtocol::kOutboundTopicAliases).
  std::vector<std::string> inboundAliases;
  common::StringMap<std::uint16_t> outboundAliases;
  std::uint16_t clientTopicAliasMaximum = 0;
  // 5.0: what the client said it accepts (Receive Maximum, Maximum Packet Size; 0: no limit).
  std::uint16_t clientReceiveMaximum = 65535;
  std::uint32_t clientMaxPacketSize = 0;

  bool hasWill = false;
  std::string willTopic;
  std::string willPayload;
  std::uint8_t willQos = 0;
  bool willRetain = false;
  std::string willProperties;  // 5.0: the will's properties it is published with (forwarded)
  // 5.0 Will Delay Interval (seconds), and when the will of a session whose connection ended is
  // due (monotonic ns; 0: none pending). A new connection of the session cancels it.
  std::uint32_t willDelaySeconds = 0;
  std::int64_t willAt = 0;

  // Outbound QoS 1/2 messages sent and not yet acknowledged, in the order they were sent.
  struct Inflight {
    std::uint16_t packetId;
    std::uint8_t qos;
    bool retainFlag;
    bool released;  // QoS 2: PUBREC received, PUBREL sent, waiting for PUBCOMP
    common::MessageRef message;
    SharedRoute route;  // the shared subscription it came through, if any (handed on at the end)
    std::uint64_t seq = 0;  // --data-dir: its queue entry (q/<client id>\0<seq>); 0: not stored
    // Never sent yet: it waits for its message's publisher (MqttProtocol::parkForPublisher).
    // Read only while the message still awaits it.
    bool parked = false;
  };
  // A vector, not a deque: at most --max-inflight entries, and an empty vector allocates nothing
  // (libstdc++'s deque allocates ~600 bytes when constructed, per session).
  std::vector<Inflight> inflight;
  // The packet ids of `inflight` (those numbered), to find a free one in O(1).
  PacketIdSet outboundIds;
  // Outbound QoS 1/2 messages waiting for a free in-flight slot or for the client to come back.
  struct Queued {
    common::MessageRef message;
    std::uint8_t qos;
    bool retainFlag;
    SharedRoute route;
    std::uint64_t seq = 0;  // --data-dir: its queue entry; 0: not stored
  };
  LazyQueue<Queued> queue;
  // Footprint of the messages in `queue` (each counted in full, also when other sessions share
  // it): bounded by --max-queued-bytes like a socket's output, and charged to the worker's memory.
  std::size_t queuedBytes = 0;
  // Inbound QoS 2 packet ids received and not yet released (exactly-once delivery), at most
  // --max-awaiting-rel.
  PacketIdSet awaitingRelease;
  // --data-dir, a persistent session: what lets a restart tell a QoS 2 publish whose packet id
  // reached the disk from one whose id did not (its deliveries are then rolled back, and the
  // client's resend delivers it; persist::InboundQos2, docs/durability-design.md). `unresolved`:
  // the serials of the publishes of `awaitingRelease`, oldest first; `releasedKept`: ids released
  // while an older publish was unresolved, kept on disk as released; `resolvedThrough`: the
  // session's resolved-through serial as last written (0: none written).
  struct InboundSerial {
    std::uint64_t serial;
    std::uint16_t packetId;
  };
  std::vector<InboundSerial> unresolved;
  std::vector<InboundSerial> releasedKept;
  std::uint64_t resolvedThrough = 0;
  std::uint16_t nextPacketId = 1;
  // --data-dir: whether the session's record is in the store (StoreLink), and the sequence of
  // its next queue entry there.
  bool stored = false;
  std::uint64_t nextSeq = 1;
  // Monotonic ns when this persistent session, offline, expires (--session-expiry); 0 while
  // online or when it never expires.
  std::int64_t expiresAt = 0;
};

struct Session {
  Protocol protocol = Protocol::kLine;
  routing::SubscriberId id;
  std::string clientId;
  // Filters in trie form (line protocol: '*' rewritten to '+', so "a/*" and "a/+" are one
  // subscription) and the QoS granted for each (always 0 in the line protocol).
  common::StringMap<std::uint8_t> filters;
  std::uint64_t dropped = 0;  // deliveries dropped because a queue was full
  // What --acl-file lets this session do (compiled for its user and client id at CONNECT);
  // null without an ACL file: everything.
  std::unique_ptr<const auth::Acl> acl;
  std::optional<std::string> aclUser;  // whose rules they are (nullopt: anonymous)
  std::uint64_t aclGeneration = 0;     // BrokerContext::aclGeneration they were compiled from
  bool ended = false;

  // Line protocol.
  std::string token;
  // The client certificate name its CONNECT socket presented (empty: none); an ATTACHing socket
  // must present the same, so that a stolen token alone does not take over a certified session.
  std::string identity;
  Connection* request[2] = {nullptr, nullptr};
  Connection* push = nullptr;
  // Pushes queued while no push socket is attached (bounded like a socket's output).
  net::ByteBuffer pending;

  // MQTT (null for line sessions).
  std::unique_ptr<MqttState> mqtt;

  int socketCount() const noexcept {
    return (request[0] != nullptr) + (request[1] != nullptr) + (push != nullptr);
  }
};

}  // namespace tern::broker
