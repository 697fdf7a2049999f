// SUBSCRIBE and UNSUBSCRIBE of MqttProtocol (mqtt_protocol.hpp), both versions: validation,
// shared subscriptions and --acl-file checks per filter, the limit on subscriptions, repeated
// filters in one packet, 5.0 subscription options, and the retained replay that follows. The
// rest of the packet handling is in mqtt_protocol.cpp, mqtt_inbound.cpp and mqtt_outbound.cpp
// (5.0's own parts in mqtt5_features.cpp).
#include "mqtt_protocol.hpp"
#include "tern/protocol/mqtt_encoder.hpp"
#include "tern/routing/shared_groups.hpp"
#include "tern/routing/topic.hpp"

namespace tern::broker {

namespace mqtt = protocol::mqtt;

void MqttProtocol::onSubscribe(Connection& c, Session& s, const mqtt::Subscribe& subscribe) {
  const bool v5 = s.mqtt->level == mqtt::kProtocolLevel5;
  // 5.0: one Subscription Identifier for every filter of the SUBSCRIBE (3.8.2.1.2).
  const std::uint32_t subscriptionId =
      subscribe.properties.has(mqtt::PropertyId::kSubscriptionIdentifier)
          ? subscribe.properties.subscriptionIdentifier
          : 0;
  // Repeated filters in one SUBSCRIBE are one subscription: each entry gets its return code, the
  // last entry's QoS is the one kept (as if they came one after the other), and the retained
  // messages are sent once.
  subackCodes_.clear();
  distinctFilters_.clear();
  filterIndex_.clear();
  std::size_t added = 0;  // distinct filters the session does not hold yet
  for (const mqtt::Subscription entry : subscribe.subscriptions) {
    if (routing::validateTopicFilter(entry.filter) != routing::TopicStatus::kOk) {
      subackCodes_.push_back(v5 ? static_cast<std::uint8_t>(mqtt::ReasonCode::kTopicFilterInvalid)
                                : mqtt::kSubackFailure);
      continue;
    }
    const routing::SharedFilter shared = routing::parseSharedFilter(entry.filter);
    if (shared.kind != routing::SharedFilter::Kind::kInvalid &&
        !core_.maySubscribe(s, entry.filter)) {
      WorkerStats::add(core_.stats.refusedAcl, std::uint64_t{1});
      subackCodes_.push_back(v5 ? static_cast<std::uint8_t>(mqtt::ReasonCode::kNotAuthorized)
                                : mqtt::kSubackFailure);
      continue;
    }
    if (shared.kind == routing::SharedFilter::Kind::kInvalid) {
      subackCodes_.push_back(v5 ? static_cast<std::uint8_t>(mqtt::ReasonCode::kTopicFilterInvalid)
                                : mqtt::kSubackFailure);
      continue;
    }
    if (shared.kind == routing::SharedFilter::Kind::kShared && entry.noLocal) {
      // [MQTT-3.8.3-4]; the SUBSCRIBE as a whole is not acted on.
      disconnect(c, mqtt::ReasonCode::kProtocolError, "No Local on a shared subscription");
      return;
    }
    const auto [it, fresh] = filterIndex_.emplace(entry.filter, distinctFilters_.size());
    if (fresh) {
      const bool held = s.filters.find(entry.filter) != s.filters.end();
      if (!held && s.filters.size() + added >= core_.config.maxSubscriptions) {
        WorkerStats::add(core_.stats.refusedSubscriptions, std::uint64_t{1});
        it->second = kRefusedFilter;
      } else {
        added += held ? 0 : 1;
        mqtt::Subscription kept = entry;
        // Retain Handling 1 sends the retained messages only for a new subscription.
        if (kept.retainHandling == 1 && held) kept.retainHandling = 2;
        distinctFilters_.push_back(kept);
      }
    } else if (it->second != kRefusedFilter) {
      mqtt::Subscription& kept = distinctFilters_[it->second];
      kept.qos = entry.qos;
      kept.retainHandling = entry.retainHandling;
      kept.noLocal = entry.noLocal;
      kept.retainAsPublished = entry.retainAsPublished;
    }
    if (it->second == kRefusedFilter) {
      subackCodes_.push_back(v5 ? static_cast<std::uint8_t>(mqtt::ReasonCode::kQuotaExceeded)
                                : mqtt::kSubackFailure);
    } else {
      subackCodes_.push_back(entry.qos);
    }
  }
  MqttState& m = *s.mqtt;
  for (mqtt::Subscription& entry : distinctFilters_) {
    if (!core_.subscribe(s, entry.filter, entry.qos)) {
      // No more shared groups can be made: this entry fails (its code is the first of its
      // filter's entries; a filter repeated in one SUBSCRIBE is rare and gets the same answer).
      std::size_t k = 0;
      for (const mqtt::Subscription asked : subscribe.subscriptions) {
        if (asked.filter == entry.filter) {
          subackCodes_[k] = v5 ? static_cast<std::uint8_t>(mqtt::ReasonCode::kQuotaExceeded)
                               : mqtt::kSubackFailure;
        }
        ++k;
      }
      entry.retainHandling = 2;
      continue;
    }
    // A shared subscription gets no retained messages: MQTT 5.0 3.3.1.3 sends them for
    // non-shared subscriptions only.
    if (routing::parseSharedFilter(entry.filter).kind == routing::SharedFilter::Kind::kShared) {
      entry.retainHandling = 2;
    }
    if (const auto it = s.filters.find(entry.filter); it != s.filters.end()) {
      it->second = entry.qos;
    } else {
      s.filters.emplace(entry.filter, entry.qos);
    }
    // A subscription replaced is replaced with its options [MQTT-3.8.4-3].
    const auto known = m.options.find(entry.filter);
    if (entry.noLocal || entry.retainAsPublished || subscriptionId != 0) {
      const MqttState::Options options{entry.noLocal, entry.retainAsPublished, subscriptionId};
      if (known != m.options.end()) {
        known->second = options;
      } else {
        m.options.emplace(entry.filter, options);
      }
    } else if (known != m.options.end()) {
      m.options.erase(known);
    }
  }
  if (persistent(s)) storeSession(s);  // --data-dir: the subscriptions survive a restart
  core_.scratch.clear();
  if (v5) {
    mqtt::appendSuback5(core_.scratch, subscribe.packetId, subackCodes_);
  } else {
    mqtt::appendSuback(core_.scratch, subscribe.packetId, subackCodes_);
  }
  sendScratch(c);
  // Retained messages follow the SUBACK, with the retain flag set [MQTT-3.3.1-6, 3.3.1-8], in
  // slices (job.hpp); a repeated subscription re-sends them [MQTT-3.8.4-3] (5.0: unless its
  // Retain Handling says otherwise [MQTT-3.3.1-9, -10, -11]).
  for (const mqtt::Subscription entry : distinctFilters_) {
    if (entry.retainHandling == 2) continue;
    core_.jobs.start(c, Job(Job::Kind::kMqttReplay, entry.filter,
                            routing::RetainedCursor::Scope::kFilter, entry.qos));
  }
}

void MqttProtocol::onUnsubscribe(Connection& c, Session& s, const mqtt::Unsubscribe& request) {
  const bool v5 = s.mqtt->level == mqtt::kProtocolLevel5;
  subackCodes_.clear();
  for (const std::string_view filter : request.filters) {
    const auto it = s.filters.find(filter);
    if (it == s.filters.end()) {
      subackCodes_.push_back(static_cast<std::uint8_t>(mqtt::ReasonCode::kNoSubscriptionExisted));
      continue;
    }
    core_.unsubscribe(s, filter);
    s.filters.erase(it);
    if (const auto o = s.mqtt->options.find(filter); o != s.mqtt->options.end()) {
      s.mqtt->options.erase(o);
    }
    subackCodes_.push_back(static_cast<std::uint8_t>(mqtt::ReasonCode::kSuccess));
  }
  if (persistent(s)) storeSession(s);
  core_.scratch.clear();
  if (v5) {
    mqtt::appendUnsuback5(core_.scratch, request.packetId, subackCodes_);
  } else {
    mqtt::appendUnsuback(core_.scratch, request.packetId);
  }
  sendScratch(c);
}

}  // namespace tern::broker
