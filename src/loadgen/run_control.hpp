// RunControl: what the runner's main thread and the workers share, and the counters each worker
// publishes for the progress line and the end-of-drain check.
//
// Phases: the main thread sets connectStartNs and starts the workers; each worker opens its
// sessions and, once every one of them is subscribed or has failed, records which ones are ready
// and increments `settledWorkers` (release). The main thread waits for all of them (acquire), fills
// `receiversOf`, the measured window and then `startNs` (release); workers read `startNs`
// (acquire) and with it everything written before. `cutNs` ends the load early; `stop` ends the
// workers' loops.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <vector>

#include "tern/common/cache_line.hpp"

namespace tern::loadgen {

// Per-worker counters. Totals are exact once the worker has been joined.
enum Counter : unsigned {
  kSent,               // publishes handed to a session (each one expected at its receivers)
  kAcked,              // PUBACKs
  kDelivered,          // MESSAGE frames that decoded as this run's payloads
  kExpected,           // sum over sent publishes of their receivers
  kDuplicated,         // deliveries of a sequence already seen (or too late to tell)
  kReordered,          // first deliveries below the highest sequence seen from that publisher
  kGivenUp,            // sequences more than 64 behind their successors: lost so far
  kBehind,             // publishes issued > 1 ms after their intended time by loadgen's own delay
  kThrottled,          // publishes issued > 1 ms late because the broker was not reading
  kUnsent,             // publishes of the schedule never issued (broker not reading until the end)
  kCorrupt,            // MESSAGE frames whose payload does not decode or has the wrong size
  kUnexpected,         // payloads from a publisher the receiver never subscribed to
  kBrokerErrors,       // ERROR replies and unsolicited frames
  kDisconnects,        // sessions lost after they were ready
  kFailedHandshakes,   // sessions that never became ready
  kConnected,          // sessions whose handshake completed
  kReady,              // sessions connected and subscribed
  kMeasuredSent,       // publishes issued within the measured window
  kMeasuredAcked,      // PUBACKs received within the measured window
  kMeasuredDelivered,  // deliveries received within the measured window
  kMeasuredSpinNs,  // ns of the measured window spent polling idle for a publish about to fall due
  kCounterCount,
};

struct alignas(common::kCacheLine) LiveCounters {
  // Written by the owning worker only, read by the main thread for progress lines and the drain
  // check. Relaxed: each value is a monotonic count read for monitoring; the drain check also
  // loads `doneIssuing` with acquire, which orders the counts stored before it.
  std::array<std::atomic<std::uint64_t>, kCounterCount> values{};
  // Sessions of this worker still alive (ready and not failed). Relaxed, same reason.
  std::atomic<std::uint64_t> alive{0};
  // Set (release) after the worker issued its last publish and stored the final kSent/kExpected.
  std::atomic<bool> doneIssuing{false};
  // Last time this worker finished a handshake / a subscription, for connect_s. Relaxed: read
  // after join.
  std::atomic<std::int64_t> lastConnectedNs{0};
};

struct RunControl {
  std::int64_t connectStartNs = 0;  // constant once the workers start
  // The measured window [measureStartNs, measureEndNs) and receiversOf (how many ready sessions
  // receive each client's publishes): written by the main thread before startNs is released.
  std::int64_t measureStartNs = 0;
  std::int64_t measureEndNs = 0;
  std::vector<std::uint32_t> receiversOf;

  // Padded: written by the workers (settledWorkers) and the main thread (the others).
  alignas(common::kCacheLine) std::atomic<std::uint32_t> settledWorkers{0};
  alignas(common::kCacheLine) std::atomic<std::int64_t> startNs{0};
  // Nonzero: the load ends at this time instead of measureEndNs (the user interrupted the run).
  // Relaxed: a worker that sees it an iteration late issues a few more publishes, which are
  // counted like any other.
  std::atomic<std::int64_t> cutNs{0};
  std::atomic<bool> stop{false};
};

}  // namespace tern::loadgen
