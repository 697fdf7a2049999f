// Worker: one loadgen thread, its net::EventLoop (io_uring or epoll, --io) and the simulated
// clients it owns.
//
// A worker opens its sessions (paced by --connect-rate, at most kMaxHandshakes at a time),
// subscribes them, reports itself settled, waits for the start time, then runs every client's
// schedule. One iteration of the load loop: issue every publish due by now, in intended-time
// order from a min-heap (each appended to its session's output and flushed), then one turn of the
// loop (runOnce), which sends every flushed socket (io_uring: in one submission), waits until the
// next publish is nearly due (or polls, runOnce(0), when it is due within kSpinNs; see
// worker.cpp), and hands the acknowledgements and deliveries that arrived to the sessions, which
// report them here to be checked and timed.
// A client whose socket the broker stops reading (or whose session cannot number another publish:
// Session::canPublish) is parked (its schedule stops advancing) and resumes where it left off, so
// the late publishes keep their intended times.
//
// Threading: everything here belongs to the worker's thread, except live() (atomics, see
// run_control.hpp), copyLatencySnapshot() (a mutex the worker takes every 250 ms) and the
// accessors marked "after join". The loop is made by the constructor (on the runner's thread) and
// used only by run() from then on.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "run_control.hpp"
#include "tern/loadgen/histogram.hpp"
#include "tern/loadgen/options.hpp"
#include "tern/loadgen/schedule.hpp"
#include "tern/loadgen/sequence_tracker.hpp"
#include "tern/loadgen/session.hpp"
#include "tern/loadgen/workload.hpp"
#include "tern/net/event_loop.hpp"
#include "tern/sync/thread_owner.hpp"

namespace tern::loadgen {

// What all workers share, read-only for the whole run.
struct WorkerPlan {
  const Options* options = nullptr;
  const Workload* workload = nullptr;
  SessionFactory factory = nullptr;
  sockaddr_storage broker{};
  socklen_t brokerLength = 0;
  // Bind sockets to 127.0.0.1..127.0.0.16 in turn (more loopback sockets than one source address
  // has ephemeral ports).
  bool spreadSources = false;
  std::string clientIdPrefix;  // "lg-<run id>-"
  // TLS on every socket (--tls; null: plain TCP) and the credentials of every CONNECT.
  std::shared_ptr<const net::TlsContext> tls;
};

class Worker final : public SessionHost, private net::EventLoopHandler {
 public:
  // Owns `sessions` (global session indices). Creates the event loop with the backend
  // plan.options->io asks for; throws std::runtime_error when it cannot (start-up: --io uring
  // where the kernel refuses io_uring, or out of descriptors).
  Worker(const WorkerPlan& plan, RunControl& control, std::vector<std::uint32_t> sessions);
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  // The thread body: runs until control.stop.
  void run();

  // The backend this worker's loop runs on, and why it is not the one asked for (--io auto where
  // io_uring is refused; empty otherwise). Constant after construction.
  net::IoBackend backend() const noexcept { return backend_; }
  const std::string& fallbackReason() const noexcept { return fallbackReason_; }

  LiveCounters& live() noexcept { return live_; }
  // Copies the measured-window latency histogram as of the last snapshot. Any thread.
  void copyLatencySnapshot(Histogram& into) const;
  // After this worker incremented settledWorkers (read with acquire): its sessions and whether
  // each became ready.
  const std::vector<std::uint32_t>& sessions() const noexcept { return sessionIds_; }
  const std::vector<std::uint8_t>& readyFlags() const noexcept { return readyFlags_; }

  // After join.
  std::uint64_t counter(Counter which) const noexcept { return counters_[which]; }
  const Histogram& latency() const noexcept { return latency_; }
  const Histogram& pubackLatency() const noexcept { return puback_; }
  const Histogram& sendLag() const noexcept { return sendLag_; }
  const Histogram& connectTime() const noexcept { return connect_; }
  std::uint64_t unacknowledged() const noexcept { return unacknowledged_; }
  const std::string& firstFailure() const noexcept { return firstFailure_; }

