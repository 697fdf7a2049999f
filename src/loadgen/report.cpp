#include "tern/loadgen/report.hpp"

#include <fmt/format.h>

#include <vector>

#include "tern/loadgen/rate.hpp"

namespace tern::loadgen {

LatencySummary LatencySummary::fromNanos(const Histogram& histogram) {
  const auto micros = [&](double percent) {
    return static_cast<double>(histogram.valueAtPercentile(percent)) / 1000.0;
  };
  LatencySummary summary;
  summary.count = histogram.count();
  summary.p50 = micros(50);
  summary.p90 = micros(90);
  summary.p99 = micros(99);
  summary.p999 = micros(99.9);
  summary.p9999 = micros(99.99);
  summary.max = static_cast<double>(histogram.max()) / 1000.0;
  summary.mean = histogram.mean() / 1000.0;
  return summary;
}

std::vector<std::pair<double, double>> LatencySummary::cdfMicros(const Histogram& histogram) {
  std::vector<std::pair<double, double>> points;
  if (histogram.count() == 0) return points;
  const auto add = [&](double percent) {
    points.emplace_back(percent,
                        static_cast<double>(histogram.valueAtPercentile(percent)) / 1000.0);
  };
  for (int p = 0; p < 50; p += 10)
    add(p);
  for (double remaining = 50; remaining > 1e-4; remaining /= 2)
    add(100 - remaining);
  add(100);
  return points;
}

nlohmann::json LatencySummary::toJson() const {
  return {{"count", count}, {"p50", p50},     {"p90", p90}, {"p99", p99},
          {"p999", p999},   {"p9999", p9999}, {"max", max}, {"mean", mean}};
}

std::string formatMicros(double micros) {
  if (micros < 1000) return fmt::format("{:.0f}us", micros);
  if (micros < 1'000'000) return fmt::format("{:.2f}ms", micros / 1000);
  return fmt::format("{:.2f}s", micros / 1'000'000);
}

nlohmann::json Report::toJson() const {
  return {
      {"options", options},
      {"run_prefix", runPrefix},
      {"sessions", sessions},
      {"threads", threads},
      {"io", io},
      {"connected", connected},
      {"ready", ready},
      {"failed_handshakes", failedHandshakes},
      {"connect_s", connectS},
      {"setup_s", setupS},
      {"connect_us", connectTime.toJson()},
      {"sent", sent},
      {"acked", acked},
      {"acknowledged", acknowledged},
      {"delivered", delivered},
      {"expected", expected},
      {"lost", lost},
      {"duplicated", duplicated},
      {"reordered", reordered},
      {"behind", behind},
      {"throttled", throttled},
      {"unsent", unsent},
      {"errors",
       {{"unacked", unacked},
        {"disconnects", disconnects},
        {"broker_errors", brokerErrors},
        {"corrupt", corrupt},
        {"unexpected", unexpected},
        {"failed_handshakes", failedHandshakes},
        {"unsent", unsent},
        {"total", errorCount()},
        {"first", firstError}}},
      {"target_rate", targetRate},
      {"measured_s", measuredS},
      {"publish_rate", publishRate},
      {"ack_rate", ackRate},
      {"delivery_rate", deliveryRate},
      {"measured_sent", measuredSent},
      {"measured_acked", measuredAcked},
      {"measured_delivered", measuredDelivered},
      {"latency_us", latency.toJson()},
      {"latency_cdf_us", latencyCdf},
      {"timeline_monotonic_s",
       {{"connect_start", timeline.connectStart},
        {"setup_end", timeline.setupEnd},
        {"load_start", timeline.loadStart},
        {"measure_start", timeline.measureStart},
        {"measure_end", timeline.measureEnd},
        {"stop", timeline.stop}}},
      {"puback_latency_us", pubackLatency.toJson()},
      {"send_lag_us", sendLag.toJson()},
      {"loadgen_cpu_s", loadgenCpuS},
      {"loadgen_cpu_util", loadgenCpuUtil},
      {"loadgen_spin_s", loadgenSpinS},
      {"loadgen_busy_util", loadgenBusyUtil},
      {"drained", drained},
      {"unreachable", unreachable},
      {"interrupted", interrupted},
      {"clean", clean()},
      {"exit_code", exitCode()},
  };
}

namespace {

std::string percentiles(const LatencySummary& s) {
  if (s.count == 0) return "no samples";
  return fmt::format("p50 {}  p90 {}  p99 {}  p99.9 {}  p99.99 {}  max {}", formatMicros(s.p50),
                     formatMicros(s.p90), formatMicros(s.p99), formatMicros(s.p999),
                     formatMicros(s.p9999), formatMicros(s.max));
}

}  // namespace

std::string Report::toHuman() const {
  std::string out;
  auto line = [&out](std::string_view label, const std::string& text) {
    out += fmt::format("{:<11}{}\n", label, text);
  };
  const auto& o = options;
  const std::string protocol = o.value("protocol", std::string("line"));
  line("workload",
       fmt::format("{} clients + {} wildcard subscribers, fanout {}, {}, {}/s {}, {}-byte "
                   "payloads, {} s measured after {} s warm-up, {} threads on {}, topics {}/...",
                   o.value("clients", 0), o.value("wildcard_subscribers", 0), o.value("fanout", 0),
                   (protocol == "mqtt"    ? fmt::format("MQTT QoS {}", o.value("qos", 0))
                    : protocol == "mqtt5" ? fmt::format("MQTT 5.0 QoS {}", o.value("qos", 0))
                                          : std::string("line protocol")) +
                       (o.value("websocket", false) ? " over WebSocket" : ""),
                   formatRate(targetRate), o.value("arrival", std::string()), o.value("payload", 0),
                   o.value("duration_s", 0.0), o.value("warmup_s", 0.0), threads,
                   io.empty() ? std::string("-") : io, runPrefix));
  line("sessions",
       fmt::format("{} of {} ready, {} failed handshakes; connect {:.3f} s, with "
                   "subscriptions {:.3f} s; per session {}",
                   ready, sessions, failedHandshakes, connectS, setupS, percentiles(connectTime)));
  if (unreachable) {
    line("result", "FAILED: the broker could not be reached (no session connected)");
    return out;
  }
  if (acknowledged) {
    line("publishes", fmt::format("sent {}  acked {}  rate {}/s (acks {}/s)", sent, acked,
                                  formatRate(publishRate), formatRate(ackRate)));
  } else {
    line("publishes", fmt::format("sent {}  rate {}/s (QoS 0: not acknowledged)", sent,
                                  formatRate(publishRate)));
  }
  line("deliveries", fmt::format("expected {}  delivered {}  lost {}  duplicated {}  reordered {}"
                                 "  rate {}/s{}",
                                 expected, delivered, lost, duplicated, reordered,
                                 formatRate(deliveryRate), drained ? "" : "  (drain timed out)"));
  line("latency", percentiles(latency) + "  (end to end, from the intended send time)");
  if (acknowledged) {
    line(protocol == "mqtt" && o.value("qos", 0) == 2 ? "pubcomp" : "puback",
         percentiles(pubackLatency));
  }
  line("send lag", fmt::format("{}; behind {}, throttled by the broker {}, never sent {}",
                               percentiles(sendLag), behind, throttled, unsent));
  std::vector<std::string> errors;
  const auto add = [&errors](std::uint64_t n, std::string_view what) {
    if (n != 0) errors.push_back(fmt::format("{} {}", n, what));
  };
  add(failedHandshakes, "failed handshakes");
  add(disconnects, "disconnects");
  add(unacked, "unacknowledged publishes");
  add(brokerErrors, "broker errors");
  add(corrupt, "corrupt payloads");
  add(unexpected, "unexpected deliveries");
  add(unsent, "publishes never sent");
  line("errors", errors.empty() ? std::string("none") : fmt::format("{}", fmt::join(errors, ", ")));
  if (!firstError.empty()) line("", "first: " + firstError);
  std::string verdict;
  if (loadgenBusyUtil > 0.9) {
    verdict = ": loadgen's threads were nearly saturated, so loadgen may be the limit";
  } else if (sent != 0 && behind * 100 > sent) {
    verdict = ": more than 1% of publishes left late by loadgen's own delay";
  }
  line("loadgen", fmt::format("CPU {:.2f} s over {:.2f} s measured ({:.0f}% of {} threads; "
                              "busy {:.0f}% without the polling for due publishes){}",
                              loadgenCpuS, measuredS, loadgenCpuUtil * 100, threads,
                              loadgenBusyUtil * 100, verdict));
  if (interrupted) line("", "interrupted: the measured window ended early");
  if (clean()) {
    line("result", "clean");
  } else {
    std::vector<std::string> why;
    const auto reason = [&why](std::uint64_t n, std::string_view what) {
      if (n != 0) why.push_back(fmt::format("{} {}", n, what));
    };
    reason(lost, "lost");
    reason(duplicated, "duplicated");
    reason(reordered, "reordered");
    reason(errorCount(), "errors");
    if (interrupted && sent == 0) why.emplace_back("interrupted before the load started");
    line("result", fmt::format("FAILED: {}", fmt::join(why, ", ")));
  }
  return out;
}

}  // namespace tern::loadgen
