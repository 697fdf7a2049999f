// MqttProtocol (mqtt_protocol.hpp), both versions: bytes in and packets dispatched, CONNECT and
// the session it opens or resumes, PUBREL, and the end of connections and sessions. The client's
// PUBLISH is in mqtt_inbound.cpp, deliveries to sessions in mqtt_outbound.cpp, SUBSCRIBE in
// mqtt_subscriptions.cpp, what persistent sessions write in mqtt_persistence.cpp, 5.0's own
// parts in mqtt5_features.cpp.
#include "mqtt_protocol.hpp"

#include <algorithm>

#include "tern/common/clock.hpp"
#include "tern/common/log.hpp"
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
      if (known && persistent(*s)) {
        storeInboundReleased(*s, id);
      } else if (known) {
        dropUnresolved(*s->mqtt, id);
      }
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
