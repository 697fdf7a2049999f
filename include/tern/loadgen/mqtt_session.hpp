// MqttSession: a simulated client speaking MQTT 3.1.1 over one TCP connection (docs/mqtt.md).
//
//   CONNECT (clean session, keep-alive config.keepAliveS, client id config.clientId) -> CONNACK 0
//     (config.persistent: clean session 0 / Clean Start 0, and in 5.0 the Session Expiry Interval
//     config.sessionExpiryS, so that the broker keeps the session, durably with --data-dir)
//   SUBSCRIBE (every filter at config.qos, at most kFiltersPerSubscribe per packet) -> SUBACK
//   PUBLISH at config.qos, pipelined:
//     QoS 0: nothing comes back;
//     QoS 1: PUBACK retires the packet id, reported with onPubAck();
//     QoS 2: PUBREC -> loadgen sends PUBREL -> PUBCOMP retires the id, reported with onPubAck().
//   Deliveries (PUBLISH from the broker) are reported with onMessage() when they arrive and
//   acknowledged as their QoS requires: PUBACK for QoS 1, PUBREC for QoS 2 (and PUBCOMP for the
//   broker's PUBREL).
// Publishes and subscriptions share the connection, and packet ids come from a PacketIdWindow:
// any number of publishes may be in flight, and an id is never reused while in flight. When all
// 65535 are, canPublish() is false and the host holds the client's schedule.
//
// A SUBACK refusing a filter (0x80) or a CONNACK refusing the connection fails the session
// (kHandshake), since every later count would be wrong. An acknowledgement for a packet id not in
// flight, or a packet a broker should not send now, is reported with onBrokerError() and the
// session goes on; a packet the decoder rejects fails it (kProtocol). tick() sends PINGREQ after
// half the keep-alive without output, so idle subscribers stay connected.
//
// Threading and failure rules: see session.hpp.
#pragma once

#include <cstddef>
#include <memory>

#include "tern/loadgen/session.hpp"

namespace tern::loadgen {

// Filters per SUBSCRIBE packet; more filters are sent in several packets.
inline constexpr std::size_t kFiltersPerSubscribe = 128;

std::unique_ptr<Session> makeMqttSession(SessionHost& host, const SessionConfig& config);

}  // namespace tern::loadgen