  // SessionHost: called by this worker's sessions on its thread.
  net::EventLoop& loop() noexcept override { return *loop_; }
  void onConnected(std::uint32_t client, std::int64_t nowNs) override;
  void onSubscribed(std::uint32_t client, std::int64_t nowNs) override;
  void onPubAck(std::uint32_t client, std::int64_t intendedNs,
                std::int64_t nowNs) noexcept override;
  void onMessage(std::uint32_t client, std::string_view topic, std::string_view payload,
                 std::int64_t nowNs) noexcept override;
  void onBrokerError(std::uint32_t client, std::string_view frame) noexcept override;
  void onFailed(std::uint32_t client, SessionFailure failure, std::string_view detail) override;
  void sealBeforeTurn(std::uint32_t client) noexcept override;

 private:
  enum class Stage : std::uint8_t { kIdle, kSetup, kReady, kFailed };

  struct Client {
    std::unique_ptr<Session> session;
    std::uint32_t index = 0;  // global session index
    Stage stage = Stage::kIdle;
    bool parked = false;     // broker not reading: schedule paused
    bool throttled = false;  // late because it was parked, not because loadgen was busy
    bool scheduled = false;  // ready at the start: has a schedule to run
    std::uint32_t receivers = 0;
    std::uint64_t nextSequence = 0;
    std::int64_t startedNs = 0;
    std::size_t trackerOffset = 0;
    Schedule schedule;
    std::string topic;
  };
  struct Due {
    std::int64_t dueNs;
    std::uint32_t client;
  };

  void connectPhase();
  void waitForStart();
  void loadPhase();
  void startSession(std::uint32_t local, std::int64_t nowNs);
  void checkSetupTimeouts(std::int64_t nowNs);
  // Issues the publishes due by `nowNs`; returns true when more are due (the batch limit hit).
  bool issueDue(std::int64_t nowNs);
  void issue(Client& client, std::int64_t intendedNs, std::int64_t nowNs) noexcept;
  void unpark();
  // TLS: has every session that asked encrypt its turn's output (sealBeforeTurn); before runOnce.
  void sealPending() noexcept;
  // One turn of the loop: sends what is flushed, waits up to `timeoutNs` (0: never blocks) and
  // dispatches what arrived. Returns how many socket events it handed to sessions.
  std::uint64_t turn(std::int64_t timeoutNs);
  // net::EventLoopHandler: the callbacks of the sessions' sockets, routed by socketTag.
  void onReceive(net::SocketId id, void* user, std::span<const char> bytes) override;
  void onInputEnd(net::SocketId id, void* user, int error) override;
  void onConnected(net::SocketId id, void* user, int error) override;
  // Calls every live session's tick() once per kTickNs.
  void tickSessions(std::int64_t nowNs);
  void publishLive(std::int64_t nowNs);
  void countUnsent();
  void settleOne();
  void noteFailure(std::string_view text);
  bool measured(std::int64_t timeNs) const noexcept {
    return timeNs >= measureStartNs_ && timeNs < measureEndNs_;
  }

  const WorkerPlan& plan_;
  RunControl& control_;
  sync::ThreadOwner owner_;
  std::unique_ptr<net::EventLoop> loop_;
  net::IoBackend backend_ = net::IoBackend::kEpoll;
  std::string fallbackReason_;
  std::vector<std::uint32_t> sessionIds_;
  std::vector<Client> clients_;
  std::vector<SequenceTracker> trackers_;
  std::vector<std::uint8_t> readyFlags_;
  std::vector<std::uint32_t> parked_;
  std::vector<std::uint32_t> toSeal_;  // clients whose TLS output waits for sealPending()
  std::vector<Due> heap_;
  std::vector<std::string> filterScratch_;
  std::vector<char> payload_;
  std::uint64_t socketEvents_ = 0;  // loop callbacks handed to sessions, for turn()

  std::uint32_t started_ = 0;
  std::uint32_t settled_ = 0;
  std::uint32_t inFlight_ = 0;
  std::uint64_t alive_ = 0;  // sessions ready and not failed
  std::uint64_t unacknowledged_ = 0;
  std::uint32_t loggedFailures_ = 0;
  std::string firstFailure_;
  std::int64_t measureStartNs_ = 0;
  std::int64_t measureEndNs_ = 0;
  std::int64_t nextSnapshotNs_ = 0;
  std::int64_t nextTickNs_ = 0;

  std::array<std::uint64_t, kCounterCount> counters_{};
  Histogram latency_;
  Histogram puback_;
  Histogram sendLag_;
  Histogram connect_;

  mutable std::mutex snapshotMutex_;
  Histogram latencySnapshot_;  // guarded by snapshotMutex_

  LiveCounters live_;
};

}  // namespace tern::loadgen
