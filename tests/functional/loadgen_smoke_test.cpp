// loadgen against the real broker binary, over the line protocol and over MQTT at QoS 0, 1 and 2
// (over TCP and over WebSockets):
// a clean short run accounts for every message, a broker stopped halfway makes loadgen report the
// loss and exit 1, and usage errors and an unreachable broker exit 2. Judged on loadgen's exit
// status and its JSON counts, never on timing. TERN_TEST_IO (uring or epoll) chooses the backend
// of loadgen's event loops as it does the broker's.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "harness.hpp"

namespace tern::test {
namespace {

// A temporary file for loadgen's --json report, removed afterwards.
class TempJson {
 public:
  TempJson() {
    char path[] = "/tmp/tern-loadgen-XXXXXX.json";
    const int fd = ::mkstemps(path, 5);
    if (fd >= 0) ::close(fd);
    path_ = path;
  }
  ~TempJson() { std::remove(path_.c_str()); }
  const std::string& path() const { return path_; }
  nlohmann::json read() const {
    std::ifstream in(path_);
    return nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  }

 private:
  std::string path_;
};

// The backend under test (TERN_TEST_IO), or empty for loadgen's default.
std::string testIo() {
  const char* io = std::getenv("TERN_TEST_IO");
  return io != nullptr ? io : "";
}

std::vector<std::string> loadgen(std::uint16_t port, std::vector<std::string> extra) {
  std::vector<std::string> argv{TERN_LOADGEN_BIN, "--port", std::to_string(port)};
  if (!testIo().empty()) argv.insert(argv.end(), {"--io", testIo()});
  argv.insert(argv.end(), extra.begin(), extra.end());
  return argv;
}

TEST(LoadgenSmoke, CleanRunAccountsForEveryMessage) {
  BrokerProcess broker({"--workers", "2"});
  TempJson json;
  const RunResult run =
      runProcess(loadgen(broker.port(), {"--clients", "50", "--rate", "2k", "--duration", "2",
                                         "--warmup", "0.5", "--json", json.path()}),
                 {}, Millis(60000));
  ASSERT_EQ(run.exitCode, 0) << run.out << run.err;
  const nlohmann::json report = json.read();
  ASSERT_TRUE(report.is_object()) << "no JSON report";
  EXPECT_EQ(report["ready"], 50);
  EXPECT_EQ(report["failed_handshakes"], 0);
  EXPECT_GT(report["sent"].get<std::uint64_t>(), 0u);
  EXPECT_EQ(report["acked"], report["sent"]);
  // Fanout 1: every publish is expected once, at the next client.
  EXPECT_EQ(report["expected"], report["sent"]);
  EXPECT_EQ(report["delivered"], report["expected"]);
  EXPECT_EQ(report["lost"], 0);
  EXPECT_EQ(report["duplicated"], 0);
  EXPECT_EQ(report["reordered"], 0);
  EXPECT_EQ(report["errors"]["total"], 0);
  EXPECT_GT(report["latency_us"]["count"].get<std::uint64_t>(), 0u);
  EXPECT_EQ(report["options"]["clients"], 50);
  EXPECT_EQ(report["options"]["rate"], 2000.0);
  // The report names the backend that ran: the one asked for, or what --io auto found.
  if (testIo() == "epoll") {
    EXPECT_EQ(report["io"], "epoll");
  } else if (testIo() == "uring") {
    EXPECT_EQ(report["io"], "io_uring");
  }
  EXPECT_TRUE(report["io"] == "io_uring" || report["io"] == "epoll") << report["io"];
  // The human summary on stdout says the same.
  EXPECT_NE(run.out.find("result     clean"), std::string::npos) << run.out;
  // One progress line per second on stderr.
  EXPECT_NE(run.err.find("publish "), std::string::npos) << run.err;
}

// Every QoS over MQTT: one connection per client that publishes and subscribes, plus wildcard
// subscribers; nothing lost, duplicated or reordered, and the acknowledgements the QoS implies.
TEST(LoadgenMqttSmoke, CleanRunAtEveryQosAccountsForEveryMessage) {
  BrokerProcess broker({"--workers", "2", "--mqtt-port", "auto"});
  ASSERT_NE(broker.mqttPort(), 0);
  // Every QoS in 3.1.1, and in 5.0 (whose PUBLISH carries a property block).
  for (const auto& [protocol, qos] : std::vector<std::pair<std::string, int>>{
           {"mqtt", 0}, {"mqtt", 1}, {"mqtt", 2}, {"mqtt5", 0}, {"mqtt5", 1}, {"mqtt5", 2}}) {
    SCOPED_TRACE(protocol + " QoS " + std::to_string(qos));
    TempJson json;
    const RunResult run =
        runProcess(loadgen(broker.mqttPort(),
                           {"--protocol", protocol, "--qos", std::to_string(qos), "--clients", "30",
                            "--fanout", "2", "--wildcard-subscribers", "2", "--rate", "2k",
                            "--duration", "1.5", "--warmup", "0.5", "--json", json.path()}),
                   {}, Millis(60000));
    ASSERT_EQ(run.exitCode, 0) << run.out << run.err;
    const nlohmann::json report = json.read();
    ASSERT_TRUE(report.is_object()) << "no JSON report";
    EXPECT_EQ(report["ready"], 32);
    EXPECT_EQ(report["options"]["protocol"], protocol);
    EXPECT_EQ(report["options"]["qos"], qos);
    const auto sent = report["sent"].get<std::uint64_t>();
    EXPECT_GT(sent, 0u);
    // QoS 0 has no acknowledgements; QoS 1 and 2 acknowledge every publish (PUBACK, PUBCOMP).
    EXPECT_EQ(report["acknowledged"], qos > 0);
    EXPECT_EQ(report["acked"].get<std::uint64_t>(), qos > 0 ? sent : 0u);
    EXPECT_EQ(report["puback_latency_us"]["count"].get<std::uint64_t>() > 0, qos > 0);
    // Fanout 2 plus 2 wildcard subscribers: four deliveries per publish.
    EXPECT_EQ(report["expected"].get<std::uint64_t>(), 4 * sent);
    EXPECT_EQ(report["delivered"], report["expected"]);
    EXPECT_EQ(report["lost"], 0);
    EXPECT_EQ(report["duplicated"], 0);
    EXPECT_EQ(report["reordered"], 0);
    EXPECT_EQ(report["errors"]["total"], 0);
    EXPECT_TRUE(report["drained"].get<bool>());
    EXPECT_NE(
        run.out.find((protocol == "mqtt5" ? "MQTT 5.0 QoS " : "MQTT QoS ") + std::to_string(qos)),
        std::string::npos)
        << run.out;
  }
}

// MQTT over WebSockets (--websocket against the broker's --ws-port): the same accounting as over
// TCP, at QoS 0 and 1, in 3.1.1 and 5.0.
TEST(LoadgenMqttSmoke, WebSocketRunAccountsForEveryMessage) {
  BrokerProcess broker({"--workers", "2", "--ws-port", "auto"});
  // The harness reads the line-protocol port; the WebSocket listener's line follows it.
  int wsPort = 0;
  for (int i = 0; i < 4 && wsPort == 0; ++i) {
    const auto line = broker.process().readStdoutLine(scaled(Millis(10000)));
    if (!line) break;
    const std::string key = "listening on 127.0.0.1:";
    const std::size_t at = line->find(key);
    if (at != std::string::npos && line->find("(mqtt+ws)") != std::string::npos) {
      wsPort = std::stoi(line->substr(at + key.size()));
    }
  }
  ASSERT_NE(wsPort, 0) << "the broker did not report its WebSocket port";
  for (const auto& [protocol, qos] :
       std::vector<std::pair<std::string, int>>{{"mqtt", 0}, {"mqtt", 1}, {"mqtt5", 1}}) {
    SCOPED_TRACE(protocol + " QoS " + std::to_string(qos));
    TempJson json;
    const RunResult run = runProcess(
        loadgen(static_cast<std::uint16_t>(wsPort),
                {"--protocol", protocol, "--websocket", "--qos", std::to_string(qos), "--clients",
                 "30", "--fanout", "2", "--wildcard-subscribers", "2", "--rate", "2k", "--duration",
                 "1.5", "--warmup", "0.5", "--json", json.path()}),
        {}, Millis(60000));
    ASSERT_EQ(run.exitCode, 0) << run.out << run.err;
    const nlohmann::json report = json.read();
    ASSERT_TRUE(report.is_object()) << "no JSON report";
    EXPECT_EQ(report["ready"], 32);
    EXPECT_EQ(report["failed_handshakes"], 0);
    EXPECT_EQ(report["options"]["websocket"], true);
    const auto sent = report["sent"].get<std::uint64_t>();
    EXPECT_GT(sent, 0u);
    EXPECT_EQ(report["acked"].get<std::uint64_t>(), qos > 0 ? sent : 0u);
    EXPECT_EQ(report["expected"].get<std::uint64_t>(), 4 * sent);
    EXPECT_EQ(report["delivered"], report["expected"]);
    EXPECT_EQ(report["lost"], 0);
    EXPECT_EQ(report["duplicated"], 0);
    EXPECT_EQ(report["reordered"], 0);
    EXPECT_EQ(report["errors"]["total"], 0);
    EXPECT_TRUE(report["drained"].get<bool>());
    EXPECT_NE(run.out.find("over WebSocket"), std::string::npos) << run.out;
  }
}

TEST(LoadgenMqttSmoke, BrokerStoppedHalfwayIsReportedAsLoss) {
  BrokerProcess broker({"--workers", "2", "--mqtt-port", "auto"});
  TempJson json;
  Process run(loadgen(broker.mqttPort(),
                      {"--protocol", "mqtt", "--qos", "1", "--clients", "20", "--rate", "2k",
                       "--duration", "4", "--warmup", "0", "--drain", "1", "--json", json.path()}));
  bool loading = false;
  for (int i = 0; i < 1000 && !loading; ++i) {
    loading = run.drainStderr().find("deliver ") != std::string::npos;
    if (!loading) std::this_thread::sleep_for(Millis(10));
  }
  ASSERT_TRUE(loading) << run.drainStderr();
  EXPECT_EQ(broker.stop(), 0);

  const auto status = run.wait(Millis(30000));
  ASSERT_TRUE(status.has_value()) << "loadgen did not finish after the broker stopped";
  EXPECT_EQ(exitCodeOf(*status), 1) << run.drainStderr();
  const nlohmann::json report = json.read();
  ASSERT_TRUE(report.is_object()) << "no JSON report";
  EXPECT_GT(report["lost"].get<std::uint64_t>(), 0u);
  EXPECT_EQ(report["lost"].get<std::uint64_t>(),
            report["expected"].get<std::uint64_t>() - report["delivered"].get<std::uint64_t>());
  EXPECT_GT(report["unsent"].get<std::uint64_t>(), 0u);
  EXPECT_EQ(report["errors"]["disconnects"], 20);
}

TEST(LoadgenSmoke, BrokerStoppedHalfwayIsReportedAsLoss) {
  BrokerProcess broker({"--workers", "2"});
  TempJson json;
  Process run(loadgen(broker.port(), {"--clients", "50", "--rate", "2k", "--duration", "4",
                                      "--warmup", "0", "--drain", "1", "--json", json.path()}));
  // Wait for the first progress line of the load phase: publishes are flowing.
  bool loading = false;
  for (int i = 0; i < 1000 && !loading; ++i) {
    loading = run.drainStderr().find("deliver ") != std::string::npos;
    if (!loading) std::this_thread::sleep_for(Millis(10));
  }
  ASSERT_TRUE(loading) << run.drainStderr();
  EXPECT_EQ(broker.stop(), 0);

  const auto status = run.wait(Millis(30000));
  ASSERT_TRUE(status.has_value()) << "loadgen did not finish after the broker stopped";
  EXPECT_EQ(exitCodeOf(*status), 1) << run.drainStderr();
  const nlohmann::json report = json.read();
  ASSERT_TRUE(report.is_object()) << "no JSON report";
  EXPECT_GT(report["lost"].get<std::uint64_t>(), 0u);
  EXPECT_EQ(report["lost"].get<std::uint64_t>(),
            report["expected"].get<std::uint64_t>() - report["delivered"].get<std::uint64_t>());
  EXPECT_GT(report["unsent"].get<std::uint64_t>(), 0u);
  EXPECT_EQ(report["errors"]["disconnects"], 50);
  std::string summary;
  while (auto line = run.readStdoutLine(Millis(1000)))
    summary += *line + "\n";
  EXPECT_NE(summary.find("FAILED"), std::string::npos) << summary;
  EXPECT_NE(summary.find(" lost"), std::string::npos) << summary;
}

TEST(LoadgenSmoke, UnreachableBrokerExitsTwo) {
  const ClosedPort closed;
  const RunResult run = runProcess(loadgen(closed.port(), {"--clients", "2", "--rate", "10"}));
  EXPECT_EQ(run.exitCode, 2);
  EXPECT_NE(run.err.find("cannot reach the broker"), std::string::npos) << run.err;
}

TEST(LoadgenSmoke, BadUsageExitsTwo) {
  for (const std::vector<std::string>& args : std::vector<std::vector<std::string>>{
           {"--clients", "10"},                                         // no --rate
           {"--clients", "10", "--rate", "5x"},                         // bad suffix
           {"--clients", "0", "--rate", "10"},                          // no clients
           {"--clients", "10", "--rate", "10", "--fanout", "10"},       // fanout >= clients
           {"--clients", "10", "--rate", "10", "--arrival", "bursty"},  // unknown arrival
           {"--clients", "10", "--rate", "10", "--payload", "8"},       // smaller than the header
           {"--clients", "10", "--rate", "10", "--no-such-option"},
           {"--clients", "10", "--rate", "10", "--protocol", "amqp"},  // unknown protocol
           {"--clients", "10", "--rate", "10", "--qos", "1"},          // QoS without MQTT
           {"--clients", "10", "--rate", "10", "--io", "kqueue"},      // unknown backend
           {"--clients", "10", "--rate", "10", "--protocol", "mqtt", "--qos", "3"},
           {"--clients", "10", "--rate", "10", "--port", "1", "--websocket"},  // line protocol
           {"--clients", "10", "--rate", "10", "--protocol", "mqtt", "--websocket"},  // no --port
           {"--clients", "10", "--rate", "10", "--protocol", "mqtt", "--port", "1", "--ws-path",
            "/mqtt"},  // --ws-path without --websocket
           {"--clients", "10", "--rate", "10", "--protocol", "mqtt", "--port", "1", "--websocket",
            "--ws-path", "mqtt"}}) {  // not a path
    std::vector<std::string> argv{TERN_LOADGEN_BIN};
    argv.insert(argv.end(), args.begin(), args.end());
    const RunResult run = runProcess(argv);
    EXPECT_EQ(run.exitCode, 2) << args.back() << "\n" << run.err;
  }
}

TEST(LoadgenSmoke, HelpDocumentsEveryOptionAndTheWorkload) {
  const RunResult run = runProcess({TERN_LOADGEN_BIN, "--help"});
  EXPECT_EQ(run.exitCode, 0);
  for (const char* option : {"--host",    "--port",         "--clients",
                             "--rate",    "--duration",     "--warmup",
                             "--payload", "--fanout",       "--wildcard-subscribers",
                             "--arrival", "--connect-rate", "--threads",
                             "--json",    "--seed",         "--quiet",
                             "--drain",   "--idle",         "--protocol",
                             "--qos",     "--io",           "--websocket",
                             "--ws-path", "Workload:",      "Exit status"}) {
    EXPECT_NE(run.out.find(option), std::string::npos) << option;
  }
}

}  // namespace
}  // namespace tern::test
