// The MQTT 5.0 parts of MqttProtocol (mqtt_protocol.hpp): the DISCONNECTs the server sends, the
// properties a message is forwarded with and those the broker rewrites (Message Expiry Interval,
// Topic Alias, Subscription Identifier), the per-subscription options (No Local, Retain As
// Published) of the sessions that use them, Session Expiry and Will Delay. The packet handling
// that both versions share is in mqtt_protocol.cpp, mqtt_inbound.cpp and mqtt_outbound.cpp.
#include <algorithm>

#include "mqtt_protocol.hpp"
#include "tern/common/clock.hpp"
#include "tern/common/log.hpp"
#include "tern/protocol/mqtt_encoder.hpp"
#include "tern/routing/topic.hpp"

namespace tern::broker {

namespace mqtt = protocol::mqtt;

namespace {

// The entries of a block PropertyWriter finished (the encoders write the length themselves).
std::string_view entriesOf(const std::string& block) noexcept {
  if (block.empty()) return {};
  std::uint32_t length = 0;
  const int n = mqtt::decodeVariableByteInteger(block, length);
  return std::string_view(block).substr(static_cast<std::size_t>(n));
}

}  // namespace

void MqttProtocol::disconnect(Connection& c, mqtt::ReasonCode reason, std::string_view why) {
  if (levelOf(c) != mqtt::kProtocolLevel5) {
    abort(c, why);
    return;
  }
  TERN_LOG_DEBUG("disconnecting MQTT 5 client from {} ({}): {}", net::toString(c.peer),
                 mqtt::describe(reason), why);
  core_.scratch.clear();
  propertyScratch_.clear();
  if (!why.empty()) {
    mqtt::PropertyWriter w(propertyScratch_);
    w.string(mqtt::PropertyId::kReasonString, why.substr(0, 512));
    w.finish();
  }
  mqtt::appendDisconnect5(core_.scratch, reason, entriesOf(propertyScratch_));
  sendScratch(c);
  core_.io.closeAfterFlush(c);  // not graceful: the will is published
}

void MqttProtocol::serverClosing(Connection& c, ServerClose why) {
  if (levelOf(c) != mqtt::kProtocolLevel5) return;
  core_.scratch.clear();
  mqtt::appendDisconnect5(core_.scratch, why == ServerClose::kKeepAliveTimeout
                                             ? mqtt::ReasonCode::kKeepAliveTimeout
                                             : mqtt::ReasonCode::kServerShuttingDown);
  sendScratch(c);
}

std::uint8_t MqttProtocol::levelOf(const Connection& c) noexcept {
  return c.session != nullptr && c.session->mqtt != nullptr ? c.session->mqtt->level
                                                            : mqtt::kProtocolLevel311;
}

double MqttProtocol::expiryFor(std::uint32_t requested) const noexcept {
  const double cap = core_.config.sessionExpirySeconds;
  if (requested == 0xFFFFFFFF) return cap;
  const double asked = static_cast<double>(requested);
  return cap > 0 ? std::min(asked, cap) : asked;
}

std::size_t MqttProtocol::inflightLimit(const MqttState& m) const noexcept {
  return std::min<std::size_t>(core_.config.maxInflight, m.clientReceiveMaximum);
}

void MqttProtocol::appendForwarded(std::string& out, const mqtt::Properties& properties) {
  std::string_view rest = properties.block;
  while (!rest.empty()) {
    const auto id = static_cast<std::uint8_t>(rest[0]);
    mqtt::PropertyType type{};
    mqtt::propertyType(id, type);
    const std::size_t size = 1 + mqtt::detail::propertyValueSize(type, rest.substr(1));
    const auto pid = static_cast<mqtt::PropertyId>(id);
    if (pid != mqtt::PropertyId::kTopicAlias && pid != mqtt::PropertyId::kMessageExpiryInterval &&
        pid != mqtt::PropertyId::kWillDelayInterval) {
      out.append(rest.substr(0, size));
    }
    rest.remove_prefix(size);
  }
}

void MqttProtocol::publishProperties(const common::Message& message) {
  propertyScratch_.clear();
  if (const std::int64_t expiresAt = message.expiresAt(); expiresAt != 0) {
    // The interval left, rounded up (3.3.2.3.3: the remaining time is what is forwarded); at
    // least 1 for a message whose onward delivery started before it expired (a resend).
    const std::int64_t left = std::max<std::int64_t>(1, expiresAt - common::monotonicNanos());
    const auto seconds = static_cast<std::uint32_t>((left + 999'999'999) / 1'000'000'000);
    const char entry[5] = {static_cast<char>(mqtt::PropertyId::kMessageExpiryInterval),
                           static_cast<char>(seconds >> 24), static_cast<char>(seconds >> 16),
                           static_cast<char>(seconds >> 8), static_cast<char>(seconds)};
    propertyScratch_.append(entry, 5);
  }
  propertyScratch_.append(message.properties());
}

namespace {

// Whether the subscription `subscription` of a session is one a delivery made for a shared
// subscription (`shared`) or an ordinary one came through, and matches `topic`.
bool deliveredThrough(std::string_view subscription, bool shared, std::string_view topic) {
  const routing::SharedFilter parsed = routing::parseSharedFilter(subscription);
  if ((parsed.kind == routing::SharedFilter::Kind::kShared) != shared) return false;
  return routing::filterMatches(shared ? parsed.filter : subscription, topic);
}

}  // namespace

MqttProtocol::Matched MqttProtocol::match(const Session& s, const common::Message& message,
                                          bool shared) const {
  Matched matched;
  const MqttState& m = *s.mqtt;
  const bool own = message.origin() != 0 && message.origin() == s.id.key();
  for (const auto& [filter, qos] : s.filters) {
    if (!deliveredThrough(filter, shared, message.topic())) continue;
    const auto o = m.options.find(filter);
    const MqttState::Options options = o != m.options.end() ? o->second : MqttState::Options{};
    if (own && options.noLocal) continue;  // [MQTT-3.8.3-3]
    matched.any = true;
    matched.qos = std::max<unsigned>(matched.qos, qos);
    matched.retainAsPublished = matched.retainAsPublished || options.retainAsPublished;
  }
  return matched;
}

void MqttProtocol::applyTopicAlias(MqttState& m, mqtt::Publish& header) {
  std::uint16_t alias = 0;
  bool known = false;
  if (const auto it = m.outboundAliases.find(header.topic); it != m.outboundAliases.end()) {
    alias = it->second;
    known = true;
  } else if (m.outboundAliases.size() <
             std::min<std::size_t>(m.clientTopicAliasMaximum, kOutboundTopicAliases)) {
    alias = static_cast<std::uint16_t>(m.outboundAliases.size() + 1);
    m.outboundAliases.emplace(header.topic, alias);
  } else {
    return;  // every alias is taken: the topic goes in full
  }
  const char entry[3] = {static_cast<char>(mqtt::PropertyId::kTopicAlias),
                         static_cast<char>(alias >> 8), static_cast<char>(alias & 0xFF)};
  propertyScratch_.append(entry, 3);
  if (known) header.topic = {};  // the alias alone names it [MQTT-3.3.2-12]
}

void MqttProtocol::appendSubscriptionIds(const Session& s, const common::Message& message,
                                         bool shared) {
  // Every matching subscription's identifier, several when several match [MQTT-3.3.4-3].
  for (const auto& [filter, options] : s.mqtt->options) {
    if (options.subscriptionId == 0 || !deliveredThrough(filter, shared, message.topic())) {
      continue;
    }
    propertyScratch_.push_back(static_cast<char>(mqtt::PropertyId::kSubscriptionIdentifier));
    mqtt::appendVariableByteInteger(propertyScratch_, options.subscriptionId);
  }
}

bool MqttProtocol::fitsClient5(Session& s, const common::Message& message, bool shared) {
  const std::uint32_t limit = s.mqtt->clientMaxPacketSize;
  if (limit == 0) return true;
  publishProperties(message);
  if (!s.mqtt->options.empty()) appendSubscriptionIds(s, message, shared);
  const std::size_t size = mqtt::kMaxFixedHeaderSize + 2 + message.topic().size() + 2 +
                           mqtt::propertyBlockSize(propertyScratch_) + message.contents().size();
  if (size <= limit) return true;
  core_.countDrop(s, core_.stats.droppedTooLarge);  // [MQTT-3.1.2-25]
  return false;
}

void MqttProtocol::onDisconnect5(Connection& c, Session& s, const mqtt::Disconnect& d) {
  MqttState& m = *s.mqtt;
  if (d.properties.has(mqtt::PropertyId::kSessionExpiryInterval)) {
    const std::uint32_t interval = d.properties.sessionExpiryInterval;
    // A session that was to end with its connection cannot be kept now [MQTT-3.14.2-2].
    if (m.cleanSession && interval != 0) {
      disconnect(c, mqtt::ReasonCode::kProtocolError,
                 "Session Expiry Interval set by DISCONNECT after 0 at CONNECT");
      return;
    }
    m.cleanSession = interval == 0;
    m.expirySeconds = expiryFor(interval);
  }
  // 0x04 Disconnect with Will Message keeps the will; any other reason discards it [MQTT-3.14.4-3].
  if (d.reason != mqtt::ReasonCode::kDisconnectWithWill) {
    c.gracefulDisconnect = true;
    m.hasWill = false;
  }
  core_.io.closeAfterFlush(c);
}

void MqttProtocol::publishWill(MqttState& m) {
  m.hasWill = false;
  m.willAt = 0;
  core_.publish(m.level == mqtt::kProtocolLevel5
                    ? common::Message::make5(m.willTopic, m.willPayload, m.willRetain, m.willQos,
                                             m.willProperties, 0)
                    : common::Message::make(m.willTopic, m.willPayload, m.willRetain, m.willQos),
                Protocol::kMqtt);
}

void MqttProtocol::onSweep(std::int64_t now) {
  for (std::size_t k = 0; k < pendingWills_.size();) {
    const PendingWill due = pendingWills_[k];
    if (due.when > now) {
      ++k;
      continue;
    }
    pendingWills_[k] = pendingWills_.back();
    pendingWills_.pop_back();
    Session* s = core_.sessions.find(due.session);
    // Still the same pending will: not cancelled by a reconnect, not sent at the session's end.
    if (s == nullptr || s->mqtt == nullptr || s->mqtt->willAt != due.when) continue;
    if (core_.reading && s->mqtt->hasWill) {
      publishWill(*s->mqtt);
      if (persistent(*s)) storeSession(*s);  // --data-dir: sent, so not kept any more
    }
  }
}

void MqttProtocol::writeConnack5(const Session& s, bool sessionPresent, bool assigned,
                                 double grantedExpiry) {
  propertyScratch_.clear();
  {
    mqtt::PropertyWriter w(propertyScratch_);
    // What this server accepts and offers (3.2.2.3); absent properties mean their defaults.
    if (core_.config.maxAwaitingRelease < 65535) {
      w.twoByte(mqtt::PropertyId::kReceiveMaximum, static_cast<std::uint16_t>(std::max<std::size_t>(
                                                       1, core_.config.maxAwaitingRelease)));
    }
    w.fourByte(mqtt::PropertyId::kMaximumPacketSize,
               static_cast<std::uint32_t>(
                   std::min<std::size_t>(core_.config.maxPacketSize, mqtt::kMaxPacketSize)));
    // Shared Subscription Available is left out: its default, 1, is true.
    w.twoByte(mqtt::PropertyId::kTopicAliasMaximum, kInboundTopicAliases);
    if (assigned) w.string(mqtt::PropertyId::kAssignedClientIdentifier, s.clientId);
    if (grantedExpiry >= 0) {
      w.fourByte(mqtt::PropertyId::kSessionExpiryInterval,
                 static_cast<std::uint32_t>(grantedExpiry));
    }
    w.finish();
  }
  mqtt::appendConnack5(core_.scratch, sessionPresent, mqtt::ReasonCode::kSuccess,
                       entriesOf(propertyScratch_));
}

}  // namespace tern::broker
