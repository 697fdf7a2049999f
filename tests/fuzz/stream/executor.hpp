// Executor: runs one Case against a live broker over loopback.
//
// It judges nothing: what the broker answers, closes or resets is the broker's business, and the
// liveness probe (probe.hpp) decides afterwards whether the broker survived. Its job is to play
// the actions faithfully and within bounds:
//   - at most kMaxConnections sockets, all closed when the case ends;
//   - pauses and split gaps capped at kMaxCasePauseMillis per case, every socket call bounded
//     by the case deadline (kCaseBudget times the timeout scale), after which the remaining
//     actions are skipped;
//   - token:K pieces replaced by the token the case captured in slot K (a CONNACK read by a
//     `read ... token K` action), or by a forged token while the slot is empty.
//
// Single-threaded; one Executor per broker.
#pragma once

#include <array>
#include <cstdint>
#include <string>

#include "case.hpp"
#include "socket_io.hpp"

namespace tern::fuzz {

struct Endpoints {
  std::uint16_t linePort = 0;
  std::uint16_t mqttPort = 0;
};

struct ExecutorStats {
  std::uint64_t cases = 0;
  std::uint64_t connections = 0;      // connections opened
  std::uint64_t connectFailures = 0;  // refused or timed out
  std::uint64_t bytesSent = 0;
  std::uint64_t actionsSkipped = 0;  // skipped because the case ran out of time
};

class Executor {
 public:
  // Upper bound on one case's running time, before the timeout scale.
  static constexpr Millis kCaseBudget{3000};

  Executor(Endpoints endpoints, double timeoutScale) noexcept
      : endpoints_(endpoints),
        budget_(static_cast<Millis::rep>(kCaseBudget.count() * timeoutScale)) {}

  // Plays `c` and closes every socket it opened.
  void run(const Case& c);

  const ExecutorStats& stats() const noexcept { return stats_; }

 private:
  struct Connection {
    Socket socket;
    Port port = Port::kLine;
    bool writable = false;  // not half-closed, no send error
    bool readable = false;  // no EOF or error seen
    std::string partial;    // line connections: the bytes after the last LF read (bounded)
    std::string token;      // line connections: the token of the last CONNACK read
  };

  void open(Connection& conn, Port port, Clock::time_point deadline);
  void send(Connection& conn, const Action& a, Clock::time_point deadline);
  void read(Connection& conn, const Action& a, Clock::time_point deadline);
  // Reads once (waiting until `until`) and scans the line connection's input for CONNACK.
  void readOnce(Connection& conn, Clock::time_point until);
  void sleepFor(std::uint32_t millis, Clock::time_point deadline);

  Endpoints endpoints_;
  Millis budget_;
  ExecutorStats stats_;
  std::array<Connection, kMaxConnections> connections_;
  std::string tokens_[kTokenSlots];
  std::uint32_t pausedMillis_ = 0;  // this case's pauses and gaps so far
};

}  // namespace tern::fuzz
