#include "tern/loadgen/options.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>
#include <utility>

#include "tern/loadgen/payload.hpp"

namespace tern::loadgen {

namespace {
// Session indices travel as 32-bit publisher ids in the payload; this keeps far below that and
// below what one machine's descriptors allow anyway.
constexpr std::uint32_t kMaxSessions = 1'000'000;
}  // namespace

std::optional<Protocol> parseProtocol(std::string_view text) noexcept {
  if (text == "line") return Protocol::kLine;
  if (text == "mqtt") return Protocol::kMqtt;
  if (text == "mqtt5") return Protocol::kMqtt5;
  return std::nullopt;
}

std::string_view protocolName(Protocol protocol) noexcept {
  switch (protocol) {
    case Protocol::kLine:
      return "line";
    case Protocol::kMqtt:
      return "mqtt";
    case Protocol::kMqtt5:
      return "mqtt5";
  }
  return "line";
}

std::uint16_t defaultPort(Protocol protocol) noexcept {
  return protocol == Protocol::kLine ? 8000 : 1883;
}

std::string_view ioChoiceName(net::IoChoice choice) noexcept {
  switch (choice) {
    case net::IoChoice::kUring:
      return "uring";
    case net::IoChoice::kEpoll:
      return "epoll";
    case net::IoChoice::kAuto:
      break;
  }
  return "auto";
}

std::string Options::validate() const {
  if (clients == 0) return "--clients must be at least 1";
  if (static_cast<std::uint64_t>(clients) + wildcardSubscribers > kMaxSessions) {
    return fmt::format("--clients plus --wildcard-subscribers must be at most {}", kMaxSessions);
  }
  if (!(rate > 0) || !std::isfinite(rate)) return "--rate must be greater than zero";
  if (!(durationS > 0) || !std::isfinite(durationS)) return "--duration must be greater than zero";
  if (!(warmupS >= 0) || !std::isfinite(warmupS)) return "--warmup must be zero or more";
  if (!(drainS >= 0) || !std::isfinite(drainS)) return "--drain must be zero or more";
  if (!(idleS >= 0) || !std::isfinite(idleS)) return "--idle must be zero or more";
  const std::size_t maxPayload =
      protocol == Protocol::kLine ? kMaxPayloadBytes : kMaxMqttPayloadBytes;
  if (payloadBytes < kPayloadHeaderBytes || payloadBytes > maxPayload) {
    return fmt::format("--payload must be between {} and {} bytes with {} (the header is {} bytes)",
                       kPayloadHeaderBytes, maxPayload, protocolName(protocol),
                       kPayloadHeaderBytes);
  }
  if (fanout > clients - 1) {
    return fmt::format(
        "--fanout {} needs at least {} clients (client i subscribes to clients i+1..i+K, never "
        "itself)",
        fanout, static_cast<std::uint64_t>(fanout) + 1);
  }
  if (!(connectRate >= 0) || !std::isfinite(connectRate)) {
    return "--connect-rate must be a number of sessions per second (0: unlimited)";
  }
  if (qos > 2) return "--qos must be 0, 1 or 2";
  if (qos != 0 && protocol == Protocol::kLine) {
    return "--qos applies to --protocol mqtt and mqtt5 only (line-protocol publishes are always "
           "acknowledged)";
  }
  if (websocket && protocol == Protocol::kLine) {
    return "--websocket applies to --protocol mqtt and mqtt5 only (the broker serves MQTT over "
           "WebSockets, not the line protocol)";
  }
  if (persistent && protocol == Protocol::kLine) {
    return "--persistent applies to --protocol mqtt and mqtt5 only (line-protocol sessions end "
           "with their connection)";
  }
  if (wsPath.empty() || wsPath.front() != '/' ||
      std::any_of(wsPath.begin(), wsPath.end(), [](char ch) {
        return static_cast<unsigned char>(ch) <= 32 || static_cast<unsigned char>(ch) == 127;
      })) {
    return "--ws-path must start with '/' and hold no spaces or control characters";
  }
  if (port == 0) return "--port must be between 1 and 65535";
  if (host.empty()) return "--host must not be empty";
  return validateSecurity();
}

std::string Options::validateSecurity() const {
  if (protocol == Protocol::kLine && username.find('@') != std::string::npos) {
    return "--username must not contain '@' under the line protocol (it separates the fields)";
  }
  return check();
}

std::string loadPasswordFile(Options& options) {
  return options.loadPasswordFile();
}

net::TlsContext::Made makeTlsContext(const Options& options) {
  return options.makeTlsContext();
}

nlohmann::json Options::toJson() const {
  return {
      {"protocol", std::string(protocolName(protocol))},
      {"qos", qos},
      {"host", host},
      {"port", port},
      {"clients", clients},
      {"rate", rate},
      {"duration_s", durationS},
      {"warmup_s", warmupS},
      {"drain_s", drainS},
      {"idle_s", idleS},
      {"payload", payloadBytes},
      {"fanout", fanout},
      {"wildcard_subscribers", wildcardSubscribers},
      {"shared_subscriptions", sharedSubscriptions},
      {"arrival", std::string(arrivalName(arrival))},
      {"connect_rate", connectRate},
      {"threads", effectiveThreads(*this)},
      {"io", std::string(ioChoiceName(io))},
      {"seed", seed},
      {"tls", tls},
      {"websocket", websocket},
      {"ws_path", wsPath},
      {"persistent", persistent},
      {"username", username},  // never the password
  };
}

std::uint32_t effectiveThreads(const Options& options) noexcept {
  std::uint32_t threads = options.threads;
  if (threads == 0) threads = std::max(1u, std::thread::hardware_concurrency());
  const std::uint32_t sessions = std::max(1u, options.clients + options.wildcardSubscribers);
  return std::min(threads, sessions);
}

}  // namespace tern::loadgen
