// Persistent MQTT sessions in the data directory (--data-dir), for MqttProtocol
// (mqtt_protocol.hpp): what each change of a persistent session writes through the worker's
// StoreLink, and the restore of the sessions at start-up. docs/durability.md says what is
// promised; the records are persist/records.hpp's.
//
// What is written when (one request each, in this worker's order):
//   CONNECT, SUBSCRIBE, UNSUBSCRIBE, the end of a connection: the session record (s/), whole.
//   A QoS 1/2 message accepted for the session: its queue entry (q/, queued or sent with its
//     packet id) and, the first time this worker stores that message, its m/ record.
//   Sent from the queue: the entry again (sent, packet id). PUBREC: the entry as PUBREL pending
//     (the payload is the client's now: the message's reference is dropped). PUBACK, PUBCOMP,
//     expiry in the queue: the entry erased (and the m/ record with its last reference).
//   An inbound QoS 2 packet id, with its publish's serial: put at the PUBLISH (sync mode: once
//     every write the publish caused here and on other workers is durable, holdForInbound). At
//     the PUBREL the session's resolved-through serial (i/ packet id 0) moves up to just below
//     its oldest unresolved publish, and the id is erased, or kept as released while it is above.
//     The message of such a publish names it (client id, packet id, serial) in its m/ records: a
//     restart rolls back the deliveries of a publish neither resolved nor with its id on disk
//     (Broker::restoreSessions), since the client will publish it again.
//   The end of the session: its record, queue and inbound ids erased (range deletions).
// And the acknowledgements --durability sync holds (StoreLink::hold) until those writes are on
// disk: sendAck, onDurable.
#include <algorithm>
#include <chrono>

#include "mqtt_protocol.hpp"
#include "tern/common/clock.hpp"
#include "tern/common/log.hpp"
#include "tern/protocol/mqtt_encoder.hpp"

