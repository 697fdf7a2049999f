#include "mqtt_protocol.hpp"

#include <algorithm>

#include "tern/common/clock.hpp"
#include "tern/common/log.hpp"
#include "tern/common/utf8.hpp"
#include "tern/protocol/mqtt_encoder.hpp"
#include "tern/routing/topic.hpp"

namespace tern::broker {

namespace mqtt = protocol::mqtt;

namespace {

// MQTT 3.1.1 allows servers to accept ids longer than 23 characters; tern accepts any id that fits
// a string field, as most brokers do.
constexpr std::size_t kMaxClientIdBytes = 65535;

}  // namespace

MqttProtocol::MqttProtocol(WorkerCore& core)
    : core_(core),
      decoder_(protocol::mqtt::DecoderConfig{core.config.maxPacketSize,
                                             protocol::mqtt::Role::kServer}) {}

void MqttProtocol::sendScratch(Connection& c) {
  core_.io.output(c).append(core_.scratch);
  core_.io.send(c);
}

InputState MqttProtocol::onInput(Connection& c, std::string_view data, std::size_t /*searched*/,
                                 common::FunctionRef<void(std::size_t)> commit) {
  for (;;) {
    if (c.closing || c.closed || c.inputHeld()) return InputState::kStopped;
    if (data.empty()) return InputState::kMore;
    const mqtt::DecodeResult r = decoder_.decode(data, levelOf(c));
    if (r.status == mqtt::DecodeStatus::kNeedMore) return InputState::kMore;
    if (r.status != mqtt::DecodeStatus::kPacket) {
      if (r.status == mqtt::DecodeStatus::kUnacceptableProtocolLevel &&
          c.role == SocketRole::kUnbound) {
        core_.scratch.clear();
        mqtt::appendConnack(core_.scratch, false,
                            mqtt::ConnectReturnCode::kUnacceptableProtocolVersion);
        sendScratch(c);
        core_.io.closeAfterFlush(c);
        return InputState::kStopped;
      }
      disconnect(c, mqtt::disconnectReason(r.status),
                 r.detail.empty() ? mqtt::describe(r.status) : r.detail);
      return InputState::kStopped;
    }
    // The packet stays in place while it is handled: a hand-over carries it along unconsumed.
    const Outcome outcome = onPacket(c, r.packet);
    if (outcome == Outcome::kHandedOver) return InputState::kGone;
    if (outcome == Outcome::kHeld) return InputState::kStopped;
    commit(r.consumed);
    data.remove_prefix(r.consumed);
    if (core_.io.unsent(c) > core_.config.maxQueuedBytes && !c.closing) core_.io.pauseInput(c);
  }
}

void MqttProtocol::abort(Connection& c, std::string_view why) {
  TERN_LOG_DEBUG("closing MQTT connection from {}: {}", net::toString(c.peer), why);
  core_.io.closeNow(c);  // a protocol violation: no further packet is sent, the will is published
}

MqttProtocol::Outcome MqttProtocol::onPacket(Connection& c, const mqtt::Packet& packet) {
  const mqtt::PacketType type = mqtt::typeOf(packet);
  if (c.role == SocketRole::kUnbound) {
    if (type != mqtt::PacketType::kConnect) {
      abort(c, "first packet is not CONNECT");
      return Outcome::kDone;
    }
    return onConnect(c, std::get<mqtt::Connect>(packet));
  }
  Session* s = c.session;
  if (s == nullptr) return Outcome::kDone;  // session ended; the connection is closing
  switch (type) {
    case mqtt::PacketType::kConnect:
      abort(c, "second CONNECT");
      break;
    case mqtt::PacketType::kPublish:
      onPublish(c, *s, std::get<mqtt::Publish>(packet));
      break;
    case mqtt::PacketType::kPuback:
    case mqtt::PacketType::kPubrec:
    case mqtt::PacketType::kPubcomp:
      onAck(*s, packet);
      break;
    case mqtt::PacketType::kPubrel: {
      const std::uint16_t id = std::get<mqtt::Pubrel>(packet).packetId;
      const bool known = s->mqtt->awaitingRelease.contains(id);
      s->mqtt->awaitingRelease.erase(id);
      if (known && persistent(*s)) storeInbound(*s, id, false);
      core_.scratch.clear();
      // Also for an unknown id: the client may retry (5.0 says it is unknown).
      if (s->mqtt->level == mqtt::kProtocolLevel5) {
        mqtt::appendAck5(
            core_.scratch, mqtt::PacketType::kPubcomp, id,
            known ? mqtt::ReasonCode::kSuccess : mqtt::ReasonCode::kPacketIdentifierNotFound);
      } else {
        mqtt::appendPubcomp(core_.scratch, id);
      }
      sendScratch(c);
      break;
    }
    case mqtt::PacketType::kSubscribe:
      onSubscribe(c, *s, std::get<mqtt::Subscribe>(packet));
      break;
    case mqtt::PacketType::kUnsubscribe:
      onUnsubscribe(c, *s, std::get<mqtt::Unsubscribe>(packet));
      break;
    case mqtt::PacketType::kPingreq:
      core_.scratch.clear();
      mqtt::appendPingresp(core_.scratch);
      sendScratch(c);
      break;
    case mqtt::PacketType::kDisconnect:
      if (s->mqtt->level == mqtt::kProtocolLevel5) {
        onDisconnect5(c, *s, std::get<mqtt::Disconnect>(packet));
        break;
      }
      c.gracefulDisconnect = true;  // the will is discarded [MQTT-3.14.4-3]
      s->mqtt->hasWill = false;
      core_.io.closeAfterFlush(c);
      break;
    case mqtt::PacketType::kAuth:
      // Only after a CONNECT with an Authentication Method, which is refused (4.12).
      disconnect(c, mqtt::ReasonCode::kProtocolError, "AUTH without an authentication method");
      break;
    default:
      abort(c, "packet type not allowed from a client");  // the decoder refuses these already
      break;
  }
  return Outcome::kDone;
}

Session* MqttProtocol::createSession(std::string clientId, bool cleanSession) {
  Session* s = core_.sessions.create(std::move(clientId), Protocol::kMqtt);
  if (s == nullptr) return nullptr;
  s->mqtt = std::make_unique<MqttState>();
  s->mqtt->cleanSession = cleanSession;
  return s;
}

MqttProtocol::Outcome MqttProtocol::onConnect(Connection& c, const mqtt::Connect& connect) {
  const bool v5 = connect.protocolLevel == mqtt::kProtocolLevel5;
  const auto refuse = [&](mqtt::ConnectReturnCode code, mqtt::ReasonCode reason) {
    core_.scratch.clear();
    if (v5) {
      mqtt::appendConnack5(core_.scratch, false, reason, {});
    } else {
      mqtt::appendConnack(core_.scratch, false, code);
    }
    sendScratch(c);
    core_.io.closeAfterFlush(c);
    return Outcome::kDone;
  };
  if (v5 && connect.properties.has(mqtt::PropertyId::kAuthenticationMethod)) {
    // No enhanced authentication method is supported (4.12).
    return refuse(mqtt::ConnectReturnCode::kNotAuthorized,
                  mqtt::ReasonCode::kBadAuthenticationMethod);
  }
  if (!mqtt::clientIdAcceptable(connect, kMaxClientIdBytes)) {
    return refuse(mqtt::ConnectReturnCode::kIdentifierRejected,
                  mqtt::ReasonCode::kClientIdentifierNotValid);
  }
  if (connect.willFlag && WorkerCore::isReservedTopic(connect.willTopic)) {
    WorkerStats::add(core_.stats.refusedSysTopic, std::uint64_t{1});
    return refuse(mqtt::ConnectReturnCode::kNotAuthorized,  // $SYS is the broker's
                  mqtt::ReasonCode::kNotAuthorized);
  }
  // --password-file: checked off the loop, then this CONNECT is handled again with the verdict
  // (before the hand-over, which carries an accepted verdict along).
  const WorkerCore::Credentials who =
      core_.credentials(c, connect.usernameFlag, connect.username, connect.password);
  switch (core_.authenticate(c, who)) {
    case WorkerCore::AuthResult::kPending:
      return Outcome::kHeld;
    case WorkerCore::AuthResult::kRefused:
      return refuse(mqtt::ConnectReturnCode::kNotAuthorized,
                    connect.usernameFlag && !who.byCertificate
                        ? mqtt::ReasonCode::kBadUserNameOrPassword
                        : mqtt::ReasonCode::kNotAuthorized);
    case WorkerCore::AuthResult::kAccepted:
      break;
  }
  // --acl-file: a will goes only where its owner may publish (else the CONNECT is refused, as
  // Mosquitto does). The rules are compiled again below for the session.
  if (connect.willFlag) {
    const std::unique_ptr<const auth::Acl> acl = core_.aclFor(who.user, connect.clientId);
    if (acl != nullptr && !acl->mayWrite(connect.willTopic)) {
      WorkerStats::add(core_.stats.refusedAcl, std::uint64_t{1});
      return refuse(mqtt::ConnectReturnCode::kNotAuthorized, mqtt::ReasonCode::kNotAuthorized);
    }
  }
  if (!connect.clientId.empty()) {
    const unsigned home = core_.sessions.homeWorker(connect.clientId);
    if (home != core_.index) {
      core_.io.handOver(c, home);
      return Outcome::kHandedOver;
    }
  }
  const bool assigned = connect.clientId.empty();
  std::string clientId =
      assigned ? core_.sessions.newClientId(Protocol::kMqtt) : std::string(connect.clientId);

  // 5.0 Session Expiry Interval: 0 (or absent) ends the session with the connection; otherwise the
  // interval, at most --session-expiry when that is set (the CONNACK then says what applies).
  bool cleanSession = connect.cleanSession;
  double expirySeconds = core_.config.sessionExpirySeconds;
  bool expiryChanged = false;
  if (v5) {
    const std::uint32_t requested = connect.properties.sessionExpiryInterval;
    cleanSession = requested == 0;
    expirySeconds = expiryFor(requested);
    const double asked = requested == 0xFFFFFFFF ? 0.0 : static_cast<double>(requested);
    expiryChanged = requested != 0 && expirySeconds != asked;
  }

  // Takeover: the server disconnects the existing client [MQTT-3.1.4-2] (5.0: with DISCONNECT
  // 0x8E). Its connection ends without the client's DISCONNECT, so its will is published; a
  // session that ends with its connection ends with it.
  if (Session* existing = core_.sessions.findMqtt(clientId)) {
    if (Connection* old = existing->mqtt->connection) {
      TERN_LOG_INFO("MQTT client {} taken over by a new connection", clientId);
      if (existing->mqtt->level == mqtt::kProtocolLevel5) {
        core_.scratch.clear();
        mqtt::appendDisconnect5(core_.scratch, mqtt::ReasonCode::kSessionTakenOver);
        sendScratch(*old);
        core_.connectionGone(*old);  // detached now, as closeNow() would
        core_.io.closeAfterFlush(*old);
      } else {
        core_.io.closeNow(*old);
      }
    }
  }
  Session* s = nullptr;
  bool sessionPresent = false;
  if (Session* existing = core_.sessions.findMqtt(clientId)) {
    if (connect.cleanSession) {
      core_.endSession(*existing);  // discard the stored session [MQTT-3.1.2-6, 5.0: Clean Start]
    } else {
      s = existing;
      sessionPresent = true;
    }
  }
  if (s == nullptr) s = createSession(std::move(clientId), cleanSession);
  if (s == nullptr) {
    return refuse(mqtt::ConnectReturnCode::kServerUnavailable, mqtt::ReasonCode::kServerBusy);
  }
  core_.setAcl(*s, who.user);
  MqttState& m = *s->mqtt;
  m.expiresAt = 0;  // online again
  m.cleanSession = cleanSession;
  m.expirySeconds = expirySeconds;
  m.level = v5 ? mqtt::kProtocolLevel5 : connect.protocolLevel;
  m.clientReceiveMaximum = v5 ? connect.properties.receiveMaximum : std::uint16_t{65535};
  m.clientMaxPacketSize = v5 ? connect.properties.maximumPacketSize : 0;
  m.clientTopicAliasMaximum = v5 ? connect.properties.topicAliasMaximum : std::uint16_t{0};
  m.inboundAliases.clear();
  m.outboundAliases.clear();
  m.connection = &c;
  m.hasWill = connect.willFlag;
  m.willTopic.assign(connect.willTopic);
  m.willPayload.assign(connect.willPayload);
  m.willQos = connect.willQos;
  m.willRetain = connect.willRetain;
  m.willProperties.clear();
  if (v5 && connect.willFlag) appendForwarded(m.willProperties, connect.willProperties);
  m.willDelaySeconds = v5 && connect.willFlag ? connect.willProperties.willDelayInterval : 0;
  m.willAt = 0;  // a pending will of the previous connection is not sent [MQTT-3.1.3-9]
  c.role = SocketRole::kMqtt;
  c.session = s;
  // --data-dir: a persistent session is (re)written with this connection's state; one that is
  // no longer persistent (5.0: Session Expiry Interval 0 now) leaves the store.
  if (persistent(*s)) {
    storeSession(*s);
  } else if (m.stored) {
    forgetSession(*s);
  }
  if (connect.keepAlive != 0) {
    core_.io.startKeepAlive(c, std::int64_t{connect.keepAlive} * 1'500'000'000);  // 1.5x
  }
  core_.scratch.clear();
  if (v5) {
    writeConnack5(*s, sessionPresent, assigned, expiryChanged ? expirySeconds : -1.0);
  } else {
    mqtt::appendConnack(core_.scratch, sessionPresent, mqtt::ConnectReturnCode::kAccepted);
  }
  sendScratch(c);
  if (sessionPresent) resume(*s);
  return Outcome::kDone;
}

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
        inboundLater = core_.store.holdsAcks();
        if (!inboundLater) storeInbound(s, publish.packetId, true);
      }
    }
  }
  std::uint64_t ticket = 0;  // the write of a retained change (--data-dir)
  if (deliver) {
    if (v5) {
      propertyScratch_.clear();
      appendForwarded(propertyScratch_, publish.properties);
      const std::int64_t expiresAt =
          publish.properties.has(mqtt::PropertyId::kMessageExpiryInterval)
              ? common::monotonicNanos() +
                    std::int64_t{publish.properties.messageExpiryInterval} * 1'000'000'000
              : 0;
      core_.publish(common::Message::make5(topic, publish.payload, publish.retain, publish.qos,
                                           propertyScratch_, expiresAt, s.id.key()),
                    Protocol::kMqtt, &ticket);
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
      holdForInbound(c, s, ack);
    } else {
      core_.store.hold(c, ack);
    }
  } else if (StoreLink::holding(c)) {
    core_.store.hold(c, ack);
  } else {
    sendAck(c, ack, reason);
  }
}

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
  MqttState& m = *s.mqtt;
  for (MqttState::Inflight& entry : m.inflight)
    send(*m.connection, entry, true);
  pump(s);
}

