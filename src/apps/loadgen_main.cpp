// loadgen: measures what a tern broker sustains, without coordinated omission.
// Argument parsing and wiring only; the work is in tern/loadgen (runner.hpp).
#include <fmt/format.h>
#include <CLI/CLI.hpp>

#include <atomic>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <string>

#include "tern/common/log.hpp"
#include "tern/loadgen/line_session.hpp"
#include "tern/loadgen/mqtt_session.hpp"
#include "tern/loadgen/options.hpp"
#include "tern/loadgen/payload.hpp"
#include "tern/loadgen/rate.hpp"
#include "tern/loadgen/runner.hpp"

namespace {

constexpr int kExitUsage = 2;

// Set by the first SIGINT: the run ends early but still drains and reports. The handler is reset
// by SA_RESETHAND, so a second Ctrl-C kills the process as usual. Lock-free, so async-signal-safe.
std::atomic<bool> g_interrupted{false};

void onInterrupt(int /*signal*/) {
  g_interrupted.store(true, std::memory_order_relaxed);
}

constexpr const char* kWorkload = R"(Workload:
  Every simulated client is a full line-protocol session (three sockets: CONNECT, ATTACH request,
  ATTACH push), or with --protocol mqtt (mqtt5) one MQTT 3.1.1 (5.0) connection (clean session;
  --persistent: a session the broker keeps) that publishes and subscribes at --qos. Client i
  publishes to its own topic lg/<run>/<i> and subscribes to the topics of
  clients i+1..i+K (K = --fanout, modulo --clients), so each publish has K deliveries.
  --wildcard-subscribers W adds W sessions subscribed to lg/<run>/+ or lg/<run>/# that see every
  publish. <run> is random per run, so runs sharing a broker never mix. One publisher to K
  subscribers: --clients 1 --fanout 0 --wildcard-subscribers K.

  All sessions connect and subscribe (every SUBACK received) before the first publish. Publishing
  is open loop: each publish has an intended send time from the schedule (--rate shared evenly by
  the clients, constant spacing or Poisson) and latency is measured from that time, so a stalled
  broker cannot hide its stalls. Publishes are pipelined; PUBACKs are matched in order (MQTT: by
  packet id; QoS 1 is timed to PUBACK, QoS 2 to PUBCOMP, QoS 0 has no acknowledgement). Payloads
  carry publisher id, sequence number and intended time; receivers check loss, duplicates and
  reordering per publisher, and after the run loadgen waits --drain seconds for late deliveries.

Output: one progress line per second on stderr (unless --quiet), a summary on stdout at the end,
  the same as JSON with --json FILE. Ctrl-C ends the load early and still drains and reports;
  a second Ctrl-C exits at once.
TLS and credentials: --tls encrypts every socket (each of the line protocol's three is its own
  TLS session) and verifies the broker's certificate against --cafile (or the system's CAs) and
  --tls-server-name (default --host). --username with --password-file (or --password) puts the
  credentials in every CONNECT; a refusal (ERROR@not-authorized, CONNACK 5, 0x86, 0x87) or a
  failed TLS handshake counts as a failed handshake, with the reason in the report.
WebSocket: --websocket (MQTT only) sends the HTTP upgrade request and the framed CONNECT in one
  write, checks the broker's 101 and Sec-WebSocket-Accept, then frames each turn's MQTT bytes of a
  socket as one binary frame; with --tls the frames travel inside TLS (the broker's --wss-port).
  A refused upgrade is a failed handshake; a close frame from the broker, a disconnect.

Exit status: 0 clean run; 1 anything lost, duplicated, reordered, unacknowledged or errored;
  2 bad usage or broker unreachable.)";

}  // namespace

