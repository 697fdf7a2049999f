// Config: every tunable of the broker, in one place, with its default and its reason.
//
// Filled once at start-up (command line and --config file, see src/apps/broker_main.cpp), validated
// by validate(), then copied into the Broker; constant after construction, so any thread may read it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "tern/common/log.hpp"
#include "tern/net/event_loop.hpp"

namespace tern::broker {

struct Config {
  // Event-loop threads that own connections and sessions. Default: one per core.
  unsigned workers = 0;
  // Threads that accept connections and hand them to workers round robin.
  unsigned acceptors = 1;
  // Address of both listeners. Loopback by default: exposing a broker is a deliberate choice.
  std::string bind = "127.0.0.1";
  // Line-protocol port (0 picks a free port, printed at start-up; -1: no plain line listener).
  int port = 8000;
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

  // Limits against hostile or runaway clients (docs/limits.md: what happens at each, and which
  // STATS counter moves). 0 means "derived at start-up" where the comment says so.

  // Open client sockets, all listeners together. 0: the open-file limit minus a reserve of 64
  // (the broker's own descriptors and one spare to refuse connections cleanly).
  std::size_t maxConnections = 0;
  // Open client sockets from one source address. 0: half of maxConnections, so one address can
  // never take every socket.
  std::size_t maxConnectionsPerAddress = 0;
  // Open client sockets from one source address that have not authenticated yet (no CONNECT or
  // ATTACH accepted: a TLS handshake, a password check or nothing at all in progress), so that
  // one address cannot hold many descriptors without credentials. A socket counts until it binds
  // or closes (at the latest at --handshake-timeout).
  std::size_t maxUnauthenticatedPerAddress = 1024;
  // Live sessions, both protocols together (a session costs about 1 KiB at rest).
  std::size_t maxSessions = 1'000'000;
  // Filters one session may hold.
  std::size_t maxSubscriptions = 10'000;
  // Retained messages and the bytes they hold, broker-wide; past either, a new retained topic is
  // refused (replacing or deleting an existing one is always allowed).
  std::size_t maxRetainedMessages = 1'000'000;
  std::size_t maxRetainedBytes = std::size_t{1} << 30;
  // Seconds a persistent MQTT session (clean session 0) is kept while its client is offline;
  // 0 keeps it forever. Two hours as EMQX.
  double sessionExpirySeconds = 7200.0;
  // --password-file: users and password hashes in Mosquitto's format (docs/security.md); empty:
  // no authentication.
  std::string passwordFile;
  // --allow-anonymous: whether a client that gives no user name is accepted. Unset: false with a
  // password file, true without one. Set to true it also lets the broker listen on an address
  // other than loopback without authentication (validate()).
  std::optional<bool> allowAnonymous;
  // --acl-file: who may publish and subscribe where, in Mosquitto's format (docs/security.md);
  // empty: everyone may do anything.
  std::string aclFile;
  bool anonymousAllowed() const noexcept { return allowAnonymous.value_or(passwordFile.empty()); }

  // TLS (docs/security.md). --tls-cert/--tls-key: the server's PEM certificate chain and key;
  // with them, MQTT over TLS listens on mqttTlsPort (8883 unless told) and the line protocol over
  // TLS on tlsPort (8001 unless told). -1: off; 0: a free port (printed at start-up).
  std::string tlsCert;
  std::string tlsKey;
  // --tls-ca: the CAs that sign client certificates; with it clients are asked for one.
  std::string tlsCa;
  // A TLS client without a certificate signed by --tls-ca fails the handshake.
  bool requireClientCert = false;
  // On the TLS listeners, the client certificate's common name is the user (for --acl-file), and
  // the certificate is the credential (no password is checked); a client without one is refused.
  bool useIdentityAsUsername = false;
  int mqttTlsPort = 8883;
  int tlsPort = 8001;
  // --metrics-port: HTTP port of the Prometheus endpoint (/metrics) on `bind`; -1: off (the
  // default); 0: a free port (printed at start-up).
  int metricsPort = -1;
  // --ws-port: MQTT over WebSockets (RFC 6455, subprotocol "mqtt") on `bind`, for browsers;
  // --wss-port: the same over TLS (with --tls-cert). -1: off (the default); 0: a free port.
  int wsPort = -1;
  int wssPort = -1;
  // --ws-origin: the Origins (scheme://host[:port], compared exactly) whose pages may open a
  // WebSocket; any other gets 403. Empty: any page, and clients that send no Origin.
  std::vector<std::string> wsOrigins;
  bool tlsEnabled() const noexcept { return !tlsCert.empty(); }
  // Inbound MQTT QoS 2 packet ids received and not yet released (PUBREL) per connection; a client
  // that goes past it is disconnected.
  std::size_t maxAwaitingRelease = 10'000;
  // Seconds a frame (line or MQTT packet) may take to arrive once its first byte did; a slower
  // one closes the connection (it pins a buffer meanwhile).
  double frameTimeoutSeconds = 60.0;
  // Seconds between updates of the retained $SYS topics (Mosquitto's names; docs/operations.md);
  // 0: no $SYS topics.
  double sysIntervalSeconds = 10.0;
  // Bytes of buffered input and output, queued MQTT messages and sliced work (retained replay,
  // LIST) broker-wide. Past it, deliveries to sessions that already hold 64 KiB or more (slow
  // consumers, offline MQTT queues) are dropped and counted, so that memory stops growing while
  // clients that keep up are still served. 0: half of the machine's physical memory.
  std::size_t memoryLimit = 0;
  // --data-dir: where retained messages are kept across restarts (docs/durability.md); empty:
  // memory only.
  std::string dataDir;
  // --durability: kSync acknowledges a durable publish (a retained one) only once it is on disk
  // (fdatasync); kAsync acknowledges at once and syncs the log every flushInterval, so a machine
  // crash loses at most that much (a crash of the process alone loses what was not yet written).
  enum class Durability : std::uint8_t { kSync, kAsync };
  Durability durability = Durability::kSync;
  double flushIntervalMillis = 50.0;
  // Tests only (a hidden option): while this file exists, every write to the store fails as a
  // disk error would.
  std::string testStorageFaults;
  // Tests only (a hidden option, hexadecimal bytes): the process kills itself (SIGKILL) instead
  // of writing the first batch that puts a key starting with them (200 ms after taking it), a
  // crash at a chosen instant.
  std::string testCrashBeforeKey;
  common::LogLevel logLevel = common::LogLevel::kInfo;
  // The event loops' I/O: io_uring where the kernel allows it (auto), or epoll.
  net::IoChoice io = net::IoChoice::kAuto;
  // Nanoseconds a worker whose turn found nothing to do polls before it blocks (0: never); saves
  // a sleep and a wake-up when work comes within that time, costs CPU when it does not.
  std::int64_t spinNanos = 0;

  // Fills in the limits left at 0 ("derived at start-up") from the open-file limit and the
  // machine's memory. Call once before validate().
  void deriveLimits(std::uint64_t openFileLimit, std::uint64_t physicalMemory);

  // Returns an empty string when the configuration is usable, else a one-line explanation.
  std::string validate() const;
};

}  // namespace tern::broker