void MqttProtocol::connectionGone(Session& s, Connection& c) {
  MqttState& m = *s.mqtt;
  if (m.connection != &c) return;
  m.connection = nullptr;
  if (m.hasWill && !c.gracefulDisconnect && core_.reading) {
    if (m.willDelaySeconds > 0 && !m.cleanSession) {
      // 5.0: sent after the delay, or when the session ends, whichever comes first.
      m.willAt = common::monotonicNanos() + std::int64_t{m.willDelaySeconds} * 1'000'000'000;
      pendingWills_.push_back({m.willAt, s.id});
    } else {
      publishWill(m);
    }
  }
  if (m.willAt == 0) m.hasWill = false;
  if (m.cleanSession) {
    core_.endSession(s);
  } else {
    if (m.expirySeconds > 0) {
      m.expiresAt = common::monotonicNanos() + static_cast<std::int64_t>(m.expirySeconds * 1e9);
      core_.sessions.scheduleExpiry(s, m.expiresAt);
    }
    if (persistent(s)) storeSession(s);  // offline now: its expiry deadline
  }
}

bool MqttProtocol::takeForJob(Connection& c, Job& job, const common::Message& m) {
  Session& s = *c.session;
  if (!core_.mayRead(s, m.topic())) return true;  // --acl-file: not this session's to read
  if (core_.io.unsent(c) > core_.config.maxQueuedBytes / 2) {
    job.waitingFor = Job::Wait::kOutput;
    core_.io.notifyWhenDrained(c);
    return false;
  }
  // QoS 1/2: at the pace of the client's acknowledgements, unless its input is held (then the
  // acknowledgements cannot arrive, and the session's queue bound decides).
  const bool acknowledged = std::min<unsigned>(m.qos(), job.qos) > 0;
  if (acknowledged && !c.heldByJobs && s.mqtt->queue.size() >= inflightLimit(*s.mqtt)) {
    job.waitingFor = Job::Wait::kAcknowledgement;
    return false;
  }
  deliver(s, m, job.qos, true, {});
  return true;
}

