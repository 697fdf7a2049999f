// Report: the result of a loadgen run, as a human summary and as JSON.
//
// Counts (sent .. reordered, errors) cover the whole run including the warm-up, so that every
// publish is accounted for; rates and latency percentiles cover the measured window only
// (publishes whose intended send time falls in it). Latencies are measured from the intended send
// time, so time a stalled broker or a busy loadgen made a publish wait is included.
//
// Accounting: expected = sum over publishes of the sessions subscribed to them, for every publish
// sent and every publish due before the end that could not be sent (`unsent`: its session died,
// or the broker stopped reading until the end). lost = expected - (delivered - duplicated). So a
// broker that dies halfway shows everything it did not deliver as lost.
//
// A plain value: built by the runner after its workers have stopped, then read by anyone.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "tern/loadgen/histogram.hpp"

namespace tern::loadgen {

// Percentiles of a histogram of nanoseconds, in microseconds.
struct LatencySummary {
  std::uint64_t count = 0;
  double p50 = 0;
  double p90 = 0;
  double p99 = 0;
  double p999 = 0;
  double p9999 = 0;
  double max = 0;
  double mean = 0;

  static LatencySummary fromNanos(const Histogram& histogram);
  // (percentile, microseconds) pairs: every 10% up to 50%, then halving the remaining distance
  // to 100% (75, 87.5, ...) down to 1e-6, then 100 (the max).
  static std::vector<std::pair<double, double>> cdfMicros(const Histogram& histogram);
  nlohmann::json toJson() const;
};

struct Report {
  nlohmann::json options;  // Options::toJson()
  std::string runPrefix;
  std::uint32_t sessions = 0;
  std::uint32_t threads = 0;
  std::string io;  // the backend the threads ran on: "io_uring" or "epoll" (--io auto picks one)

  // Connecting.
  std::uint64_t connected = 0;
  std::uint64_t ready = 0;
  std::uint64_t failedHandshakes = 0;
  double connectS = 0;  // from the first connect until every handshake completed
  double setupS = 0;    // ... until every session was subscribed (or failed)
  LatencySummary connectTime;

  // Counts over the whole run.
  bool acknowledged = true;  // the protocol acknowledges publishes (not MQTT QoS 0)
  std::uint64_t sent = 0;
  std::uint64_t acked = 0;
  std::uint64_t delivered = 0;
  std::uint64_t expected = 0;
  std::uint64_t lost = 0;
  std::uint64_t duplicated = 0;
  std::uint64_t reordered = 0;
  std::uint64_t behind = 0;
  std::uint64_t throttled = 0;
  std::uint64_t unsent = 0;  // due before the end, never sent

  // Errors over the whole run.
  std::uint64_t unacked = 0;
  std::uint64_t disconnects = 0;
  std::uint64_t brokerErrors = 0;
  std::uint64_t corrupt = 0;
  std::uint64_t unexpected = 0;
  std::string firstError;

  // The measured window.
  double targetRate = 0;
  double measuredS = 0;
  double publishRate = 0;
  double ackRate = 0;
  double deliveryRate = 0;
  LatencySummary latency;
  LatencySummary pubackLatency;
  LatencySummary sendLag;
  std::uint64_t measuredSent = 0;       // publishes issued within the measured window
  std::uint64_t measuredAcked = 0;      // PUBACKs received within it
  std::uint64_t measuredDelivered = 0;  // deliveries received within it
  // Distribution of `latency` for plots: (percentile, microseconds) from 0 to 100 with ever finer
  // steps towards the tail (HdrHistogram's percentile ticks).
  std::vector<std::pair<double, double>> latencyCdf;
  // Phase boundaries in CLOCK_MONOTONIC seconds (the clock of Python's time.monotonic()), so that
  // scripts can line up their own samples of the broker (CPU time, RSS) with the run.
  struct Timeline {
    double connectStart = 0;  // first session opened
    double setupEnd = 0;      // every session subscribed (or failed)
    double loadStart = 0;     // first intended publish (after --idle)
    double measureStart = 0;  // end of warm-up
    double measureEnd = 0;    // end of the measured window (or when every session was gone)
    double stop = 0;          // end of the drain
  } timeline;
  double loadgenCpuS = 0;      // loadgen's CPU time over the measured window
  double loadgenCpuUtil = 0;   // that, as a fraction of `threads` cores
  double loadgenSpinS = 0;     // of loadgenCpuS, polling idle for a publish about to fall due
  double loadgenBusyUtil = 0;  // (loadgenCpuS - loadgenSpinS) as a fraction of `threads` cores
  bool drained = false;        // every ack and delivery arrived before the drain time ran out
  bool unreachable = false;    // not one session could connect
  bool interrupted = false;    // the user ended the run early (the window is shorter)

  std::uint64_t errorCount() const noexcept {
    return failedHandshakes + unacked + disconnects + brokerErrors + corrupt + unexpected + unsent;
  }
  bool clean() const noexcept {
    // Interrupted before the load started: nothing was measured, so nothing is known to be clean.
    return !unreachable && !(interrupted && sent == 0) && lost == 0 && duplicated == 0 &&
           reordered == 0 && errorCount() == 0;
  }
  // 0 clean, 1 lost/duplicated/reordered/errored, 2 broker unreachable.
  int exitCode() const noexcept { return unreachable ? 2 : (clean() ? 0 : 1); }

  nlohmann::json toJson() const;
  std::string toHuman() const;
};

// "412us", "3.21ms", "1.52s": a duration given in microseconds, for humans.
std::string formatMicros(double micros);

}  // namespace tern::loadgen