namespace tern::broker {

namespace mqtt = protocol::mqtt;

void MqttProtocol::sendAck(Connection& c, const HeldAck& ack, mqtt::ReasonCode reason) {
  core_.scratch.clear();
  const auto type = static_cast<mqtt::PacketType>(ack.kind);
  if (type == mqtt::PacketType::kPubrel) {
    mqtt::appendPubrel(core_.scratch, ack.packetId);
  } else if (c.session->mqtt->level == mqtt::kProtocolLevel5) {
    mqtt::appendAck5(core_.scratch, type, ack.packetId, reason);
  } else if (type == mqtt::PacketType::kPuback) {
    mqtt::appendPuback(core_.scratch, ack.packetId);
  } else {
    mqtt::appendPubrec(core_.scratch, ack.packetId);
  }
  sendScratch(c);
}

void MqttProtocol::onDurable(Connection& c, const HeldAck& ack) {
  if (c.closing || c.closed || c.session == nullptr || c.session->mqtt == nullptr) return;
  Session& s = *c.session;
  if (static_cast<mqtt::PacketType>(ack.kind) == mqtt::PacketType::kPublish) {
    // A QoS 2 PUBLISH held by sendInflight. It goes even when its state could not be stored (as a
    // PUBREL does). Gone from flight (the session moved or ended), there is nothing to send; a
    // session that resumed meanwhile re-sent it with DUP.
    MqttState& m = *s.mqtt;
    const auto it = std::find_if(m.inflight.begin(), m.inflight.end(), [&](const auto& e) {
      return e.packetId == ack.packetId && !e.released && e.message;
    });
    if (it != m.inflight.end() && !parkForPublisher(s, *it)) send(c, *it, false);
    return;
  }
  if (ack.ok || static_cast<mqtt::PacketType>(ack.kind) == mqtt::PacketType::kPubrel) {
    // A PUBREL goes even when its state could not be stored: the exchange goes on (the store
    // logged the error); only a crash before the next successful write could repeat it.
    sendAck(c, ack, static_cast<mqtt::ReasonCode>(ack.reason));
    return;
  }
  if (const std::uint64_t times = storageLog_.admit(common::monotonicNanos())) {
    TERN_LOG_WARN(
        "{} retained MQTT publish(es) not acknowledged (last: client {}): the data directory "
        "could not store them",
        times, s.clientId);
  }
  if (s.mqtt->level != mqtt::kProtocolLevel5) {
    // 3.1.1 has no failure acknowledgement: the connection closes without it (after the
    // acknowledgements before it), and the client publishes it again when it reconnects.
    core_.io.closeAfterFlush(c);
    return;
  }
  // 5.0: 0x80 Unspecified error. A failed PUBREC ends the QoS 2 exchange [MQTT-4.3.3]: the packet
  // id is free again, so a new publish with it is delivered.
  if (static_cast<mqtt::PacketType>(ack.kind) == mqtt::PacketType::kPubrec) {
    s.mqtt->awaitingRelease.erase(ack.packetId);
    dropUnresolved(*s.mqtt, ack.packetId);
  }
  sendAck(c, ack, mqtt::ReasonCode::kUnspecifiedError);
}

bool MqttProtocol::persistent(const Session& s) const noexcept {
  return core_.store.enabled() && s.mqtt != nullptr && !s.mqtt->cleanSession;
}

void MqttProtocol::storeSession(Session& s) {
  MqttState& m = *s.mqtt;
  persist::SessionRecord record;
  record.clientId = s.clientId;
  record.protocolLevel = m.level;
  record.sessionExpirySeconds =
      m.expirySeconds <= 0 ? 0xFFFFFFFFu
                           : static_cast<std::uint32_t>(std::min(m.expirySeconds, 4294967294.0));
  record.expiryDeadlineUnixMs = StoreLink::unixMillisOf(m.expiresAt);
  record.subscriptions.reserve(s.filters.size());
  for (const auto& [filter, qos] : s.filters) {
    persist::SubscriptionRecord sub;
    sub.filter = filter;
    sub.qos = qos;
    if (const auto o = m.options.find(filter); o != m.options.end()) {
      sub.noLocal = o->second.noLocal;
      sub.retainAsPublished = o->second.retainAsPublished;
      sub.subscriptionId = o->second.subscriptionId;
    }
    record.subscriptions.push_back(std::move(sub));
  }
  if (m.hasWill) {
    persist::WillRecord will;
    will.topic = m.willTopic;
    will.payload = m.willPayload;
    will.qos = m.willQos;
    will.retain = m.willRetain;
    will.properties = m.willProperties;
    will.delaySeconds = m.willDelaySeconds;
    record.will = std::move(will);
  }
  record.nextPacketId = m.nextPacketId;
  persist::WriteRequest request;
  request.put(record);
  if (!m.stored) {
    // A new session (or one persistent again): every publish before now is resolved for it, but
    // those it still awaits a PUBREL for (their ids are not on disk).
    m.resolvedThrough = resolvedThroughNow(m);
    request.put(persist::InboundQos2{s.clientId, 0, m.resolvedThrough, true});
  }
  core_.store.submit(std::move(request));
  m.stored = true;
}

void MqttProtocol::storeEntry(Session& s, std::uint64_t& seq, const common::Message* message,
                              std::uint8_t qos, persist::QueueState state, std::uint16_t packetId) {
  MqttState& m = *s.mqtt;
  persist::WriteRequest request;
  persist::QueueEntry entry;
  entry.clientId = s.clientId;
  const bool fresh = seq == 0;
  if (fresh) {
    if (message == nullptr) return;
    seq = m.nextSeq++;
    entry.messageId = core_.store.referenceMessage(*message, request);
  } else {
    entry.messageId = message != nullptr ? core_.store.messageIdOf(*message) : 0;
  }
  if (entry.messageId == 0) entry.messageId = kReleasedMessageId;
  entry.sequence = seq;
  entry.qos = qos;
  entry.state = state;
  entry.packetId = state == persist::QueueState::kQueued ? 0 : packetId;
  // A fresh sequence is a key never written: if the client acknowledges the message before the
  // batch is taken, the put and the erase cancel out (persist::WriteCoalescer).
  if (fresh) {
    request.putNew(entry);
  } else {
    request.put(entry);
  }
  core_.store.submit(std::move(request));
}

void MqttProtocol::sendInflight(Session& s, Connection& c, MqttState::Inflight& entry) {
  if (!persistent(s)) {
    send(c, entry, false);
    return;
  }
  if (entry.qos != 2 || !core_.store.holdsAcks()) {
    send(c, entry, false);
    storeEntry(s, entry.seq, entry.message.get(), entry.qos, persist::QueueState::kAwaitingAck,
               entry.packetId);
    return;
  }
  // --durability sync, QoS 2: the PUBLISH leaves once "sent, packet id N" is on disk. Sent before,
  // a crash would leave the entry queued (or missing) on disk, and the restarted broker would send
  // the message again under a new packet id: a second copy the client cannot recognize.
  number(*s.mqtt, entry);
  const std::uint64_t before = core_.store.lastTicket();
  storeEntry(s, entry.seq, entry.message.get(), entry.qos, persist::QueueState::kAwaitingAck,
             entry.packetId);
  HeldAck held;
  held.packetId = entry.packetId;
  held.kind = static_cast<std::uint8_t>(mqtt::PacketType::kPublish);
  if (core_.store.lastTicket() != before) {
    held.after = before;
    held.ticket = core_.store.lastTicket();
    core_.store.hold(c, held);
  } else if (StoreLink::holding(c)) {
    core_.store.hold(c, held);  // behind the connection's held packets, in order
  } else if (!parkForPublisher(s, entry)) {
    send(c, entry, false);
  }
}

void MqttProtocol::storeReleased(Session& s, MqttState::Inflight& entry) {
  if (entry.seq == 0) return;
  persist::WriteRequest request;
  persist::QueueEntry record;
  record.clientId = s.clientId;
  record.sequence = entry.seq;
  record.messageId = entry.message ? core_.store.messageIdOf(*entry.message) : 0;
  if (record.messageId == 0) record.messageId = kReleasedMessageId;
  record.qos = 2;
  record.state = persist::QueueState::kReleasePending;
  record.packetId = entry.packetId;
  request.put(record);
  // The client has the payload: the entry keeps only its packet id.
  if (entry.message) core_.store.releaseMessage(*entry.message, request);
  core_.store.submit(std::move(request));
}

void MqttProtocol::forgetEntry(Session& s, std::uint64_t& seq, const common::Message* message) {
  if (seq == 0) return;
  persist::WriteRequest request;
  request.eraseQueueEntry(s.clientId, seq);
  if (message != nullptr) core_.store.releaseMessage(*message, request);
  core_.store.submit(std::move(request));
  seq = 0;
}

std::uint64_t MqttProtocol::noteInbound(Session& s, std::uint16_t packetId) {
  MqttState& m = *s.mqtt;
  const std::uint64_t serial = core_.store.newSerial();
  m.unresolved.push_back({serial, packetId});
  // A kept released record of this id is overwritten by the new one: not to be erased later.
  std::erase_if(m.releasedKept, [&](const auto& e) { return e.packetId == packetId; });
  return serial;
}

void MqttProtocol::storeInbound(Session& s, std::uint16_t packetId, std::uint64_t serial) {
  persist::WriteRequest request;
  request.put(persist::InboundQos2{s.clientId, packetId, serial, false});
  core_.store.submit(std::move(request));
}

void MqttProtocol::dropUnresolved(MqttState& m, std::uint16_t packetId) {
  const auto it = std::find_if(m.unresolved.begin(), m.unresolved.end(),
                               [&](const auto& e) { return e.packetId == packetId; });
  if (it != m.unresolved.end()) m.unresolved.erase(it);
}

std::uint64_t MqttProtocol::resolvedThroughNow(const MqttState& m) {
  // Serials are handed out in order and `unresolved` keeps that order (restore sorts it).
  return m.unresolved.empty() ? core_.store.newSerial() : m.unresolved.front().serial - 1;
}

void MqttProtocol::storeInboundReleased(Session& s, std::uint16_t packetId) {
  MqttState& m = *s.mqtt;
  if (core_.store.followUpsPending()) {  // released early: its id is not written after this
    core_.store.cancelThen(persist::inboundKey(s.clientId, packetId));
  }
  std::uint64_t serial = 0;  // 0: loaded from a version 1 record, which names no serial
  if (const auto it = std::find_if(m.unresolved.begin(), m.unresolved.end(),
                                   [&](const auto& e) { return e.packetId == packetId; });
      it != m.unresolved.end()) {
    serial = it->serial;
    m.unresolved.erase(it);
  }
  persist::WriteRequest request;
  if (const std::uint64_t through = resolvedThroughNow(m); through > m.resolvedThrough) {
    m.resolvedThrough = through;
    request.put(persist::InboundQos2{s.clientId, 0, through, true});
  }
  if (serial > m.resolvedThrough) {
    // Released before an older publish: the record says so until the serial covers it.
    request.put(persist::InboundQos2{s.clientId, packetId, serial, true});
    m.releasedKept.push_back({serial, packetId});
  } else {
    request.eraseInbound(s.clientId, packetId);
  }
  std::erase_if(m.releasedKept, [&](const auto& e) {
    if (e.serial > m.resolvedThrough) return false;
    request.eraseInbound(s.clientId, e.packetId);
    return true;
  });
  core_.store.submit(std::move(request));
}

void MqttProtocol::holdForInbound(Connection& c, Session& s, HeldAck ack, std::uint64_t serial,
                                  const common::Message* named, bool remote) {
  // A restart that finds the packet id answers the client's resend of the publish without
  // delivering it again, so the id must not reach the disk before the queue entries of the
  // deliveries do (else a crash between them loses the message for those sessions): it is
  // written once they are durable (the ack's writes and fence), and the PUBREC waits for it too.
  // A crash before that leaves the deliveries without the id; the resend is then delivered once
  // more (docs/durability.md).
  // The deliveries of the publish to persistent sessions are sent at QoS 2 only once the id is
  // durable too (parkForPublisher): sent before, a crash in between would leave a message both
  // received and rolled back, and the resend would deliver it a second time.
  ack.resolves = named;
  ack.resolvesRemote = remote;
  persist::WriteRequest request;
  request.put(persist::InboundQos2{s.clientId, ack.packetId, serial, false});
  core_.store.holdThen(c, ack, std::move(request));
}

bool MqttProtocol::parkForPublisher(Session& s, MqttState::Inflight& entry) {
  if (entry.qos != 2 || entry.released || !entry.message || !entry.message->awaitsPublisher() ||
      !core_.store.holdsAcks() || !persistent(s)) {
    return false;
  }
  if (!entry.parked) {  // parked already when a reconnect (resume) comes by it again
    entry.parked = true;
    parked_.push_back({s.id, entry.packetId, entry.message.get()});
  }
  return true;
}

void MqttProtocol::publisherResolved(const common::Message& message, bool remote) {
  message.resolvePublisher();
  releaseParked(message);
  if (remote) core_.postResolved(message);
}

void MqttProtocol::releaseParked(const common::Message& message) {
  std::erase_if(parked_, [&](const Parked& p) {
    if (p.message != &message) return false;
    // Gone, offline (resume sends it) or no longer in flight: nothing to send here.
    Session* s = core_.sessions.find(p.session);
    if (s == nullptr || s->mqtt == nullptr || s->mqtt->connection == nullptr) return true;
    MqttState& m = *s->mqtt;
    const auto it = std::find_if(m.inflight.begin(), m.inflight.end(), [&](const auto& e) {
      return e.packetId == p.packetId && !e.released && e.message.get() == &message;
    });
    if (it != m.inflight.end()) {
      it->parked = false;
      send(*m.connection, *it, false);
    }
    return true;
  });
}

void MqttProtocol::forgetSession(Session& s) {
  MqttState& m = *s.mqtt;
  if (core_.store.followUpsPending()) {  // ids not written yet stay so
    core_.store.cancelThen(persist::inboundPrefix(s.clientId));
  }
  m.releasedKept.clear();  // erased with the session's inbound range
  m.resolvedThrough = 0;
  if (!m.stored) return;
  persist::WriteRequest request;
  request.eraseSession(s.clientId);
  for (MqttState::Inflight& entry : m.inflight) {
    if (entry.seq != 0 && entry.message) core_.store.releaseMessage(*entry.message, request);
    entry.seq = 0;
  }
  m.queue.forEach([&](MqttState::Queued& queued) {
    if (queued.seq != 0 && queued.message) core_.store.releaseMessage(*queued.message, request);
    queued.seq = 0;
  });
  core_.store.submit(std::move(request));
  m.stored = false;
}

bool MqttProtocol::restore(persist::LoadedSession&& loaded,
                           const std::unordered_map<std::uint64_t, RestoredMessage>& messages) {
  persist::SessionRecord& record = loaded.session;
  Session* s = createSession(record.clientId, false);
  if (s == nullptr) return false;
  MqttState& m = *s->mqtt;
  m.stored = true;
  m.level = record.protocolLevel;
  m.expirySeconds =
      record.sessionExpirySeconds == 0xFFFFFFFFu ? 0.0 : double(record.sessionExpirySeconds);
  if (core_.config.sessionExpirySeconds > 0 &&
      (m.expirySeconds == 0 || m.expirySeconds > core_.config.sessionExpirySeconds)) {
    m.expirySeconds = core_.config.sessionExpirySeconds;  // --session-expiry lowered since
  }
  m.nextPacketId = record.nextPacketId;
  for (const persist::SubscriptionRecord& sub : record.subscriptions) {
    if (!core_.subscribe(*s, sub.filter, sub.qos)) continue;
    s->filters.emplace(sub.filter, sub.qos);
    if (sub.noLocal || sub.retainAsPublished || sub.subscriptionId != 0) {
      m.options.emplace(sub.filter,
                        MqttState::Options{sub.noLocal, sub.retainAsPublished, sub.subscriptionId});
    }
  }
  if (record.will) {
    m.hasWill = true;
    m.willTopic = record.will->topic;
    m.willPayload = record.will->payload;
    m.willQos = record.will->qos;
    m.willRetain = record.will->retain;
    m.willProperties = record.will->properties;
    m.willDelaySeconds = record.will->delaySeconds;
  }
  const std::int64_t now = common::monotonicNanos();
  if (m.hasWill) {
    // A stored will is one whose connection ended without DISCONNECT: the broker stopped while
    // the client was connected (a crash ends that connection abnormally), or a delayed will
    // still pending. It is sent after its delay from now, unless the client comes back first.
    m.willAt = now + std::int64_t{m.willDelaySeconds} * 1'000'000'000 + 1;
    pendingWills_.push_back({m.willAt, s->id});
  }
  for (const persist::QueueEntry& e : loaded.queue) {
    m.nextSeq = std::max(m.nextSeq, e.sequence + 1);
    if (e.state == persist::QueueState::kReleasePending) {
      m.inflight.push_back({e.packetId, 2, false, true, common::MessageRef(), {}, e.sequence});
      m.outboundIds.insert(e.packetId);
      continue;
    }
    const auto it = messages.find(e.messageId);
    if (it == messages.end()) continue;  // counted by the broker at load
    core_.store.adoptMessage(*it->second.message, e.messageId, it->second.pinned);
    common::MessageRef message = common::MessageRef::share(it->second.message.get());
    if (e.state == persist::QueueState::kAwaitingAck) {
      m.inflight.push_back({e.packetId, e.qos, false, false, std::move(message), {}, e.sequence});
      m.outboundIds.insert(e.packetId);
    } else {
      const std::size_t footprint = message->footprint();
      m.queue.push_back({std::move(message), e.qos, false, {}, e.sequence});
      m.queuedBytes += footprint;
      WorkerStats::add(core_.stats.queuedMessages, std::int64_t{1});
      core_.memory.bytes += static_cast<std::int64_t>(footprint);
    }
  }
  for (const persist::InboundQos2& in : loaded.inbound) {
    if (in.packetId == 0) {
      m.resolvedThrough = in.serial;
    } else if (in.released) {
      m.releasedKept.push_back({in.serial, in.packetId});
    } else {
      m.awaitingRelease.insert(in.packetId);
      m.unresolved.push_back({in.serial, in.packetId});
    }
  }
  std::sort(m.unresolved.begin(), m.unresolved.end(),
            [](const auto& a, const auto& b) { return a.serial < b.serial; });
  // Offline until its client comes back: its expiry runs from its disconnection, or, for a
  // session whose client was connected when the broker stopped, from now.
  if (record.expiryDeadlineUnixMs != 0) {
    const common::DeadlineClocks clocks;
    const std::int64_t left = clocks.millisUntil(record.expiryDeadlineUnixMs);
    m.expiresAt = clocks.monotonicIn(std::max<std::int64_t>(left, 0));
    if (m.expiresAt == 0) m.expiresAt = 1;
  } else if (m.expirySeconds > 0) {
    m.expiresAt = now + static_cast<std::int64_t>(m.expirySeconds * 1e9);
  }
  if (m.expiresAt != 0) core_.sessions.scheduleExpiry(*s, m.expiresAt);
  return true;
}

}  // namespace tern::broker
