// Config: every tunable of the broker, in one place, with its default and its reason.
//
// Filled once at start-up (command line and --config file, see src/apps/broker_main.cpp), validated
// by validate(), then copied into the Broker; constant after construction, so any thread may read it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "tern/common/log.hpp"

namespace tern::broker {

struct Config {
  // Event-loop threads that own connections and sessions. Default: one per core.
  unsigned workers = 0;
  // Threads that accept connections and hand them to workers round robin.
  unsigned acceptors = 1;
  // Address of both listeners. Loopback by default: exposing a broker is a deliberate choice.
  std::string bind = "127.0.0.1";
  // Line-protocol port (0 picks a free port, printed at start-up).
  std::uint16_t port = 8000;
  // MQTT 3.1.1 port; -1 turns MQTT off (--mqtt-port 0 on the command line), 0 picks a free port.
  int mqttPort = 1883;
  // Largest MQTT packet accepted (fixed header included); a larger one closes the connection.
  std::size_t maxPacketSize = 1024 * 1024;
  // Outbound QoS 1/2 messages sent to one MQTT client and not yet acknowledged.
  unsigned maxInflight = 20;
  // Outbound QoS 1/2 messages queued per MQTT session (offline, or beyond the in-flight window);
  // past this, messages to that session are dropped and counted.
  std::size_t maxQueuedMessages = 1000;
  // Longest frame (bytes before the LF) the line protocol accepts.
  std::size_t maxLine = 65536;
  // Seconds a socket may stay unbound (no CONNECT/ATTACH) before it is closed.
  double handshakeTimeoutSeconds = 10.0;
  // Pending output per socket: past this, pushes to the session are dropped (and counted), and a
  // request socket stops being read until its client catches up with the replies.
  std::size_t maxQueuedBytes = 4 * 1024 * 1024;
  // Seconds a closing socket may take to flush its last bytes before it is closed anyway.
  double closeLingerSeconds = 5.0;
  common::LogLevel logLevel = common::LogLevel::kInfo;

  // Returns an empty string when the configuration is usable, else a one-line explanation.
  std::string validate() const;
};

}  // namespace tern::broker
