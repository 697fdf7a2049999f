// Options: everything a loadgen run is configured with, validated once at start-up.
//
// Filled by the command line (src/apps/loadgen_main.cpp) or by tests, validated with validate(),
// then read-only for the whole run: any thread may read a const Options.
#pragma once

#include <nlohmann/json_fwd.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "tern/loadgen/schedule.hpp"
#include "tern/net/client_security.hpp"
#include "tern/net/event_loop.hpp"
#include "tern/net/tls.hpp"

namespace tern::loadgen {

// Which protocol the simulated clients speak: the line protocol's three sockets per client
// (docs/protocol.md), or one MQTT 3.1.1 or 5.0 connection per client (docs/mqtt.md).
enum class Protocol { kLine, kMqtt, kMqtt5 };

// "line" or "mqtt"; nullopt otherwise.
std::optional<Protocol> parseProtocol(std::string_view text) noexcept;
std::string_view protocolName(Protocol protocol) noexcept;
// The broker port a protocol is served on by default: 8000 (line), 1883 (MQTT).
std::uint16_t defaultPort(Protocol protocol) noexcept;

// The Session Expiry Interval (seconds) of a --persistent MQTT 5.0 session.
inline constexpr std::uint32_t kPersistentSessionExpiryS = 3600;

// TLS on every socket and the credentials of every CONNECT: net::ClientSecurity.
struct Options : net::ClientSecurity {
  Protocol protocol = Protocol::kLine;
  std::uint8_t qos = 0;  // MQTT: QoS of every publish and subscription (0, 1 or 2)
  std::string host = "127.0.0.1";
  std::uint16_t port = 8000;
  std::uint32_t clients = 0;  // simulated publishing clients (required)
  double rate = 0;            // aggregate publishes per second over all clients (required)
  double durationS = 10;      // measured interval
  double warmupS = 1;         // load before the measured interval, not in rates or latencies
  double drainS = 2;          // wait after the last publish for late acks and deliveries
  double idleS = 0;  // sessions connected and subscribed but silent, before the load starts
  std::uint32_t payloadBytes = 64;        // contents size of every publish, >= kPayloadHeaderBytes
  std::uint32_t fanout = 1;               // client i subscribes to clients i+1..i+fanout
  std::uint32_t wildcardSubscribers = 0;  // extra sessions that subscribe to every client's topic
  bool sharedSubscriptions = false;       // every filter as $share/s<session>/<filter> (Workload)
  Arrival arrival = Arrival::kConstant;
  double connectRate = 0;     // sessions opened per second; 0: as fast as the broker accepts
  std::uint32_t threads = 0;  // event-loop threads; 0: one per core
  net::IoChoice io = net::IoChoice::kAuto;  // their backend: io_uring where it works, or epoll
  std::string jsonPath;                     // where to write the JSON report; empty: none
  std::uint64_t seed = 1;                   // Poisson gaps are a function of (seed, client)
  bool quiet = false;                       // no progress lines on stderr
  // MQTT over WebSockets (the broker's --ws-port, or with --tls its --wss-port): every session
  // upgrades its connection with a GET of `wsPath`, then sends MQTT in binary frames.
  bool websocket = false;
  std::string wsPath = "/mqtt";
  // MQTT only: every session asks the broker to keep it (3.1.1 clean session 0; 5.0 Clean Start 0
  // and Session Expiry Interval kPersistentSessionExpiryS), so that with --data-dir its
  // subscriptions and queued messages are kept durably. Client ids are unique per run, so no
  // session of an earlier run is resumed.
  bool persistent = false;

  // The reason the options cannot run, or an empty string when they can.
  std::string validate() const;
  // The name checked in the broker's certificate: --tls-server-name, else --host.
  const std::string& effectiveTlsServerName() const noexcept {
    return tlsServerName.empty() ? host : tlsServerName;
  }
  // The part of validate() about TLS and credentials.
  std::string validateSecurity() const;
  // Whether the broker acknowledges publishes: always under the line protocol, at QoS 1 and 2
  // under MQTT (PUBACK, PUBCOMP). Without acknowledgements nothing is counted as unacknowledged.
  bool acknowledged() const noexcept { return protocol == Protocol::kLine || qos > 0; }
  // Sockets per simulated client: 3 (line protocol) or 1 (MQTT).
  unsigned socketsPerSession() const noexcept { return protocol == Protocol::kLine ? 3 : 1; }
  // The options as JSON (part of the report).
  nlohmann::json toJson() const;
};

// Reads the first line of options.passwordFile (without its line end) into options.password and
// clears passwordFile; nothing to do without one. Returns "" or why the file cannot be used.
// Start-up only (file I/O).
std::string loadPasswordFile(Options& options);

// The client TLS context --tls, --cafile, --cert and --key ask for (null context without --tls);
// `error` is one line when the files cannot be used. Start-up only.
net::TlsContext::Made makeTlsContext(const Options& options);

// "auto", "uring" or "epoll", as --io spells them.
std::string_view ioChoiceName(net::IoChoice choice) noexcept;

// How many event-loop threads `options` gets: --threads, or the number of cores, never more than
// the number of sessions.
std::uint32_t effectiveThreads(const Options& options) noexcept;

}  // namespace tern::loadgen
