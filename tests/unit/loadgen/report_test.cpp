#include "tern/loadgen/report.hpp"

#include <gtest/gtest.h>

#include "tern/loadgen/options.hpp"

namespace tern::loadgen {
namespace {

Options validOptions() {
  Options options;
  options.clients = 10;
  options.rate = 1000;
  return options;
}

TEST(Options, ValidatesEveryRule) {
  EXPECT_EQ(validOptions().validate(), "");
  const auto invalid = [](auto change) {
    Options options = validOptions();
    change(options);
    return !options.validate().empty();
  };
  EXPECT_TRUE(invalid([](Options& o) { o.clients = 0; }));
  EXPECT_TRUE(invalid([](Options& o) { o.rate = 0; }));
  EXPECT_TRUE(invalid([](Options& o) { o.durationS = 0; }));
  EXPECT_TRUE(invalid([](Options& o) { o.warmupS = -1; }));
  EXPECT_TRUE(invalid([](Options& o) { o.payloadBytes = 39; }));
  EXPECT_TRUE(invalid([](Options& o) { o.payloadBytes = 70'000; }));
  EXPECT_TRUE(invalid([](Options& o) { o.fanout = 10; }));  // would include itself
  EXPECT_TRUE(invalid([](Options& o) { o.port = 0; }));
  EXPECT_TRUE(invalid([](Options& o) { o.connectRate = -1; }));
  EXPECT_TRUE(invalid([](Options& o) { o.idleS = -1; }));
  EXPECT_FALSE(invalid([](Options& o) { o.fanout = 9; }));
  EXPECT_FALSE(invalid([](Options& o) { o.fanout = 0; }));
  // QoS belongs to MQTT: the line protocol acknowledges every publish anyway.
  EXPECT_TRUE(invalid([](Options& o) { o.qos = 1; }));
  EXPECT_TRUE(invalid([](Options& o) {
    o.protocol = Protocol::kMqtt;
    o.qos = 3;
  }));
  for (const std::uint8_t qos : {0, 1, 2}) {
    EXPECT_FALSE(invalid([qos](Options& o) {
      o.protocol = Protocol::kMqtt;
      o.qos = qos;
    }));
  }
}

TEST(Options, ProtocolDecidesPortsSocketsAndAcknowledgements) {
  EXPECT_EQ(parseProtocol("line"), Protocol::kLine);
  EXPECT_EQ(parseProtocol("mqtt"), Protocol::kMqtt);
  EXPECT_EQ(parseProtocol("mqtt5"), Protocol::kMqtt5);
  EXPECT_EQ(parseProtocol("MQTT5"), std::nullopt);
  EXPECT_EQ(protocolName(Protocol::kMqtt5), "mqtt5");
  EXPECT_EQ(defaultPort(Protocol::kLine), 8000);
  EXPECT_EQ(defaultPort(Protocol::kMqtt), 1883);
  EXPECT_EQ(defaultPort(Protocol::kMqtt5), 1883);
  Options options = validOptions();
  EXPECT_EQ(options.socketsPerSession(), 3u);
  EXPECT_TRUE(options.acknowledged());
  options.protocol = Protocol::kMqtt;
  EXPECT_EQ(options.socketsPerSession(), 1u);
  EXPECT_FALSE(options.acknowledged());  // QoS 0
  options.qos = 2;
  EXPECT_TRUE(options.acknowledged());
  EXPECT_EQ(options.toJson()["protocol"], "mqtt");
  EXPECT_EQ(options.toJson()["qos"], 2);
}

TEST(Options, ThreadsNeverExceedSessions) {
  Options options = validOptions();
  options.clients = 3;
  options.threads = 8;
  EXPECT_EQ(effectiveThreads(options), 3u);
  options.wildcardSubscribers = 2;
  EXPECT_EQ(effectiveThreads(options), 5u);
  options.threads = 0;
  EXPECT_GE(effectiveThreads(options), 1u);
}

Report cleanReport() {
  Report report;
  report.options = validOptions().toJson();
  report.sent = report.acked = 100;
  report.expected = report.delivered = 100;
  return report;
}

TEST(Report, ExitStatusFollowsTheCounts) {
  EXPECT_EQ(cleanReport().exitCode(), 0);
  Report lost = cleanReport();
  lost.lost = 1;
  EXPECT_EQ(lost.exitCode(), 1);
  Report duplicated = cleanReport();
  duplicated.duplicated = 1;
  EXPECT_EQ(duplicated.exitCode(), 1);
  Report reordered = cleanReport();
  reordered.reordered = 1;
  EXPECT_EQ(reordered.exitCode(), 1);
  Report errored = cleanReport();
  errored.disconnects = 1;
  EXPECT_EQ(errored.exitCode(), 1);
  Report unacked = cleanReport();
  unacked.unacked = 3;
  EXPECT_EQ(unacked.exitCode(), 1);
  Report unreachable = cleanReport();
  unreachable.unreachable = true;
  EXPECT_EQ(unreachable.exitCode(), 2);
  Report behind = cleanReport();
  behind.behind = 5;  // a measurement-quality warning, not a broker failure
  EXPECT_EQ(behind.exitCode(), 0);
}

TEST(Report, JsonHasTheDocumentedKeys) {
  Report report = cleanReport();
  Histogram histogram;
  for (std::uint64_t v = 1; v <= 1000; ++v)
    histogram.record(v * 1000);  // 1 us .. 1 ms
  report.latency = LatencySummary::fromNanos(histogram);
  const nlohmann::json json = report.toJson();
  for (const char* key : {"sent", "acked", "delivered", "expected", "lost", "duplicated",
                          "reordered", "publish_rate", "delivery_rate", "behind", "connect_s",
                          "loadgen_cpu_s", "loadgen_spin_s", "io", "options"}) {
    EXPECT_TRUE(json.contains(key)) << key;
  }
  for (const char* histogramKey : {"latency_us", "puback_latency_us"}) {
    for (const char* key : {"p50", "p90", "p99", "p999", "p9999", "max"}) {
      EXPECT_TRUE(json[histogramKey].contains(key)) << histogramKey << "." << key;
    }
  }
  EXPECT_NEAR(json["latency_us"]["p50"].get<double>(), 500, 5);
  EXPECT_DOUBLE_EQ(json["latency_us"]["max"].get<double>(), 1000);
  EXPECT_EQ(json["options"]["clients"], 10);
  EXPECT_EQ(json["exit_code"], 0);
}

TEST(Report, HumanSummarySaysWhatFailed) {
  Report report = cleanReport();
  EXPECT_NE(report.toHuman().find("result     clean"), std::string::npos);
  report.lost = 7;
  report.disconnects = 2;
  const std::string text = report.toHuman();
  EXPECT_NE(text.find("FAILED: 7 lost, 2 errors"), std::string::npos) << text;
  EXPECT_NE(text.find("2 disconnects"), std::string::npos) << text;
}

TEST(Report, SaturationVerdictIgnoresPollingForDuePublishes) {
  // A loop that spins for publishes due within microseconds shows 100% CPU while mostly waiting:
  // only the busy part says whether loadgen was the limit.
  Report spinning = cleanReport();
  spinning.measuredS = 10;
  spinning.loadgenCpuS = 10;
  spinning.loadgenCpuUtil = 1.0;
  spinning.loadgenSpinS = 7;
  spinning.loadgenBusyUtil = 0.3;
  const std::string relaxed = spinning.toHuman();
  EXPECT_EQ(relaxed.find("nearly saturated"), std::string::npos) << relaxed;
  EXPECT_NE(relaxed.find("busy 30%"), std::string::npos) << relaxed;
  EXPECT_DOUBLE_EQ(spinning.toJson()["loadgen_spin_s"].get<double>(), 7);
  EXPECT_DOUBLE_EQ(spinning.toJson()["loadgen_busy_util"].get<double>(), 0.3);

  Report busy = spinning;
  busy.loadgenSpinS = 0.2;
  busy.loadgenBusyUtil = 0.98;
  EXPECT_NE(busy.toHuman().find("nearly saturated"), std::string::npos) << busy.toHuman();
}

TEST(Report, QosZeroHasNoAcknowledgementsToReport) {
  Report report = cleanReport();
  Options options = validOptions();
  options.protocol = Protocol::kMqtt;
  report.options = options.toJson();
  report.acknowledged = false;
  report.acked = 0;
  const std::string text = report.toHuman();
  EXPECT_NE(text.find("MQTT QoS 0"), std::string::npos) << text;
  EXPECT_NE(text.find("not acknowledged"), std::string::npos) << text;
  EXPECT_EQ(text.find("puback"), std::string::npos) << text;
  EXPECT_NE(text.find("result     clean"), std::string::npos) << text;
  EXPECT_EQ(report.toJson()["acknowledged"], false);
}

TEST(Report, CdfRisesToTheMaxWithFinerTailSteps) {
  Histogram histogram;
  for (std::uint64_t v = 1; v <= 100'000; ++v)
    histogram.record(v * 100);
  const auto cdf = LatencySummary::cdfMicros(histogram);
  ASSERT_GE(cdf.size(), 20u);
  EXPECT_EQ(cdf.front().first, 0);
  EXPECT_EQ(cdf.back().first, 100);
  EXPECT_DOUBLE_EQ(cdf.back().second, 10'000);  // the exact max, in us
  for (std::size_t i = 1; i < cdf.size(); ++i) {
    EXPECT_GT(cdf[i].first, cdf[i - 1].first);
    EXPECT_GE(cdf[i].second, cdf[i - 1].second);
  }
  EXPECT_GT(cdf[cdf.size() - 2].first, 99.999);
  EXPECT_TRUE(LatencySummary::cdfMicros(Histogram()).empty());
}

TEST(Report, FormatsDurations) {
  EXPECT_EQ(formatMicros(412), "412us");
  EXPECT_EQ(formatMicros(3210), "3.21ms");
  EXPECT_EQ(formatMicros(1'520'000), "1.52s");
}

}  // namespace
}  // namespace tern::loadgen
