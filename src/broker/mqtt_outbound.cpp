// MqttProtocol's outbound messages (mqtt_protocol.hpp), for both versions: a matching publish
// delivered to a session (queued, or in flight with a packet id within the in-flight window),
// sent (with DUP when resent), the client's PUBACK / PUBREC / PUBCOMP that move it on, and the
// pump that refills the window from the queue. What a persistent session writes on the way is in
// mqtt_persistence.cpp; the inbound side in mqtt_inbound.cpp.
#include <algorithm>

#include "mqtt_protocol.hpp"
#include "tern/common/log.hpp"
#include "tern/protocol/mqtt_encoder.hpp"

namespace tern::broker {

namespace mqtt = protocol::mqtt;

void MqttProtocol::onAck(Session& s, const mqtt::Packet& packet) {
  MqttState& m = *s.mqtt;
  const mqtt::PacketType type = mqtt::typeOf(packet);
  std::uint16_t id = 0;
  if (type == mqtt::PacketType::kPuback) id = std::get<mqtt::Puback>(packet).packetId;
  if (type == mqtt::PacketType::kPubrec) id = std::get<mqtt::Pubrec>(packet).packetId;
  if (type == mqtt::PacketType::kPubcomp) id = std::get<mqtt::Pubcomp>(packet).packetId;
  const auto it = std::find_if(m.inflight.begin(), m.inflight.end(),
                               [&](const MqttState::Inflight& e) { return e.packetId == id; });
  if (type == mqtt::PacketType::kPubrec) {
    const std::uint64_t before = core_.store.lastTicket();
    if (it != m.inflight.end() && it->qos == 2 && !it->released) {
      it->released = true;
      if (it->seq != 0) storeReleased(s, *it);
      it->message.reset();  // the client has it; only the packet id remains in flight
    }
    if (m.connection == nullptr) return;
    // --durability sync: the PUBREL waits until "PUBREL pending" is on disk. Sent before, a crash
    // would leave the entry "sent" on disk, and the restarted broker would send the PUBLISH again
    // (DUP) to a client that may have completed it and forgotten its packet id: a second copy.
    HeldAck pubrel;
    pubrel.packetId = id;
    pubrel.kind = static_cast<std::uint8_t>(mqtt::PacketType::kPubrel);
    if (core_.store.holdsAcks() && core_.store.lastTicket() != before) {
      pubrel.after = before;
      pubrel.ticket = core_.store.lastTicket();
      core_.store.hold(*m.connection, pubrel);
    } else if (StoreLink::holding(*m.connection)) {
      core_.store.hold(*m.connection, pubrel);
    } else {
      sendAck(*m.connection, pubrel, mqtt::ReasonCode::kSuccess);
    }
    return;
  }
  if (it == m.inflight.end()) return;  // unknown or duplicate acknowledgement: ignored
  const bool matches = (type == mqtt::PacketType::kPuback && it->qos == 1) ||
                       (type == mqtt::PacketType::kPubcomp && it->qos == 2 && it->released);
  if (!matches) return;
  forgetEntry(s, it->seq, it->message.get());
  m.outboundIds.erase(it->packetId);
  m.inflight.erase(it);
  pump(s);
  // A retained replay may be waiting for this room in the window.
  if (m.connection != nullptr) core_.jobs.wake(*m.connection);
}

bool MqttProtocol::deliver(Session& s, const common::Message& message, unsigned grantedQos,
                           bool retained, SharedRoute route) {
  MqttState& m = *s.mqtt;
  auto qos = static_cast<std::uint8_t>(std::min<unsigned>(message.qos(), grantedQos));
  Connection* c = m.connection;
  const bool v5 = m.level == mqtt::kProtocolLevel5;
  const bool shared = route.shared();
  // A shared-subscription delivery goes to another member rather than wait for an offline one.
  if (c == nullptr && route.mayDecline()) return false;
  if (core_.expired(s, message) || (v5 && !fitsClient5(s, message, shared))) return true;
  if (v5 && !m.options.empty() && !retained) {
    // No Local and Retain As Published, over the session's subscriptions that match.
    const Matched matched = match(s, message, shared);
    if (!matched.any) return true;  // every match is No Local, and this session published it
    qos = static_cast<std::uint8_t>(std::min<unsigned>(message.qos(), matched.qos));
    retained = matched.retainAsPublished && message.retain();
  }
  if (qos == 0) {
    if (c == nullptr) return true;  // QoS 0 is not stored for offline clients
    std::size_t packetBytes = message.topic().size() + message.contents().size() + 8;
    if (v5) {
      publishProperties(message);
      if (!m.options.empty()) appendSubscriptionIds(s, message, shared);
      packetBytes += mqtt::propertyBlockSize(propertyScratch_);
    }
    const std::size_t queued = core_.io.unsent(*c);
    if (queued + packetBytes > core_.config.maxQueuedBytes) {
      if (route.mayDecline()) return false;
      core_.countDrop(s, core_.stats.droppedQueueFull);
      return true;
    }
    net::ByteBuffer& output = core_.io.output(*c);
    if (!core_.admitsMemory(queued, output.growthFor(packetBytes))) {
      if (route.mayDecline()) return false;
      core_.countDrop(s, core_.stats.droppedMemory);
      return true;
    }
    packetScratch_.clear();
    mqtt::Publish header;
    header.topic = message.topic();
    header.payload = message.contents();
    header.retain = retained;
    if (v5 && m.clientTopicAliasMaximum != 0) applyTopicAlias(m, header);
    if (v5 ? mqtt::appendPublishHeader5(packetScratch_, header, propertyScratch_)
           : mqtt::appendPublishHeader(packetScratch_, header)) {
      output.append(packetScratch_, message.contents());
      core_.io.send(*c);
      WorkerStats::add(core_.stats.delivered, std::uint64_t{1});
    }
    return true;
  }
  if (c != nullptr && m.queue.empty() && m.inflight.size() < inflightLimit(m)) {
    m.inflight.push_back({0, qos, retained, false, common::MessageRef::share(&message), route});
    sendInflight(s, *c, m.inflight.back());
    return true;
  }
  // A member whose window is full has no room now; another may.
  if (route.mayDecline()) return false;
  // Queued: bounded in count and in bytes (the message's whole footprint, shared or not), and
  // charged to this worker's memory.
  const std::size_t footprint = message.footprint();
  if (m.queue.size() >= core_.config.maxQueuedMessages ||
      m.queuedBytes + footprint > core_.config.maxQueuedBytes) {
    if (s.dropped == 0) {
      TERN_LOG_WARN("MQTT session {}: {} messages ({} bytes) queued: dropping until it catches up",
                    s.clientId, m.queue.size(), m.queuedBytes);
    }
    core_.countDrop(s, core_.stats.droppedQueueFull);
    return true;
  }
  if (!core_.memoryBudget.admits(core_.memory.bytes, footprint)) {
    core_.countDrop(s, core_.stats.droppedMemory);
    return true;
  }
  m.queue.push_back({common::MessageRef::share(&message), qos, retained, route});
  if (persistent(s)) {
    m.queue.forBack([&](MqttState::Queued& queued) {
      storeEntry(s, queued.seq, &message, qos, persist::QueueState::kQueued, 0);
    });
  }
  m.queuedBytes += footprint;
  WorkerStats::add(core_.stats.queuedMessages, std::int64_t{1});
  core_.memory.bytes += static_cast<std::int64_t>(footprint);
  return true;
}

void MqttProtocol::number(MqttState& m, MqttState::Inflight& entry) {
  if (entry.packetId != 0) return;
  // The next id not in flight: ids are handed out in turn, so a collision is rare (an old one
  // still unacknowledged after a wrap) and costs one O(1) probe.
  std::uint16_t id = m.nextPacketId;
  while (m.outboundIds.contains(id))
    id = id == 65535 ? 1 : id + 1;
  m.nextPacketId = id == 65535 ? 1 : id + 1;
  entry.packetId = id;
  m.outboundIds.insert(id);
}

void MqttProtocol::send(Connection& c, MqttState::Inflight& entry, bool dup) {
  MqttState& m = *c.session->mqtt;
  number(m, entry);
  packetScratch_.clear();
  if (entry.released) {
    mqtt::appendPubrel(packetScratch_, entry.packetId);
    core_.io.output(c).append(packetScratch_);
  } else {
    mqtt::Publish header;
    header.dup = dup;
    header.qos = entry.qos;
    header.retain = entry.retainFlag;
    header.topic = entry.message->topic();
    header.payload = entry.message->contents();
    header.packetId = entry.packetId;
    const bool v5 = m.level == mqtt::kProtocolLevel5;
    if (v5) {
      publishProperties(*entry.message);
      if (!m.options.empty()) {
        appendSubscriptionIds(*c.session, *entry.message, entry.route.shared());
      }
      if (m.clientTopicAliasMaximum != 0) applyTopicAlias(m, header);
    }
    if (!(v5 ? mqtt::appendPublishHeader5(packetScratch_, header, propertyScratch_)
             : mqtt::appendPublishHeader(packetScratch_, header))) {
      return;
    }
    core_.io.output(c).append(packetScratch_, entry.message->contents());
    if (!dup) WorkerStats::add(core_.stats.delivered, std::uint64_t{1});
  }
  core_.io.send(c);
}

void MqttProtocol::pump(Session& s) {
  MqttState& m = *s.mqtt;
  while (m.connection != nullptr && !m.queue.empty() && m.inflight.size() < inflightLimit(m)) {
    MqttState::Queued next = std::move(m.queue.front());
    m.queue.pop_front();
    WorkerStats::add(core_.stats.queuedMessages, std::int64_t{-1});
    m.queuedBytes -= next.message->footprint();
    core_.memory.bytes -= static_cast<std::int64_t>(next.message->footprint());
    // What expired while it waited is not delivered.
    if (core_.expired(s, *next.message) ||
        (m.level == mqtt::kProtocolLevel5 && !fitsClient5(s, *next.message, next.route.shared()))) {
      forgetEntry(s, next.seq, next.message.get());
      continue;
    }
    m.inflight.push_back(
        {0, next.qos, next.retainFlag, false, std::move(next.message), next.route, next.seq});
    sendInflight(s, *m.connection, m.inflight.back());
  }
}

void MqttProtocol::resume(Session& s) {
  // Re-send what was in flight when the previous connection ended, with DUP set (or PUBREL for
  // QoS 2 messages already received) [MQTT-4.4.0-1], then what was queued.
  // A QoS 2 PUBLISH never sent because it waits for its publisher (parkForPublisher) still waits.
  MqttState& m = *s.mqtt;
  for (MqttState::Inflight& entry : m.inflight) {
    if (!parkForPublisher(s, entry)) send(*m.connection, entry, true);
  }
  pump(s);
}

}  // namespace tern::broker
