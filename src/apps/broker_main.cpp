// broker: command-line parsing and wiring only. See docs/ for what the broker does.
#include <signal.h>
#include <unistd.h>
#include <CLI/CLI.hpp>

#include <algorithm>
#include <cstdio>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "tern/auth/passwd_command.hpp"
#include "tern/broker/broker.hpp"
#include "tern/broker/config.hpp"
#include "tern/common/log.hpp"
#include "tern/net/socket.hpp"

#ifdef TERN_WITH_MIMALLOC
#include <mimalloc.h>
#endif

namespace {

constexpr int kUsageError = 2;

int fail(const std::string& message) {
  std::fprintf(stderr, "broker: %s\n", message.c_str());
  return kUsageError;
}

// A port option: a number, "0"/"off" (-1: no listener) or "auto" (0: a free port).
std::optional<int> parsePort(const std::string& text) {
  if (text == "0" || text == "off") return -1;
  if (text == "auto") return 0;
  try {
    std::size_t used = 0;
    const int port = std::stoi(text, &used);
    if (used != text.size() || port < 1 || port > 65535) return std::nullopt;
    return port;
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

}  // namespace

int main(int argc, char** argv) {
  tern::broker::Config config;
  config.workers = std::max(1u, std::thread::hardware_concurrency());
  std::string logLevel = "info";

  CLI::App app{
      "tern broker: a lock-free publish/subscribe broker speaking the three-socket line protocol\n"
      "(docs/protocol.md) and MQTT 5.0 and 3.1.1 (docs/mqtt.md) over one topic space.\n"
      "Stops cleanly on SIGINT or SIGTERM; SIGHUP reads --password-file, --acl-file and the TLS "
      "certificate and key again.",
      "broker"};
  app.set_version_flag("--version", std::string("tern broker ") + TERN_VERSION);
  app.set_config("--config", "",
                 "Read options from a TOML/INI file (keys are the long option "
                 "names, e.g. port = 9000; dist/tern.conf lists them all); command-line options "
                 "win");
  // A key that names no option is an error, not ignored: a misspelt setting must not pass.
  app.allow_config_extras(false);
  // --check-config FILE is --config FILE that stops after checking: argv is rewritten before
  // parsing (below), so the file is read by the very parser a start would use. Listed here for
  // --help; CLI11 then refuses it given twice, or beside --config.
  std::string checkConfigFile;
  app.add_option("--check-config", checkConfigFile,
                 "Read options from FILE as --config does, check them and the files they name "
                 "(password, ACL, TLS certificate and key) without opening a socket, print the "
                 "verdict and exit: 0 when a start would accept them, 2 with the first problem "
                 "otherwise")
      ->type_name("FILE");
  app.add_option("--workers", config.workers,
                 "Worker event loops that own connections and sessions (default: one per core)")
      ->check(CLI::Range(1u, 256u));
  app.add_option("--acceptors", config.acceptors,
                 "Threads that accept connections and hand them to workers round robin")
      ->capture_default_str()
      ->check(CLI::Range(1u, 64u));
  app.add_option("--bind", config.bind, "Address to listen on")->capture_default_str();
  std::string linePort = std::to_string(config.port);
  app.add_option("--port", linePort,
                 "Line-protocol port; 0 or auto picks a free port (printed at start-up), off "
                 "turns the plain line-protocol listener off")
      ->capture_default_str();
  std::string mqttPort = std::to_string(config.mqttPort);
  app.add_option("--mqtt-port", mqttPort,
                 "MQTT 5.0 and 3.1.1 port, served by the same workers and topic space; 0 or "
                 "off turns MQTT off, auto picks a free port (printed at start-up)")
      ->capture_default_str();
  app.add_option("--max-packet-size", config.maxPacketSize,
                 "Largest MQTT packet in bytes; a larger one closes the connection (accepts k/M "
                 "suffixes)")
      ->capture_default_str()
      ->transform(CLI::AsSizeValue(false));
  app.add_option("--max-inflight", config.maxInflight,
                 "MQTT QoS 1/2 messages sent to one client and not yet acknowledged")
      ->capture_default_str()
      ->check(CLI::Range(1u, 65535u));
  app.add_option("--max-queued-messages", config.maxQueuedMessages,
                 "MQTT QoS 1/2 messages queued per session (offline, or beyond the in-flight "
                 "window); past it they are dropped and counted")
      ->capture_default_str();
  app.add_option("--max-line", config.maxLine,
                 "Longest frame in bytes (without its LF); a longer one is answered "
                 "ERROR@too-long and its socket closed (accepts k/M suffixes)")
      ->capture_default_str()
      ->transform(CLI::AsSizeValue(false));
  app.add_option("--handshake-timeout", config.handshakeTimeoutSeconds,
                 "Seconds a socket may stay without CONNECT/ATTACH before it is closed")
      ->capture_default_str();
  app.add_option("--max-queued-bytes", config.maxQueuedBytes,
                 "Pending output per socket: past it, pushes to that session are dropped and "
                 "counted, and a request socket is not read until its client catches up "
                 "(accepts k/M suffixes)")
      ->capture_default_str()
      ->transform(CLI::AsSizeValue(false));
  app.add_option("--max-connections", config.maxConnections,
                 "Open client sockets, all listeners together; past it a new connection is "
                 "refused (line protocol: ERROR@server-busy) and closed (default: the open-file "
                 "limit minus 64)");
  app.add_option("--max-connections-per-address", config.maxConnectionsPerAddress,
                 "Open client sockets from one source address (default: half of "
                 "--max-connections)");
  app.add_option("--max-unauthenticated-per-address", config.maxUnauthenticatedPerAddress,
                 "Open client sockets from one source address that have not authenticated yet "
                 "(no CONNECT/ATTACH accepted; TLS handshakes and password checks included); past "
                 "it a new connection from that address is refused like at "
                 "--max-connections-per-address")
      ->capture_default_str();
  app.add_option("--max-sessions", config.maxSessions,
                 "Live sessions, both protocols; past it CONNECT is refused (ERROR@server-busy, "
                 "MQTT CONNACK 3)")
      ->capture_default_str();
  app.add_option("--max-subscriptions", config.maxSubscriptions,
                 "Filters one session may hold; past it SUBSCRIBE is refused "
                 "(ERROR@too-many-subscriptions, MQTT return code 0x80)")
      ->capture_default_str();
  app.add_option("--max-retained-messages", config.maxRetainedMessages,
                 "Retained messages broker-wide; past it a new retained topic is refused")
      ->capture_default_str();
  app.add_option("--max-retained-bytes", config.maxRetainedBytes,
                 "Bytes of retained messages broker-wide (accepts k/M/G suffixes)")
      ->capture_default_str()
      ->transform(CLI::AsSizeValue(false));
  app.add_option("--session-expiry", config.sessionExpirySeconds,
                 "Seconds an offline persistent MQTT session (3.1.1 clean session 0) is kept, "
                 "and the most an MQTT 5.0 Session Expiry Interval is granted; 0 keeps it "
                 "forever (5.0: as long as the client asks)")
      ->capture_default_str();
  app.add_option("--max-awaiting-rel", config.maxAwaitingRelease,
                 "Inbound MQTT QoS 2 messages awaiting PUBREL per connection; a client that goes "
                 "past it is disconnected")
      ->capture_default_str()
      ->check(CLI::Range(1, 65535));
  app.add_option("--frame-timeout", config.frameTimeoutSeconds,
                 "Seconds a frame or MQTT packet may take to arrive once it started; a slower "
                 "connection is closed")
      ->capture_default_str();
  app.add_option("--sys-interval", config.sysIntervalSeconds,
                 "Seconds between updates of the $SYS topics (retained, Mosquitto's names: "
                 "$SYS/broker/clients/connected, .../load/messages/received/1min, ...; "
                 "docs/operations.md); 0 turns them off")
      ->capture_default_str();
  app.add_option("--memory-limit", config.memoryLimit,
                 "Bytes of buffered, queued and pending data broker-wide; past it deliveries "
                 "to sessions that hold 64 KiB or more are dropped and counted (accepts k/M/G "
                 "suffixes; default: half of the physical memory)")
      ->transform(CLI::AsSizeValue(false));
  app.add_option("--data-dir", config.dataDir,
                 "Keep retained messages in this directory (created if missing; a RocksDB store) "
                 "so that they survive restarts and crashes (docs/durability.md); without it "
                 "everything is in memory only")
      ->type_name("DIR");
  std::string durability = "sync";
  app.add_option("--durability", durability,
                 "With --data-dir: sync acknowledges a retained publish (line PUBACK, MQTT QoS 1 "
                 "PUBACK, QoS 2 PUBREC) only once it is on disk, so nothing acknowledged is lost "
                 "in any crash; async acknowledges at once: a crash of the broker loses what was "
                 "not yet written, a crash of the machine at most --flush-interval of writes")
      ->capture_default_str()
      ->check(CLI::IsMember({"sync", "async"}));
  app.add_option("--flush-interval", config.flushIntervalMillis,
                 "With --durability async: milliseconds a write may wait before the log is "
                 "synced to disk")
      ->capture_default_str();
  app.add_option("--test-storage-faults", config.testStorageFaults,
                 "Tests only: while this file exists every write to the store fails")
      ->group("");
  app.add_option("--test-crash-before-key", config.testCrashBeforeKey,
                 "Tests only: the broker kills itself (SIGKILL) instead of writing the first "
                 "batch that puts a key starting with these bytes (hexadecimal), 200 ms after "
                 "taking that batch")
      ->group("");
  std::string io = "auto";
  app.add_option("--io", io,
                 "Socket I/O of the event loops: uring (io_uring), epoll, or auto (io_uring when "
                 "the kernel allows it, else epoll; said at start-up)")
      ->capture_default_str();
  double spinMicros = 0;
  app.add_option("--spin", spinMicros,
                 "Microseconds an idle worker polls before it sleeps (0: never): fewer sleeps "
                 "and wake-ups under load, CPU spent when idle")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 10000.0));
  app.add_option("--log-level", logLevel, "debug, info, warn, error or off")->capture_default_str();
  app.add_option("--password-file", config.passwordFile,
                 "Users and password hashes in Mosquitto's format (broker passwd, "
                 "mosquitto_passwd): a client that names a user must give its password "
                 "(MQTT: CONNACK 0x05 / 5.0 0x86 otherwise; line: ERROR@not-authorized)");
  app.add_option("--acl-file", config.aclFile,
                 "Who may publish and subscribe where, in Mosquitto's acl_file format (topic, "
                 "user, pattern lines); what it does not grant is denied");
  app.add_option("--tls-cert", config.tlsCert,
                 "PEM certificate chain of the broker: turns on MQTT over TLS (--mqtt-tls-port) "
                 "and the line protocol over TLS (--tls-port); TLS 1.2 and 1.3 only. SIGHUP reads "
                 "it again");
  app.add_option("--tls-key", config.tlsKey, "PEM private key of --tls-cert");
  app.add_option("--tls-ca", config.tlsCa,
                 "PEM CAs that sign client certificates: TLS clients are asked for one, and one "
                 "they send must verify");
  app.add_flag("--require-client-cert", config.requireClientCert,
               "A TLS client without a certificate signed by --tls-ca fails the handshake");
  app.add_flag("--use-identity-as-username", config.useIdentityAsUsername,
               "On the TLS listeners the client certificate's common name is the user name (for "
               "--acl-file) and the certificate is the credential: no password is checked; a "
               "TLS client without a certificate is refused");
  std::string mqttTlsPort = "8883";
  app.add_option("--mqtt-tls-port", mqttTlsPort,
                 "MQTT over TLS port (with --tls-cert); 0 or off turns it off, auto picks a free "
                 "port")
      ->capture_default_str();
  std::string tlsPort = "8001";
  app.add_option("--tls-port", tlsPort,
                 "Line protocol over TLS port (with --tls-cert; each of a session's three sockets "
                 "is its own TLS connection); 0 or off turns it off, auto picks a free port")
      ->capture_default_str();
  std::string metricsPort = "off";
  app.add_option("--metrics-port", metricsPort,
                 "HTTP port of the Prometheus endpoint, GET /metrics on --bind (docs/operations.md "
                 "lists the metrics); off turns it off, auto picks a free port")
      ->capture_default_str();
  std::string wsPort = "off";
  app.add_option("--ws-port", wsPort,
                 "MQTT over WebSockets port, for browsers (subprotocol mqtt, binary frames; "
                 "docs/operations.md); off turns it off, auto picks a free port")
      ->capture_default_str();
  std::string wssPort = "off";
  app.add_option("--wss-port", wssPort,
                 "MQTT over WebSockets over TLS port (with --tls-cert); off turns it off, auto "
                 "picks a free port")
      ->capture_default_str();
  app.add_option("--ws-origin", config.wsOrigins,
                 "An Origin (scheme://host[:port]) whose pages may connect over WebSockets; "
                 "repeat for more. Others get HTTP 403. Default: any")
      ->take_all();
  std::string allowAnonymous;
  app.add_option("--allow-anonymous", allowAnonymous,
                 "true or false: accept clients that give no user name (default: false with "
                 "--password-file, true without); true is needed to listen on a non-loopback "
                 "--bind without a password file")
      ->check(CLI::IsMember({"true", "false"}));

