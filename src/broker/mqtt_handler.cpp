// MQTT 3.1.1 (and 3.1) sessions: the Worker methods that act on decoded packets and deliver to MQTT
// clients. Worker thread only. The codec is protocol/mqtt_*; this file holds the broker's side of
// the standard: session state, QoS 1/2 flows, wills, keep-alive, persistent sessions.
#include <algorithm>

#include "tern/common/clock.hpp"
#include "tern/common/log.hpp"
#include "tern/protocol/mqtt_encoder.hpp"
#include "tern/routing/topic.hpp"
#include "worker.hpp"

namespace tern::broker {

namespace mqtt = protocol::mqtt;

namespace {

// MQTT 3.1.1 allows servers to accept ids longer than 23 characters; tern accepts any id that fits
// a string field, as most brokers do.
constexpr std::size_t kMaxClientIdBytes = 65535;

}  // namespace

Worker::InputState Worker::handlePackets(Connection& c, std::string_view data,
                                         common::FunctionRef<void(std::size_t)> commit) {
  for (;;) {
    if (c.closing || c.closed || c.inputHeld()) return InputState::kStopped;
    if (data.empty()) return InputState::kMore;
    const mqtt::DecodeResult r = mqttDecoder_.decode(data);
    if (r.status == mqtt::DecodeStatus::kNeedMore) return InputState::kMore;
    if (r.status != mqtt::DecodeStatus::kPacket) {
      if (r.status == mqtt::DecodeStatus::kUnacceptableProtocolLevel &&
          c.role == SocketRole::kUnbound) {
        scratch_.clear();
        mqtt::appendConnack(scratch_, false, mqtt::ConnectReturnCode::kUnacceptableProtocolVersion);
        c.out.append(scratch_);
        closeAfterFlush(c);
        return InputState::kStopped;
      }
      mqttAbort(c, mqtt::describe(r.status));
      return InputState::kStopped;
    }
    // The packet stays in place while it is handled: a hand-over carries it along unconsumed.
    if (onMqttPacket(c, r.packet) == Outcome::kHandedOver) return InputState::kGone;
    commit(r.consumed);
    data.remove_prefix(r.consumed);
    if (c.out.size() > config_.maxQueuedBytes && !c.closing) pauseReading(c);
  }
}

void Worker::mqttAbort(Connection& c, std::string_view why) {
  TERN_LOG_DEBUG("closing MQTT fd {}: {}", c.fd, why);
  closeNow(c);  // a protocol violation: no further packet is sent, the will is published
}

Worker::Outcome Worker::onMqttPacket(Connection& c, const mqtt::Packet& packet) {
  const mqtt::PacketType type = mqtt::typeOf(packet);
  if (c.role == SocketRole::kUnbound) {
    if (type != mqtt::PacketType::kConnect) {
      mqttAbort(c, "first packet is not CONNECT");
      return Outcome::kDone;
    }
    return onMqttConnect(c, std::get<mqtt::Connect>(packet));
  }
  Session* s = c.session;
  if (s == nullptr) return Outcome::kDone;  // session ended; the connection is closing
  switch (type) {
    case mqtt::PacketType::kConnect:
      mqttAbort(c, "second CONNECT");
      break;
    case mqtt::PacketType::kPublish:
      onMqttPublish(c, *s, std::get<mqtt::Publish>(packet));
      break;
    case mqtt::PacketType::kPuback:
    case mqtt::PacketType::kPubrec:
    case mqtt::PacketType::kPubcomp:
      onMqttAck(*s, packet);
      break;
    case mqtt::PacketType::kPubrel: {
      const std::uint16_t id = std::get<mqtt::Pubrel>(packet).packetId;
      s->mqtt->awaitingRelease.erase(id);
      scratch_.clear();
      mqtt::appendPubcomp(scratch_, id);  // also for an unknown id: the client may retry
      c.out.append(scratch_);
      markDirty(c);
      break;
    }
    case mqtt::PacketType::kSubscribe:
      onMqttSubscribe(c, *s, std::get<mqtt::Subscribe>(packet));
      break;
    case mqtt::PacketType::kUnsubscribe:
      onMqttUnsubscribe(c, *s, std::get<mqtt::Unsubscribe>(packet));
      break;
    case mqtt::PacketType::kPingreq:
      scratch_.clear();
      mqtt::appendPingresp(scratch_);
      c.out.append(scratch_);
      markDirty(c);
      break;
    case mqtt::PacketType::kDisconnect:
      c.gracefulDisconnect = true;  // the will is discarded [MQTT-3.14.4-3]
      s->mqtt->hasWill = false;
      closeAfterFlush(c);
      break;
    default:
      mqttAbort(c, "packet type not allowed from a client");  // the decoder refuses these already
      break;
  }
  return Outcome::kDone;
}

Session* Worker::createMqttSession(std::string clientId, bool cleanSession) {
  Session* s = createSession(std::move(clientId), Protocol::kMqtt);
  if (s == nullptr) return nullptr;
  s->mqtt = std::make_unique<MqttState>();
  s->mqtt->cleanSession = cleanSession;
  return s;
}

Worker::Outcome Worker::onMqttConnect(Connection& c, const mqtt::Connect& connect) {
  const auto refuse = [&](mqtt::ConnectReturnCode code) {
    scratch_.clear();
    mqtt::appendConnack(scratch_, false, code);
    c.out.append(scratch_);
    closeAfterFlush(c);
    return Outcome::kDone;
  };
  if (!mqtt::clientIdAcceptable(connect, kMaxClientIdBytes)) {
    return refuse(mqtt::ConnectReturnCode::kIdentifierRejected);
  }
  if (connect.willFlag && isReservedTopic(connect.willTopic)) {
    WorkerStats::add(stats_.refusedSysTopic, std::uint64_t{1});
    return refuse(mqtt::ConnectReturnCode::kNotAuthorized);  // $SYS is the broker's
  }
  if (!connect.clientId.empty()) {
    const unsigned home = homeWorker(connect.clientId);
    if (home != index_) {
      handOver(c, home);
      return Outcome::kHandedOver;
    }
  }
  std::string clientId;
  if (connect.clientId.empty()) {
    do {
      clientId = newClientId();
    } while (byMqttClientId_.count(clientId) != 0);
  } else {
    clientId.assign(connect.clientId);
  }

  // Takeover: the server disconnects the existing client [MQTT-3.1.4-2]. Its connection ends
  // without DISCONNECT, so its will is published; a clean session ends with it.
  if (auto it = byMqttClientId_.find(clientId); it != byMqttClientId_.end()) {
    if (Connection* old = it->second->mqtt->connection) {
      TERN_LOG_INFO("MQTT client {} taken over by a new connection", clientId);
      closeNow(*old);
    }
  }
  Session* s = nullptr;
  bool sessionPresent = false;
  if (auto it = byMqttClientId_.find(clientId); it != byMqttClientId_.end()) {
    if (connect.cleanSession) {
      endSession(*it->second);  // discard the stored session [MQTT-3.1.2-6]
    } else {
      s = it->second;
      sessionPresent = true;
    }
  }
  if (s == nullptr) s = createMqttSession(std::move(clientId), connect.cleanSession);
  if (s == nullptr) return refuse(mqtt::ConnectReturnCode::kServerUnavailable);
  MqttState& m = *s->mqtt;
  m.expiresAt = 0;  // online again
  m.cleanSession = connect.cleanSession;
  m.connection = &c;
  m.hasWill = connect.willFlag;
  m.willTopic.assign(connect.willTopic);
  m.willPayload.assign(connect.willPayload);
  m.willQos = connect.willQos;
  m.willRetain = connect.willRetain;
  c.role = SocketRole::kMqtt;
  c.session = s;
  if (connect.keepAlive != 0) {
    c.keepAliveNanos = std::int64_t{connect.keepAlive} * 1'500'000'000;  // 1.5x [MQTT-3.1.2-24]
    c.lastActivity = common::monotonicNanos();
    deadlines_.push({c.lastActivity + c.keepAliveNanos, c.slot, c.generation});
  }
  scratch_.clear();
  mqtt::appendConnack(scratch_, sessionPresent, mqtt::ConnectReturnCode::kAccepted);
  c.out.append(scratch_);
  markDirty(c);
  if (sessionPresent) mqttResume(*s);
  return Outcome::kDone;
}

void Worker::onMqttPublish(Connection& c, Session& s, const mqtt::Publish& publish) {
  bool deliver = !isReservedTopic(publish.topic);
  if (!deliver) {
    // Acknowledged as the protocol requires, but $SYS is the broker's: dropped and counted.
    WorkerStats::add(stats_.refusedSysTopic, std::uint64_t{1});
  } else if (publish.qos == 2) {
    // Exactly once: only the first copy of a packet id is delivered until its PUBREL.
    PacketIdSet& waiting = s.mqtt->awaitingRelease;
    if (waiting.contains(publish.packetId)) {
      deliver = false;
    } else if (waiting.size() >= config_.maxAwaitingRelease) {
      WorkerStats::add(stats_.closedAwaitingRelease, std::uint64_t{1});
      if (const std::uint64_t times = limitLog_.admit(common::monotonicNanos())) {
        TERN_LOG_WARN(
            "closed {} MQTT connection(s) (last: client {}): more than {} QoS 2 "
            "messages awaiting PUBREL (--max-awaiting-rel)",
            times, s.clientId, config_.maxAwaitingRelease);
      }
      mqttAbort(c, "too many QoS 2 messages awaiting release");
      return;
    } else {
      waiting.insert(publish.packetId);
    }
  }
  if (deliver) {
    this->publish(
        common::Message::make(publish.topic, publish.payload, publish.retain, publish.qos),
        Protocol::kMqtt);
  }
  if (publish.qos == 0) return;
  scratch_.clear();
  if (publish.qos == 1) {
    mqtt::appendPuback(scratch_, publish.packetId);
  } else {
    mqtt::appendPubrec(scratch_, publish.packetId);
  }
  c.out.append(scratch_);
  markDirty(c);
}

void Worker::onMqttSubscribe(Connection& c, Session& s, const mqtt::Subscribe& subscribe) {
  // Repeated filters in one SUBSCRIBE are one subscription: each entry gets its return code, the
  // last entry's QoS is the one kept (as if they came one after the other), and the retained
  // messages are sent once.
  subackCodes_.clear();
  distinctFilters_.clear();
  filterIndex_.clear();
  std::size_t added = 0;  // distinct filters the session does not hold yet
  for (const mqtt::Subscription entry : subscribe.subscriptions) {
    if (routing::validateTopicFilter(entry.filter) != routing::TopicStatus::kOk) {
      subackCodes_.push_back(mqtt::kSubackFailure);
      continue;
    }
    const auto [it, fresh] = filterIndex_.emplace(entry.filter, distinctFilters_.size());
    if (fresh) {
      const bool held = s.filters.find(std::string(entry.filter)) != s.filters.end();
      if (!held && s.filters.size() + added >= config_.maxSubscriptions) {
        WorkerStats::add(stats_.refusedSubscriptions, std::uint64_t{1});
        it->second = kRefusedFilter;
      } else {
        added += held ? 0 : 1;
        distinctFilters_.push_back({entry.filter, entry.qos});
      }
    } else if (it->second != kRefusedFilter) {
      distinctFilters_[it->second].qos = entry.qos;
    }
    subackCodes_.push_back(it->second == kRefusedFilter ? mqtt::kSubackFailure : entry.qos);
  }
  for (const mqtt::Subscription entry : distinctFilters_) {
    context_.trie.subscribe(entry.filter, s.id.withQos(entry.qos));
    s.filters[std::string(entry.filter)] = entry.qos;
  }
  scratch_.clear();
  mqtt::appendSuback(scratch_, subscribe.packetId, subackCodes_);
  c.out.append(scratch_);
  markDirty(c);
  // Retained messages follow the SUBACK, with the retain flag set [MQTT-3.3.1-6, 3.3.1-8], in
  // slices (job.hpp); a repeated subscription re-sends them [MQTT-3.8.4-3].
  for (const mqtt::Subscription entry : distinctFilters_) {
    startJob(c, Job(Job::Kind::kMqttReplay, entry.filter, routing::RetainedCursor::Scope::kFilter,
                    entry.qos));
  }
}

void Worker::onMqttUnsubscribe(Connection& c, Session& s, const mqtt::Unsubscribe& request) {
  for (const std::string_view filter : request.filters) {
    const auto it = s.filters.find(std::string(filter));
    if (it == s.filters.end()) continue;
    context_.trie.unsubscribe(filter, s.id);
    s.filters.erase(it);
  }
  scratch_.clear();
  mqtt::appendUnsuback(scratch_, request.packetId);
  c.out.append(scratch_);
  markDirty(c);
}

void Worker::onMqttAck(Session& s, const mqtt::Packet& packet) {
  MqttState& m = *s.mqtt;
  const mqtt::PacketType type = mqtt::typeOf(packet);
  std::uint16_t id = 0;
  if (type == mqtt::PacketType::kPuback) id = std::get<mqtt::Puback>(packet).packetId;
  if (type == mqtt::PacketType::kPubrec) id = std::get<mqtt::Pubrec>(packet).packetId;
  if (type == mqtt::PacketType::kPubcomp) id = std::get<mqtt::Pubcomp>(packet).packetId;
  const auto it = std::find_if(m.inflight.begin(), m.inflight.end(),
                               [&](const MqttState::Inflight& e) { return e.packetId == id; });
  if (type == mqtt::PacketType::kPubrec) {
    if (it != m.inflight.end() && it->qos == 2) {
      it->released = true;
      it->message.reset();  // the client has it; only the packet id remains in flight
    }
    if (m.connection != nullptr) {
      scratch_.clear();
      mqtt::appendPubrel(scratch_, id);
      m.connection->out.append(scratch_);
      markDirty(*m.connection);
    }
    return;
  }
  if (it == m.inflight.end()) return;  // unknown or duplicate acknowledgement: ignored
  const bool matches = (type == mqtt::PacketType::kPuback && it->qos == 1) ||
                       (type == mqtt::PacketType::kPubcomp && it->qos == 2 && it->released);
  if (!matches) return;
  m.inflight.erase(it);
  mqttPump(s);
  // A retained replay may be waiting for this room in the window.
  if (m.connection != nullptr && m.connection->jobs) jobsRunnable_ = true;
}

void Worker::mqttDeliver(Session& s, const common::Message& message, unsigned grantedQos,
                         bool retained) {
  MqttState& m = *s.mqtt;
  const auto qos = static_cast<std::uint8_t>(std::min<unsigned>(message.qos(), grantedQos));
  Connection* c = m.connection;
  if (qos == 0) {
    if (c == nullptr) return;  // QoS 0 is not stored for offline clients
    const std::size_t packetBytes = message.topic().size() + message.contents().size() + 8;
    if (c->out.size() + packetBytes > config_.maxQueuedBytes) {
      countDrop(s, stats_.droppedQueueFull);
      return;
    }
    if (overMemory_ && c->out.size() > kOverMemoryAllowance) {
      countDrop(s, stats_.droppedMemory);
      return;
    }
    packetScratch_.clear();
    mqtt::Publish header;
    header.topic = message.topic();
    header.payload = message.contents();
    header.retain = retained;
    if (mqtt::appendPublishHeader(packetScratch_, header)) {
      c->out.append(packetScratch_, message.contents());
      markDirty(*c);
      WorkerStats::add(stats_.delivered, std::uint64_t{1});
    }
    return;
  }
  if (c != nullptr && m.queue.empty() && m.inflight.size() < config_.maxInflight) {
    m.inflight.push_back({0, qos, retained, false, common::MessageRef::share(&message)});
    mqttSend(*c, m.inflight.back(), false);
    return;
  }
  // Queued: bounded in count and in bytes (the message's whole footprint, shared or not), and
  // charged to this worker's memory.
  const std::size_t footprint = message.footprint();
  if (m.queue.size() >= config_.maxQueuedMessages ||
      m.queuedBytes + footprint > config_.maxQueuedBytes) {
    if (s.dropped == 0) {
      TERN_LOG_WARN("MQTT session {}: {} messages ({} bytes) queued: dropping until it catches up",
                    s.clientId, m.queue.size(), m.queuedBytes);
    }
    countDrop(s, stats_.droppedQueueFull);
    return;
  }
  if (overMemory_) {
    countDrop(s, stats_.droppedMemory);
    return;
  }
  m.queue.push_back({common::MessageRef::share(&message), qos, retained});
  m.queuedBytes += footprint;
  memory_.bytes += static_cast<std::int64_t>(footprint);
}

void Worker::mqttSend(Connection& c, MqttState::Inflight& entry, bool dup) {
  MqttState& m = *c.session->mqtt;
  if (entry.packetId == 0) {
    // The next id not in flight (ids in flight are at most max-inflight of 65535).
    for (;;) {
      const std::uint16_t id = m.nextPacketId;
      m.nextPacketId = m.nextPacketId == 65535 ? 1 : m.nextPacketId + 1;
      const bool used = std::any_of(m.inflight.begin(), m.inflight.end(),
                                    [&](const MqttState::Inflight& e) { return e.packetId == id; });
      if (!used) {
        entry.packetId = id;
        break;
      }
    }
  }
  packetScratch_.clear();
  if (entry.released) {
    mqtt::appendPubrel(packetScratch_, entry.packetId);
    c.out.append(packetScratch_);
  } else {
    mqtt::Publish header;
    header.dup = dup;
    header.qos = entry.qos;
    header.retain = entry.retainFlag;
    header.topic = entry.message->topic();
    header.payload = entry.message->contents();
    header.packetId = entry.packetId;
    if (!mqtt::appendPublishHeader(packetScratch_, header)) return;
    c.out.append(packetScratch_, entry.message->contents());
    if (!dup) WorkerStats::add(stats_.delivered, std::uint64_t{1});
  }
  markDirty(c);
}

void Worker::mqttPump(Session& s) {
  MqttState& m = *s.mqtt;
  while (m.connection != nullptr && !m.queue.empty() && m.inflight.size() < config_.maxInflight) {
    MqttState::Queued next = std::move(m.queue.front());
    m.queue.pop_front();
    m.queuedBytes -= next.message->footprint();
    memory_.bytes -= static_cast<std::int64_t>(next.message->footprint());
    m.inflight.push_back({0, next.qos, next.retainFlag, false, std::move(next.message)});
    mqttSend(*m.connection, m.inflight.back(), false);
  }
}

void Worker::mqttResume(Session& s) {
  // Re-send what was in flight when the previous connection ended, with DUP set (or PUBREL for
  // QoS 2 messages already received) [MQTT-4.4.0-1], then what was queued.
  MqttState& m = *s.mqtt;
  for (MqttState::Inflight& entry : m.inflight)
    mqttSend(*m.connection, entry, true);
  mqttPump(s);
}

void Worker::mqttConnectionLost(Session& s, Connection& c) {
  MqttState& m = *s.mqtt;
  if (m.connection != &c) return;
  m.connection = nullptr;
  if (m.hasWill && !c.gracefulDisconnect && reading_) {
    m.hasWill = false;
    publish(common::Message::make(m.willTopic, m.willPayload, m.willRetain, m.willQos),
            Protocol::kMqtt);
  }
  m.hasWill = false;
  if (m.cleanSession) {
    endSession(s);
  } else if (config_.sessionExpirySeconds > 0) {
    m.expiresAt =
        common::monotonicNanos() + static_cast<std::int64_t>(config_.sessionExpirySeconds * 1e9);
    sessionExpiries_.push({m.expiresAt, s.id.slot(), s.id.generation()});
  }
}

bool Worker::isReservedTopic(std::string_view topic) noexcept {
  return topic == "$SYS" || topic.substr(0, 5) == "$SYS/";
}

bool Worker::publish(common::MessageRef message, Protocol from) {
  WorkerStats::add(stats_.received, std::uint64_t{1});
  if (message->retain()) {
    if (message->contents().empty()) {
      context_.retained.erase(message->topic());
      // The line protocol's delete delivers nothing; MQTT delivers the empty message
      // [MQTT-3.3.1-10/11].
      if (from == Protocol::kLine) return true;
    } else if (context_.retained.set(common::MessageRef::share(message.get())) ==
               routing::RetainedStore::SetResult::kRefused) {
      WorkerStats::add(stats_.refusedRetained, std::uint64_t{1});
      if (const std::uint64_t times = limitLog_.admit(common::monotonicNanos())) {
        TERN_LOG_WARN(
            "retained store full ({} messages, {} bytes; --max-retained-messages, "
            "--max-retained-bytes): {} retained publish(es) not stored",
            context_.retained.size(), context_.retained.bytes(), times);
      }
      // The line protocol answers with an error and delivers nothing; MQTT 3.1.1 has no way to
      // say it, so the message is delivered live without being retained.
      if (from == Protocol::kLine) return false;
      route(*message);
      return false;
    }
  }
  route(*message);
  return true;
}

}  // namespace tern::broker
