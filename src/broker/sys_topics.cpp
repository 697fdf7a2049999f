#include "sys_topics.hpp"

#include <fmt/format.h>

#include <cmath>
#include <iterator>

#include "worker_totals.hpp"

namespace tern::broker {
namespace {

// The topics in the order update() emits them, then the 12 load averages.
constexpr std::string_view kFixed[] = {
    "$SYS/broker/version",
    "$SYS/broker/uptime",
    "$SYS/broker/clients/connected",
    "$SYS/broker/clients/total",
    "$SYS/broker/clients/expired",
    "$SYS/broker/messages/received",
    "$SYS/broker/messages/sent",
    "$SYS/broker/publish/messages/received",
    "$SYS/broker/publish/messages/sent",
    "$SYS/broker/publish/messages/dropped",
    "$SYS/broker/bytes/received",
    "$SYS/broker/bytes/sent",
    "$SYS/broker/subscriptions/count",
    "$SYS/broker/retained messages/count",
    "$SYS/broker/store/messages/count",
};
constexpr std::string_view kLoadSeries[] = {"messages/received", "messages/sent", "bytes/received",
                                            "bytes/sent"};
constexpr std::string_view kWindows[] = {"1min", "5min", "15min"};
constexpr double kWindowSeconds[] = {60, 300, 900};

}  // namespace

SysFigures SysFigures::gather(const BrokerContext& context, std::int64_t uptimeSeconds) {
  SysFigures f;
  f.uptimeSeconds = uptimeSeconds;
  const std::int64_t sessions = sumWorkers(context, &WorkerStats::sessions);
  const std::int64_t mqttSessions = sumWorkers(context, &WorkerStats::mqttSessions);
  f.clientsConnected = (sessions - mqttSessions) + sumWorkers(context, &WorkerStats::mqttSockets);
  f.clientsTotal = sessions;
  f.clientsExpired = sumWorkers(context, &WorkerStats::expiredSessions);
  f.received = sumWorkers(context, &WorkerStats::received);
  f.sent = sumWorkers(context, &WorkerStats::delivered);
  f.dropped = sumWorkers(context, &WorkerStats::dropped);
  f.bytesReceived = sumWorkers(context, &WorkerStats::bytesReceived);
  f.bytesSent = sumWorkers(context, &WorkerStats::bytesSent);
  f.subscriptions = context.trie.size() + context.shared.memberships();
  f.retained = context.retained.size();
  const std::int64_t queued = sumWorkers(context, &WorkerStats::queuedMessages);
  f.queued = queued > 0 ? static_cast<std::uint64_t>(queued) : 0;
  return f;
}

SysTopics::SysTopics(std::string_view version) : version_(fmt::format("tern version {}", version)) {
  for (const std::string_view name : kFixed)
    topics_.push_back({std::string(name), {}});
  for (const std::string_view series : kLoadSeries) {
    for (const std::string_view window : kWindows)
      topics_.push_back({fmt::format("$SYS/broker/load/{}/{}", series, window), {}});
  }
}

void SysTopics::emit(std::size_t index, std::string_view payload, Publish publish) {
  Topic& topic = topics_[index];
  if (topic.last == payload) return;
  topic.last.assign(payload);
  publish(topic.name, payload);
}

void SysTopics::advance(Load& load, std::uint64_t value, double elapsedSeconds) noexcept {
  const double perMinute =
      elapsedSeconds > 0 ? static_cast<double>(value - load.last) * 60.0 / elapsedSeconds : 0.0;
  load.last = value;
  if (elapsedSeconds <= 0) return;
  for (int w = 0; w < 3; ++w) {
    const double keep = std::exp(-elapsedSeconds / kWindowSeconds[w]);
    load.average[w] = load.average[w] * keep + perMinute * (1.0 - keep);
  }
}

void SysTopics::update(std::int64_t now, const SysFigures& f, Publish publish) {
  // The first call starts the averages from the counters as they are.
  const bool first = lastUpdate_ == 0;
  const double elapsed = first ? 0.0 : static_cast<double>(now - lastUpdate_) / 1e9;
  lastUpdate_ = now;
  const std::uint64_t series[4] = {f.received, f.sent, f.bytesReceived, f.bytesSent};
  for (int k = 0; k < 4; ++k) {
    if (first) loads_[k].last = series[k];
    advance(loads_[k], series[k], elapsed);
  }

  const auto number = [this](auto value) -> std::string_view {
    payload_.clear();
    fmt::format_to(std::back_inserter(payload_), "{}", value);
    return payload_;
  };
  std::size_t i = 0;
  emit(i++, version_, publish);
  payload_.clear();
  fmt::format_to(std::back_inserter(payload_), "{} seconds", f.uptimeSeconds);
  emit(i++, payload_, publish);
  emit(i++, number(f.clientsConnected), publish);
  emit(i++, number(f.clientsTotal), publish);
  emit(i++, number(f.clientsExpired), publish);
  emit(i++, number(f.received), publish);
  emit(i++, number(f.sent), publish);
  emit(i++, number(f.received), publish);
  emit(i++, number(f.sent), publish);
  emit(i++, number(f.dropped), publish);
  emit(i++, number(f.bytesReceived), publish);
  emit(i++, number(f.bytesSent), publish);
  emit(i++, number(f.subscriptions), publish);
  emit(i++, number(f.retained), publish);
  emit(i++, number(f.queued), publish);
  for (const Load& load : loads_) {
    for (const double average : load.average) {
      payload_.clear();
      fmt::format_to(std::back_inserter(payload_), "{:.2f}", average);
      emit(i++, payload_, publish);
    }
  }
}

}  // namespace tern::broker
