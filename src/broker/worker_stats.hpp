// WorkerStats: the counters of one worker, read by STATS from any worker.
//
// Ownership: embedded in its Worker. Threads: only the owning worker writes (so a plain load+store
// replaces a locked read-modify-write); any thread reads. Relaxed order everywhere: these are
// statistics, and a reader that sees a slightly stale value is fine. The struct is cache-aligned so
// that two workers' counters never share a line.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>

#include "tern/common/cache_line.hpp"
#include "tern/common/latency_histogram.hpp"

namespace tern::broker {

struct alignas(common::kCacheLine) WorkerStats {
  std::atomic<std::int64_t> sessions{0};      // live sessions owned by this worker
  std::atomic<std::int64_t> mqttSessions{0};  // of which MQTT
  std::atomic<std::int64_t> sockets{0};       // open sockets owned by this worker
  std::atomic<std::int64_t> mqttSockets{0};   // of which MQTT
  std::atomic<std::uint64_t> received{0};     // publishes parsed by this worker
  std::atomic<std::uint64_t> delivered{0};    // frames queued to subscribers' push sockets
  std::atomic<std::uint64_t> dropped{0};      // deliveries not made, for any of the reasons below
  std::atomic<std::uint64_t> connections{0};  // sockets ever opened on (or handed to) this worker
  // Bytes of connection read/write buffers still held after the last idle-buffer sweep (once a
  // second): the memory that pending input and output take, 0 when every connection is idle.
  std::atomic<std::uint64_t> bufferBytes{0};
  // What this worker's account holds (buffers, queued MQTT messages, sliced work), published once
  // per loop turn for the broker-wide memory limit.
  std::atomic<std::int64_t> memoryBytes{0};
  // MQTT messages waiting in sessions' queues (not yet in flight), online or offline.
  std::atomic<std::int64_t> queuedMessages{0};
  // Bytes from and to the network (TLS: ciphertext). Sent is the loop's count, published once per
  // loop turn.
  std::atomic<std::uint64_t> bytesReceived{0};
  std::atomic<std::uint64_t> bytesSent{0};
  // The loop's time asleep (waiting for events with nothing to do), for its utilisation. Both are
  // monotonic ns. `startedAt` is set once, before the loop's first sleep. `sleepState` is the
  // sum of finished sleeps and whether one is going on, in one word so that a reader never sees
  // half of an update: 2 * idle while awake; 2 * (idle - start of the current sleep) + 1 while
  // asleep. Monotonic ns since boot stay far below 2^62, so neither form overflows.
  std::atomic<std::int64_t> startedAt{0};
  std::atomic<std::int64_t> sleepState{0};

  // Why deliveries were dropped (their sum is `dropped`); docs/limits.md.
  std::atomic<std::uint64_t> droppedQueueFull{0};   // the session's queue or socket was full
  std::atomic<std::uint64_t> droppedUnframable{0};  // the line protocol cannot frame it
  std::atomic<std::uint64_t> droppedMemory{0};      // the broker-wide memory limit was reached
  std::atomic<std::uint64_t> droppedExpired{0};     // MQTT 5.0 Message Expiry Interval passed
  std::atomic<std::uint64_t> droppedTooLarge{0};  // above the MQTT 5.0 client's Maximum Packet Size
  // Publishes not accepted (from clients of this worker).
  std::atomic<std::uint64_t> refusedSysTopic{0};  // to a $SYS topic, which is the broker's
  std::atomic<std::uint64_t> refusedRetained{0};  // not retained: the retained store is full
  // Limits reached, each counted once per refusal.
  std::atomic<std::uint64_t> refusedSessions{0};       // --max-sessions (or a worker's slots)
  std::atomic<std::uint64_t> refusedSubscriptions{0};  // --max-subscriptions
  // CONNECTs refused by --password-file / --allow-anonymous.
  std::atomic<std::uint64_t> refusedAuth{0};
  std::atomic<std::uint64_t> tlsHandshakes{0};  // TLS handshakes completed
  std::atomic<std::uint64_t> tlsFailures{0};    // TLS connections closed by a TLS error
  std::atomic<std::uint64_t> wsHandshakes{0};   // WebSocket upgrades accepted
  std::atomic<std::uint64_t> wsRefused{0};      // WebSocket upgrades refused (an HTTP 4xx)
  // Publishes, subscriptions and wills refused by --acl-file.
  std::atomic<std::uint64_t> refusedAcl{0};
  std::atomic<std::uint64_t> closedFrameTimeout{0};     // --frame-timeout
  std::atomic<std::uint64_t> closedKeepAlive{0};        // MQTT keep-alive expired
  std::atomic<std::uint64_t> closedAwaitingRelease{0};  // --max-awaiting-rel
  std::atomic<std::uint64_t> expiredSessions{0};        // --session-expiry
  // Loop turns that handled input or deliveries: from the moment the loop's wait returned (or
  // the turn began, when it did not wait) to the end of the turn. What a delivery made in that
  // turn waited before its write, which is the first thing the next turn does.
  common::LatencyHistogram turnLatency;
  // Batches of deliveries from other workers: from the publishing worker's post to this
  // worker's handling of them (the wake-up included).
  common::LatencyHistogram inboxWait;

  // Owner thread only.
  template <typename T>
  static void add(std::atomic<T>& counter, T delta) noexcept {
    counter.store(counter.load(std::memory_order_relaxed) + delta, std::memory_order_relaxed);
  }

  // Owner thread only: the loop is about to block (startSleep), or woke up (endSleep). Release:
  // a reader that sees the new state also sees what the owner did before (in tests, the clock
  // value it read).
  void startSleep(std::int64_t now) noexcept {
    const std::int64_t state = sleepState.load(std::memory_order_relaxed);
    if (state & 1) return;
    sleepState.store(state - 2 * now + 1, std::memory_order_release);
  }
  void endSleep(std::int64_t now) noexcept {
    const std::int64_t state = sleepState.load(std::memory_order_relaxed);
    if (!(state & 1)) return;
    sleepState.store(state - 1 + 2 * now, std::memory_order_release);
  }
  // Any thread: nanoseconds the loop was not asleep since it started, up to now (`clock()`, a
  // monotonic time in ns). The state is read before and after the clock, and read again when it
  // changed in between (a sleep began or ended): the answer is the state at the time the clock
  // gave. Without the second read, a sleep that began before the clock read would count as busy
  // until the next call, and the counter would go back. A caller that needs a counter that never
  // decreases still keeps the largest value it reported: a real clock is not ordered with the
  // loads, so two calls at a sleep's edge may disagree by a few nanoseconds.
  template <typename Clock>
  std::int64_t busyNanos(Clock&& clock) const noexcept {
    const std::int64_t started = startedAt.load(std::memory_order_acquire);
    if (started == 0) return 0;
    std::int64_t state = sleepState.load(std::memory_order_acquire);
    for (;;) {
      const std::int64_t now = clock();
      const std::int64_t again = sleepState.load(std::memory_order_acquire);
      if (again != state) {
        state = again;
        continue;
      }
      // Asleep: idle so far = (idle - start) + now. The state is even or odd, never both, so
      // (state - 1) / 2 is exact when odd.
      const std::int64_t asleep = (state & 1) ? (state - 1) / 2 + now : state / 2;
      return std::max<std::int64_t>(0, now - started - asleep);
    }
  }
};

}  // namespace tern::broker
