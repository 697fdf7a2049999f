// MqttProtocol's inbound PUBLISH (mqtt_protocol.hpp), for both versions: Topic Alias and
// payload format checks (5.0), $SYS and --acl-file refusals, the QoS 2 packet ids that make it
// exactly once until their PUBREL, the hand-off to routing, and its PUBACK or PUBREC, held in
// --durability sync until what the publish wrote is durable (the QoS 2 packet id of a persistent
// session last, holdForInbound in mqtt_persistence.cpp). The connection and session handling is in
// mqtt_protocol.cpp; the outbound side in mqtt_outbound.cpp.
#include "mqtt_protocol.hpp"
#include "tern/common/clock.hpp"
#include "tern/common/log.hpp"
#include "tern/common/utf8.hpp"

namespace tern::broker {

namespace mqtt = protocol::mqtt;

void MqttProtocol::onPublish(Connection& c, Session& s, const mqtt::Publish& publish) {
  const bool v5 = s.mqtt->level == mqtt::kProtocolLevel5;
  mqtt::ReasonCode reason = mqtt::ReasonCode::kSuccess;
  std::string_view topic = publish.topic;
  if (v5) {
    if (publish.properties.has(mqtt::PropertyId::kTopicAlias)) {
      // At most the Topic Alias Maximum this server announced [MQTT-3.3.2-9, -10]; an alias
      // names the topic it was last sent with [MQTT-3.3.2-12].
      const std::uint16_t alias = publish.properties.topicAlias;
      if (alias > kInboundTopicAliases) {
        disconnect(c, mqtt::ReasonCode::kTopicAliasInvalid, "topic alias above the maximum");
        return;
      }
      std::vector<std::string>& aliases = s.mqtt->inboundAliases;
      if (aliases.size() < alias) aliases.resize(alias);
      if (!topic.empty()) {
        aliases[alias - 1].assign(topic);
      } else if (aliases[alias - 1].empty()) {
        disconnect(c, mqtt::ReasonCode::kProtocolError, "topic alias not set on this connection");
        return;
      }
      topic = aliases[alias - 1];
    }
    if (publish.properties.payloadFormatIndicator == 1 && !common::isValidUtf8(publish.payload)) {
      if (publish.qos == 0) {
        disconnect(c, mqtt::ReasonCode::kPayloadFormatInvalid, "payload is not UTF-8");
        return;
      }
      reason = mqtt::ReasonCode::kPayloadFormatInvalid;  // acknowledged, not delivered
    }
  }
  // --durability sync: the writes this publish causes here (tickets after `before`) and on other
  // workers (this turn's fence) come before its acknowledgement.
  const std::uint64_t before = core_.store.lastTicket();
  const std::uint64_t remoteBefore = core_.fanout.remoteDeliveries();
  bool deliver = reason == mqtt::ReasonCode::kSuccess && !WorkerCore::isReservedTopic(topic);
  bool inboundLater = false;  // sync mode: the QoS 2 packet id is written after the deliveries
  std::uint64_t serial = 0;   // a QoS 2 publish of a persistent session: its message's name
  if (reason == mqtt::ReasonCode::kSuccess && !deliver) {
    // Acknowledged as the protocol requires, but $SYS is the broker's: dropped and counted.
    WorkerStats::add(core_.stats.refusedSysTopic, std::uint64_t{1});
    reason = mqtt::ReasonCode::kNotAuthorized;
  } else if (deliver && !core_.mayWrite(s, topic)) {
    // --acl-file: 3.1.1 acknowledges and drops (as Mosquitto does); 5.0 says 0x87.
    WorkerStats::add(core_.stats.refusedAcl, std::uint64_t{1});
    deliver = false;
    reason = mqtt::ReasonCode::kNotAuthorized;
  } else if (deliver && publish.qos == 2) {
    // Exactly once: only the first copy of a packet id is delivered until its PUBREL.
    PacketIdSet& waiting = s.mqtt->awaitingRelease;
    if (waiting.contains(publish.packetId)) {
      deliver = false;
    } else if (waiting.size() >= core_.config.maxAwaitingRelease) {
      WorkerStats::add(core_.stats.closedAwaitingRelease, std::uint64_t{1});
      if (const std::uint64_t times = core_.limitLog.admit(common::monotonicNanos())) {
        TERN_LOG_WARN(
            "closed {} MQTT connection(s) (last: client {}): more than {} QoS 2 "
            "messages awaiting PUBREL (--max-awaiting-rel)",
            times, s.clientId, core_.config.maxAwaitingRelease);
      }
      // 5.0: more than the Receive Maximum this server announced [MQTT-3.3.4-7].
      disconnect(c, mqtt::ReasonCode::kReceiveMaximumExceeded,
                 "too many QoS 2 messages awaiting release");
      return;
    } else {
      waiting.insert(publish.packetId);
      if (persistent(s)) {
        serial = noteInbound(s, publish.packetId);
        inboundLater = core_.store.holdsAcks();
        if (!inboundLater) storeInbound(s, publish.packetId, serial);
      }
    }
  }
  std::uint64_t ticket = 0;  // the write of a retained change (--data-dir)
  // Sync mode, a named publish: its message, referenced for its PUBREC (holdForInbound).
  const common::Message* named = nullptr;
  if (deliver) {
    const common::PublishName name{s.clientId, publish.packetId, serial};
    if (v5) {
      propertyScratch_.clear();
      appendForwarded(propertyScratch_, publish.properties);
      const std::int64_t expiresAt =
          publish.properties.has(mqtt::PropertyId::kMessageExpiryInterval)
              ? common::monotonicNanos() +
                    std::int64_t{publish.properties.messageExpiryInterval} * 1'000'000'000
              : 0;
      common::MessageRef message =
          common::Message::make5(topic, publish.payload, publish.retain, publish.qos,
                                 propertyScratch_, expiresAt, s.id.key(), name);
      if (inboundLater) (named = message.get())->addRefs(1);
      core_.publish(std::move(message), Protocol::kMqtt, &ticket);
    } else if (serial != 0) {
      common::MessageRef message = common::Message::make5(
          publish.topic, publish.payload, publish.retain, publish.qos, {}, 0, 0, name);
      if (inboundLater) (named = message.get())->addRefs(1);
      core_.publish(std::move(message), Protocol::kMqtt, &ticket);
    } else {
      core_.publish(
          common::Message::make(publish.topic, publish.payload, publish.retain, publish.qos),
          Protocol::kMqtt, &ticket);
    }
  }
  // The store's queue is full: this connection is not read until it drains (TCP holds the
  // client back); the acknowledgement below is still sent or held as usual.
  if (core_.store.backlogged()) core_.store.stall(c);
  if (publish.qos == 0) return;
  HeldAck ack;
  ack.packetId = publish.packetId;
  ack.kind = static_cast<std::uint8_t>(publish.qos == 1 ? mqtt::PacketType::kPuback
                                                        : mqtt::PacketType::kPubrec);
  ack.reason = static_cast<std::uint8_t>(reason);
  if (ticket == StoreLink::kUnstorable) {  // MQTT topics fit the store: defensive only
    if (named != nullptr) {
      publisherResolved(*named, core_.fanout.remoteDeliveries() != remoteBefore);
      named->release();
    }
    ack.ok = false;
    onDurable(c, ack);
    return;
  }
  // --durability sync: a publish is acknowledged once what it wrote (retained, queue entries of
  // persistent sessions here and on other workers, its QoS 2 packet id) is on disk, and the
  // acknowledgements after it wait behind it (they keep the order of the publishes).
  const bool wrote = core_.store.lastTicket() != before;
  const bool left = core_.fanout.remoteDeliveries() != remoteBefore;
  if (core_.store.holdsAcks() && (wrote || left || inboundLater)) {
    if (wrote) {
      ack.after = before;
      ack.ticket = core_.store.lastTicket();
    }
    if (left) ack.fence = core_.store.turnFence();
    if (inboundLater) {
      holdForInbound(c, s, ack, serial, named, left);
    } else {
      core_.store.hold(c, ack);
    }
  } else if (StoreLink::holding(c)) {
    core_.store.hold(c, ack);
  } else {
    sendAck(c, ack, reason);
  }
}

}  // namespace tern::broker
