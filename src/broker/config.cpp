#include "tern/broker/config.hpp"

#include <fmt/format.h>

#include "tern/routing/subscriber_id.hpp"

namespace tern::broker {

namespace {

// Whether `address` is one only this machine reaches (127.0.0.0/8, ::1, localhost).
bool loopback(const std::string& address) {
  return address.rfind("127.", 0) == 0 || address == "::1" || address == "localhost";
}

}  // namespace

std::string Config::validate() const {
  // Client certificates authenticate only on the TLS listeners: they count when no plain
  // listener is open.
  const bool certificatesOnly = requireClientCert && port < 0 && mqttPort < 0;
  if (!loopback(bind) && passwordFile.empty() && !certificatesOnly && allowAnonymous != true) {
    return fmt::format(
        "refusing to listen on {} without authentication: give --password-file FILE (or "
        "--require-client-cert with the plain listeners off: --port off --mqtt-port off), or "
        "--allow-anonymous true to let anyone who reaches it in",
        bind);
  }
  if (tlsCert.empty() != tlsKey.empty()) return "--tls-cert and --tls-key go together";
  if (!tlsEnabled() && (!tlsCa.empty() || requireClientCert || useIdentityAsUsername)) {
    return "--tls-ca, --require-client-cert and --use-identity-as-username need --tls-cert and "
           "--tls-key";
  }
  if ((requireClientCert || useIdentityAsUsername) && tlsCa.empty()) {
    return "--require-client-cert and --use-identity-as-username need --tls-ca (the CAs that "
           "sign client certificates)";
  }
  if (port < -1 || port > 65535 || mqttTlsPort < -1 || mqttTlsPort > 65535 || tlsPort < -1 ||
      tlsPort > 65535) {
    return "ports must be between 0 and 65535";
  }
  if (wsPort < -1 || wsPort > 65535 || wssPort < -1 || wssPort > 65535) {
    return "--ws-port and --wss-port must be between 0 and 65535";
  }
  if (wssPort >= 0 && !tlsEnabled()) return "--wss-port needs --tls-cert and --tls-key";
  for (const std::string& origin : wsOrigins) {
    if (origin.empty() || origin.find_first_of(" \t\r\n,") != std::string::npos) {
      return "--ws-origin takes one Origin each, such as https://example.com (no spaces or commas)";
    }
  }
  if (port < 0 && mqttPort < 0 && wsPort < 0 && wssPort < 0 &&
      (!tlsEnabled() || (mqttTlsPort < 0 && tlsPort < 0))) {
    return "every listener is off: nothing to serve";
  }
  if (workers < 1 || workers > routing::SubscriberId::kMaxWorkers) {
    return fmt::format("--workers must be between 1 and {}", routing::SubscriberId::kMaxWorkers);
  }
  if (acceptors < 1 || acceptors > 64) return "--acceptors must be between 1 and 64";
  if (maxLine < 64 || maxLine > (std::size_t{1} << 30)) {
    return "--max-line must be between 64 and 1073741824 bytes";
  }
  if (!(handshakeTimeoutSeconds > 0) || handshakeTimeoutSeconds > 86400) {
    return "--handshake-timeout must be a positive number of seconds (at most 86400)";
  }
  if (maxQueuedBytes < 1024) return "--max-queued-bytes must be at least 1024";
  if (bind.empty()) return "--bind must not be empty";
  if (mqttPort < -1 || mqttPort > 65535) return "--mqtt-port must be between 0 and 65535";
  if (metricsPort < -1 || metricsPort > 65535) return "--metrics-port must be between 0 and 65535";
  if (maxPacketSize < 64 || maxPacketSize > 268'435'460) {
    return "--max-packet-size must be between 64 and 268435460 bytes";
  }
  if (maxInflight < 1 || maxInflight > 65535) return "--max-inflight must be between 1 and 65535";
  if (maxQueuedMessages < 1) return "--max-queued-messages must be at least 1";
  if (maxConnections < 1) return "--max-connections must be at least 1";
  if (maxConnectionsPerAddress < 1) return "--max-connections-per-address must be at least 1";
  if (maxUnauthenticatedPerAddress < 1)
    return "--max-unauthenticated-per-address must be at least 1";
  if (maxSessions < 1) return "--max-sessions must be at least 1";
  if (maxSessions > std::size_t{workers} * routing::SubscriberId::kMaxSlots) {
    return fmt::format("--max-sessions must be at most {} per worker",
                       routing::SubscriberId::kMaxSlots);
  }
  if (maxSubscriptions < 1) return "--max-subscriptions must be at least 1";
  if (maxRetainedMessages < 1) return "--max-retained-messages must be at least 1";
  if (maxRetainedBytes < 1024) return "--max-retained-bytes must be at least 1024";
  if (!(sessionExpirySeconds >= 0)) return "--session-expiry must be 0 (never) or positive";
  if (maxAwaitingRelease < 1 || maxAwaitingRelease > 65535) {
    return "--max-awaiting-rel must be between 1 and 65535";
  }
  if (!(frameTimeoutSeconds > 0) || frameTimeoutSeconds > 86400) {
    return "--frame-timeout must be a positive number of seconds (at most 86400)";
  }
  if (memoryLimit < (std::size_t{16} << 20)) return "--memory-limit must be at least 16M";
  if (!(sysIntervalSeconds >= 0) || sysIntervalSeconds > 86400) {
    return "--sys-interval must be between 0 (off) and 86400 seconds";
  }
  if (!(flushIntervalMillis >= 1) || flushIntervalMillis > 3'600'000) {
    return "--flush-interval must be between 1 and 3600000 milliseconds";
  }
  return {};
}

void Config::deriveLimits(std::uint64_t openFileLimit, std::uint64_t physicalMemory) {
  constexpr std::uint64_t kReservedDescriptors = 64;
  if (maxConnections == 0) {
    maxConnections = openFileLimit > 2 * kReservedDescriptors
                         ? static_cast<std::size_t>(openFileLimit - kReservedDescriptors)
                         : static_cast<std::size_t>(openFileLimit / 2 + 1);
  }
  if (maxConnectionsPerAddress == 0) maxConnectionsPerAddress = maxConnections / 2 + 1;
  if (memoryLimit == 0) {
    memoryLimit =
        physicalMemory != 0 ? static_cast<std::size_t>(physicalMemory / 2) : std::size_t{1} << 30;
  }
}

}  // namespace tern::broker
