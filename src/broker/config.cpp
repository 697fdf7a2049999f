#include "tern/broker/config.hpp"

#include <fmt/format.h>

#include "tern/routing/subscriber_id.hpp"

namespace tern::broker {

std::string Config::validate() const {
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
  if (maxPacketSize < 64 || maxPacketSize > 268'435'460) {
    return "--max-packet-size must be between 64 and 268435460 bytes";
  }
  if (maxInflight < 1 || maxInflight > 65535) return "--max-inflight must be between 1 and 65535";
  if (maxQueuedMessages < 1) return "--max-queued-messages must be at least 1";
  return {};
}

}  // namespace tern::broker