  tern::auth::PasswdOptions passwd;
  CLI::App* passwdCommand = app.add_subcommand(
      "passwd",
      "Create or update USER in the password FILE (Mosquitto's format: files from "
      "mosquitto_passwd work, and these work in Mosquitto). The password is read from the "
      "terminal, twice, without echo, or as one line from stdin; never from the command line.");
  passwdCommand->add_option("FILE", passwd.file, "Password file (created, mode 0600, if missing)")
      ->required();
  passwdCommand->add_option("USER", passwd.user, "User name")->required();
  passwdCommand->add_flag("-D,--delete", passwd.remove, "Remove USER instead");
  passwdCommand
      ->add_option("--iterations", passwd.iterations, "PBKDF2-SHA512 iterations of the new hash")
      ->capture_default_str()
      ->check(CLI::Range(1u, tern::auth::PasswordHash::kMaxIterations));
  std::vector<std::string> args(argv + 1, argv + argc);
  bool checkOnly = false;
  for (std::size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--") break;
    if (args[i] == "--check-config" && i + 1 < args.size()) {
      args[i] = "--config";
      checkConfigFile = args[i + 1];
      checkOnly = true;
    } else if (args[i].starts_with("--check-config=")) {
      checkConfigFile = args[i].substr(std::string_view("--check-config=").size());
      args[i] = "--config=" + checkConfigFile;
      checkOnly = true;
    }
  }
  std::reverse(args.begin(), args.end());  // CLI11 takes a reversed vector
  try {
    app.parse(args);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    return fail(std::string(e.what()) + " (see broker --help)");
  }
  if (passwdCommand->parsed()) return tern::auth::runPasswd(passwd, stdin, stderr);