void MqttProtocol::sessionEnding(Session& s, Connection* (&sockets)[3]) {
  MqttState& m = *s.mqtt;
  // A delayed will is due when the session ends, if that comes first [MQTT-3.1.3-9].
  if (m.willAt != 0 && m.hasWill && core_.reading) publishWill(m);
  sockets[0] = std::exchange(m.connection, nullptr);
  forgetSession(s);  // --data-dir: its records go with it
  WorkerStats::add(core_.stats.queuedMessages, -static_cast<std::int64_t>(m.queue.size()));
  // What the session got for a shared subscription and never acknowledged goes to another member
  // of its group (4.8.2): the session left its groups already. A QoS 2 message whose PUBREC came
  // is the client's.
  if (core_.reading) {
    for (const MqttState::Inflight& entry : m.inflight) {
      if (entry.route.shared() && !entry.released) {
        core_.redistribute(*entry.message, entry.route, s.id);
      }
    }
    while (!m.queue.empty()) {
      const MqttState::Queued& next = m.queue.front();
      if (next.route.shared()) core_.redistribute(*next.message, next.route, s.id);
      m.queue.pop_front();
    }
  }
  m.inflight.clear();
  m.outboundIds.clear();
  m.queue.clear();
  core_.memory.bytes -= static_cast<std::int64_t>(std::exchange(m.queuedBytes, 0));
}

}  // namespace tern::broker
