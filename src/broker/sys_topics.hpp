// SysTopics: the broker's $SYS tree, under the topic names Mosquitto uses, so that dashboards and
// scripts written for Mosquitto read tern too (docs/operations.md lists them). Every
// --sys-interval seconds worker 0 gathers the counters (SysFigures::gather) and publishes, as
// retained messages, the topics whose value changed since the last time (all of them the first
// time). `#` does not match them (topics starting with '$', MQTT 4.7.2); `$SYS/#` does; clients
// may not publish there.
//
// The load averages are Mosquitto's: an exponentially weighted moving average of the per-minute
// rate over 1, 5 and 15 minutes, updated at each publication with the weight
// exp(-elapsed / window).
//
// Ownership: owned by worker 0 (Worker::sys_). Threads: that worker's thread only, except
// SysFigures::gather (any thread).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "tern/common/function_ref.hpp"

namespace tern::broker {

struct BrokerContext;

// What the $SYS topics say, taken at one instant.
struct SysFigures {
  std::int64_t uptimeSeconds = 0;
  std::int64_t clientsConnected = 0;  // line sessions and open MQTT connections
  std::int64_t clientsTotal = 0;      // sessions, offline persistent MQTT sessions included
  std::uint64_t clientsExpired = 0;   // persistent MQTT sessions ended by --session-expiry
  std::uint64_t received = 0;         // publishes from clients
  std::uint64_t sent = 0;             // messages written to subscribers
  std::uint64_t dropped = 0;          // deliveries not made
  std::uint64_t bytesReceived = 0;
  std::uint64_t bytesSent = 0;
  std::uint64_t subscriptions = 0;  // plain ones and memberships of shared groups
  std::uint64_t retained = 0;
  std::uint64_t queued = 0;  // MQTT messages waiting in session queues

  static SysFigures gather(const BrokerContext& context, std::int64_t uptimeSeconds);
};

class SysTopics {
 public:
  using Publish = common::FunctionRef<void(std::string_view topic, std::string_view payload)>;

  explicit SysTopics(std::string_view version);

  // Publishes (through `publish`) each topic whose payload differs from the last one published;
  // every topic on the first call. `now`: monotonic ns, for the load averages.
  void update(std::int64_t now, const SysFigures& figures, Publish publish);

 private:
  struct Topic {
    std::string name;
    std::string last;  // payload last published; empty: never
  };
  // A rate's moving averages over 1, 5 and 15 minutes, per minute.
  struct Load {
    double average[3] = {0, 0, 0};
    std::uint64_t last = 0;
  };
  void emit(std::size_t index, std::string_view payload, Publish publish);
  void advance(Load& load, std::uint64_t value, double elapsedSeconds) noexcept;

  std::string version_;
  std::vector<Topic> topics_;
  Load loads_[4];  // messages received, messages sent, bytes received, bytes sent
  std::int64_t lastUpdate_ = 0;
  std::string payload_;  // reused
};

}  // namespace tern::broker