int main(int argc, char** argv) {
  using tern::loadgen::Options;
  Options options;
  std::string rateText;
  std::string connectRateText = "0";
  std::string arrivalText = "constant";
  std::string protocolText = "line";
  std::string ioText = "auto";
  unsigned qos = 0;

  CLI::App app{"tern loadgen: open-loop load generator and latency meter for the tern broker"};
  app.footer(kWorkload);
  app.get_formatter()->column_width(34);
  app.add_option("--protocol", protocolText,
                 "line (three sockets per client), mqtt or mqtt5 (one MQTT 3.1.1 or 5.0 "
                 "connection per client)")
      ->capture_default_str();
  app.add_option("--qos", qos, "MQTT only: QoS of every publish and subscription, 0, 1 or 2")
      ->capture_default_str();
  app.add_option("--host", options.host, "Broker host name or address")->capture_default_str();
  CLI::Option* portOption =
      app.add_option("--port", options.port,
                     "Broker port (default 8000 line, 1883 mqtt; required with --websocket)");
  app.add_option("--clients", options.clients, "Simulated publishing clients (sessions)")
      ->required();
  app.add_option("--rate", rateText,
                 "Aggregate publishes per second over all clients: 2000, 50k, 1.5M")
      ->required();
  app.add_option("--duration", options.durationS, "Seconds measured")->capture_default_str();
  app.add_option("--warmup", options.warmupS,
                 "Seconds of load before the measured interval (counted, not timed)")
      ->capture_default_str();
  app.add_option("--drain", options.drainS,
                 "Seconds to wait after the last publish for late acks and deliveries before "
                 "counting them lost")
      ->capture_default_str();
  app.add_option("--idle", options.idleS,
                 "Seconds the sessions stay connected and silent before the load starts")
      ->capture_default_str();
  app.add_option("--payload", options.payloadBytes,
                 fmt::format("Payload bytes per publish, {}..{} (MQTT: ..{})",
                             tern::loadgen::kPayloadHeaderBytes, tern::loadgen::kMaxPayloadBytes,
                             tern::loadgen::kMaxMqttPayloadBytes))
      ->capture_default_str();
  app.add_option("--fanout", options.fanout,
                 "K: client i subscribes to clients i+1..i+K; 0..clients-1")
      ->capture_default_str();
  app.add_option("--wildcard-subscribers", options.wildcardSubscribers,
                 "Extra sessions subscribed with + and # filters to all traffic")
      ->capture_default_str();
  app.add_flag("--shared-subscriptions", options.sharedSubscriptions,
               "Subscribe as $share/s<session>/<filter>: the same deliveries, through the "
               "broker's shared-subscription path");
  app.add_option("--arrival", arrivalText, "Publish spacing: constant or poisson")
      ->capture_default_str();
  app.add_option("--connect-rate", connectRateText,
                 "Sessions opened per second (0: as fast as the broker accepts them)")
      ->capture_default_str();
  app.add_option("--threads", options.threads, "Event-loop threads (0: one per core)")
      ->capture_default_str();
  app.add_option("--io", ioText,
                 "I/O backend of the event loops: auto (io_uring where the kernel allows it, "
                 "else epoll), uring or epoll")
      ->capture_default_str();
  app.add_option("--json", options.jsonPath, "Also write the report as JSON to FILE");
  app.add_option("--seed", options.seed, "Seed of the Poisson schedule (same seed, same schedule)")
      ->capture_default_str();
  app.add_flag("--quiet", options.quiet, "No progress lines on stderr");
  app.add_flag("--websocket", options.websocket,
               "MQTT over WebSockets (RFC 6455): each connection upgrades with GET --ws-path and "
               "carries MQTT in binary frames, one masked frame per socket per loop turn; point "
               "--port at the broker's --ws-port (with --tls: its --wss-port)");
  CLI::Option* wsPathOption = app.add_option("--ws-path", options.wsPath,
                                             "With --websocket: the path of the upgrade request")
                                  ->capture_default_str();
  app.add_flag("--persistent", options.persistent,
               "MQTT only: every session connects with clean session 0 (5.0: Clean Start 0 and "
               "Session Expiry Interval 3600), so that the broker keeps its subscriptions and "
               "queued messages (durably with its --data-dir); client ids are unique per run");
  app.add_flag("--tls", options.tls,
               "Connect every socket with TLS (1.2 or 1.3); the broker's certificate is verified");
  app.add_option("--cafile", options.caFile,
                 "With --tls: PEM CAs that verify the broker (default: the system's CAs)");
  app.add_option("--cert", options.certFile,
                 "With --tls: PEM client certificate (chain) to present; needs --key");
  app.add_option("--key", options.keyFile, "With --tls: PEM private key of --cert");
  app.add_option("--tls-server-name", options.tlsServerName,
                 "With --tls: the name (or IP address) the broker's certificate must carry, also "
                 "sent as SNI (default: --host)");
  CLI::Option* usernameOption =
      app.add_option("--username", options.username, "User name sent in every CONNECT");
  std::string passwordText;
  CLI::Option* passwordOption = app.add_option(
      "--password", passwordText,
      "Password sent with --username. Visible to every user in ps: prefer --password-file");
  app.add_option("--password-file", options.passwordFile,
                 "File whose first line is the password (instead of --password)");

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return kExitUsage;
  }

  const auto fail = [](const std::string& message) {
    std::fprintf(stderr, "loadgen: %s\n", message.c_str());
    return kExitUsage;
  };
  const auto protocol = tern::loadgen::parseProtocol(protocolText);
  if (!protocol) return fail("--protocol must be line or mqtt, not '" + protocolText + "'");
  options.protocol = *protocol;
  if (options.websocket && portOption->count() == 0 &&
      options.protocol != tern::loadgen::Protocol::kLine) {
    return fail("--websocket needs --port: the broker's --ws-port (or --wss-port) has no default");
  }
  if (portOption->count() == 0) options.port = tern::loadgen::defaultPort(options.protocol);
  if (qos > 2) return fail("--qos must be 0, 1 or 2");
  options.qos = static_cast<std::uint8_t>(qos);
  const tern::loadgen::QuantityParse rate = tern::loadgen::parseRate(rateText);
  if (!rate.ok) return fail("--rate " + rate.error);
  options.rate = rate.value;
  const tern::loadgen::QuantityParse connectRate = tern::loadgen::parseQuantity(connectRateText);
  if (!connectRate.ok) return fail("--connect-rate " + connectRate.error);
  options.connectRate = connectRate.value;
  const auto io = tern::net::parseIoChoice(ioText);
  if (!io) return fail("--io must be auto, uring or epoll, not '" + ioText + "'");
  options.io = *io;
  const auto arrival = tern::loadgen::parseArrival(arrivalText);
  if (!arrival) return fail("--arrival must be constant or poisson, not '" + arrivalText + "'");
  options.arrival = *arrival;
  if (wsPathOption->count() != 0 && !options.websocket) return fail("--ws-path needs --websocket");
  if (usernameOption->count() != 0 && options.username.empty()) {
    return fail("--username must not be empty");
  }
  if (passwordOption->count() != 0) options.password = passwordText;
  if (const std::string error = options.validate(); !error.empty()) return fail(error);
  if (const std::string error = tern::loadgen::loadPasswordFile(options); !error.empty()) {
    return fail(error);
  }
  if (const std::string error = options.validateSecurity(); !error.empty()) return fail(error);
  tern::net::TlsContext::Made tls = tern::loadgen::makeTlsContext(options);
  if (options.tls && !tls.context) return fail("--tls: " + tls.error);

  // Fail before a long run, not after it, when the report cannot be written.
  std::ofstream json;
  if (!options.jsonPath.empty()) {
    json.open(options.jsonPath, std::ios::out | std::ios::trunc);
    if (!json) return fail("cannot write --json " + options.jsonPath);
  }

  const tern::loadgen::BrokerAddress broker =
      tern::loadgen::resolveBroker(options.host, options.port);
  if (!broker.error.empty()) return fail(broker.error);
  if (const std::string error = tern::loadgen::probeBroker(broker, 3000); !error.empty()) {
    return fail(
        fmt::format("cannot reach the broker at {}:{}: {}", options.host, options.port, error));
  }
  if (const std::string error =
          tern::loadgen::raiseDescriptorLimit(tern::loadgen::descriptorsNeeded(options));
      !error.empty()) {
    return fail(error);
  }

  struct sigaction interrupt {};
  interrupt.sa_handler = onInterrupt;
  interrupt.sa_flags = SA_RESETHAND;
  sigemptyset(&interrupt.sa_mask);
  sigaction(SIGINT, &interrupt, nullptr);

  tern::loadgen::Report report;
  try {
    tern::loadgen::Runner runner(options, broker,
                                 options.protocol != tern::loadgen::Protocol::kLine
                                     ? tern::loadgen::makeMqttSession
                                     : tern::loadgen::makeLineSession,
                                 std::move(tls.context));
    report = runner.run(stderr, &g_interrupted);
  } catch (const std::exception& e) {
    return fail(std::string("cannot run: ") + e.what());
  }

  std::fputs(report.toHuman().c_str(), stdout);
  std::fflush(stdout);
  if (json.is_open()) {
    json << report.toJson().dump(2) << '\n';
    json.close();
    if (!json) std::fprintf(stderr, "loadgen: writing %s failed\n", options.jsonPath.c_str());
  }
  return report.exitCode();
}