  if (!allowAnonymous.empty()) config.allowAnonymous = allowAnonymous == "true";
  // The line port keeps 0 = a free port (as it always had); the others take 0 as off.
  const std::optional<int> line = parsePort(linePort == "0" ? "auto" : linePort);
  const std::optional<int> mqtt = parsePort(mqttPort);
  const std::optional<int> mqttTls = parsePort(mqttTlsPort);
  const std::optional<int> lineTls = parsePort(tlsPort);
  const std::optional<int> metrics = parsePort(metricsPort);
  const std::optional<int> ws = parsePort(wsPort);
  const std::optional<int> wss = parsePort(wssPort);
  if (!line) return fail("--port must be a port number, 0/auto or off");
  if (!mqtt) return fail("--mqtt-port must be a port number, 0/off or auto");
  if (!mqttTls) return fail("--mqtt-tls-port must be a port number, 0/off or auto");
  if (!lineTls) return fail("--tls-port must be a port number, 0/off or auto");
  if (!metrics) return fail("--metrics-port must be a port number, 0/off or auto");
  if (!ws) return fail("--ws-port must be a port number, 0/off or auto");
  if (!wss) return fail("--wss-port must be a port number, 0/off or auto");
  config.port = *line;
  config.mqttPort = *mqtt;
  config.mqttTlsPort = *mqttTls;
  config.tlsPort = *lineTls;
  config.metricsPort = *metrics;
  config.wsPort = *ws;
  config.wssPort = *wss;
  const auto ioChoice = tern::net::parseIoChoice(io);
  if (!ioChoice) return fail("--io must be auto, uring or epoll");
  config.io = *ioChoice;
  config.spinNanos = static_cast<std::int64_t>(spinMicros * 1000);
  config.durability = durability == "async" ? tern::broker::Config::Durability::kAsync
                                            : tern::broker::Config::Durability::kSync;
  const auto level = tern::common::parseLogLevel(logLevel);
  if (!level) return fail("--log-level must be debug, info, warn, error or off");
  config.logLevel = *level;
  tern::common::setLogLevel(config.logLevel);
  const std::uint64_t files = tern::net::raiseFileLimit();
  const long pages = ::sysconf(_SC_PHYS_PAGES);
  const long pageSize = ::sysconf(_SC_PAGESIZE);
  config.deriveLimits(files, pages > 0 && pageSize > 0 ? static_cast<std::uint64_t>(pages) *
                                                             static_cast<std::uint64_t>(pageSize)
                                                       : 0);
  if (std::string problem = config.validate(); !problem.empty()) return fail(problem);
  if (checkOnly) {
    if (std::string problem = tern::broker::Broker::checkFiles(config); !problem.empty()) {
      return fail(checkConfigFile + ": " + problem);
    }
    std::printf("broker: %s: the configuration is valid\n", checkConfigFile.c_str());
    return 0;
  }

  // Signals: SIGINT/SIGTERM are taken by sigwait() below, never by a worker; a peer that closes
  // early must not kill the process with SIGPIPE.
  ::signal(SIGPIPE, SIG_IGN);
  sigset_t stopSignals;
  sigemptyset(&stopSignals);
  sigaddset(&stopSignals, SIGINT);
  sigaddset(&stopSignals, SIGTERM);
  sigaddset(&stopSignals, SIGHUP);                    // reload, not stop
  pthread_sigmask(SIG_BLOCK, &stopSignals, nullptr);  // inherited by every thread started below

  std::unique_ptr<tern::broker::Broker> owned;
  try {
    owned = std::make_unique<tern::broker::Broker>(config);
    owned->start();
  } catch (const std::exception& e) {
    return fail(e.what());
  }
  tern::broker::Broker& broker = *owned;
  for (const tern::broker::Broker::Listener& listener : broker.listeners()) {
    std::printf("tern broker listening on %s (%s)\n", listener.endpoint.c_str(),
                listener.name.c_str());
  }
  std::fflush(stdout);
#ifdef TERN_WITH_MIMALLOC
  const char* allocator = "mimalloc";
#else
  const char* allocator = "system malloc";
#endif
  TERN_LOG_INFO("tern {} started: {} workers on {}, {} acceptor(s), open-file limit {}, {}",
                TERN_VERSION, config.workers, tern::net::name(broker.ioBackend()), config.acceptors,
                files, allocator);
  TERN_LOG_INFO(
      "limits: {} connections ({} per address), {} sessions, {} subscriptions per "
      "session, memory {} MiB (docs/limits.md)",
      config.maxConnections, config.maxConnectionsPerAddress, config.maxSessions,
      config.maxSubscriptions, config.memoryLimit >> 20);

  int received = 0;
  for (;;) {
    sigwait(&stopSignals, &received);
    if (received != SIGHUP) break;
    TERN_LOG_INFO("SIGHUP received: reloading the password and ACL files and the TLS certificate");
    broker.reload();
  }
  TERN_LOG_INFO("{} received: shutting down", received == SIGINT ? "SIGINT" : "SIGTERM");
  broker.stop();
  TERN_LOG_INFO("stopped cleanly");
  return 0;
}
