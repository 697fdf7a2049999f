// BrokerProcess: the broker under test, as a child process of the fuzzer.
//
// start() forks and execs the broker with stdout on a pipe (the start-up lines give the ports),
// stderr in an unlinked temporary file (never a pipe that could fill up; stderrText() reads it
// back for the artifacts), and stdin on /dev/null. The child gets PR_SET_PDEATHSIG(SIGKILL), so
// even a fuzzer killed with SIGKILL leaves no broker behind; installInterruptHandlers() makes
// SIGINT, SIGTERM and SIGHUP stop the broker by its PID before the fuzzer exits with 130.
//
// One broker per fuzzer process (the interrupt handler knows one PID). Single-threaded.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "socket_io.hpp"

namespace tern::fuzz {

class BrokerProcess {
 public:
  // Which start-up lines to wait for besides "(line protocol)" and "(mqtt)".
  struct Listeners {
    bool tls = false;  // "(line protocol+tls)" and "(mqtt+tls)"
    bool ws = false;   // "(mqtt+ws)"
    bool wss = false;  // "(mqtt+wss)"
  };
  // Starts `path` with `args` and waits up to `timeout` for its "listening on ... (line
  // protocol)" and "... (mqtt)" lines and those `listeners` asks for. Null (with `error` set) if
  // it does not get there.
  static std::unique_ptr<BrokerProcess> start(const std::string& path,
                                              const std::vector<std::string>& args,
                                              Listeners listeners, Millis timeout,
                                              std::string& error);
  BrokerProcess(const BrokerProcess&) = delete;
  BrokerProcess& operator=(const BrokerProcess&) = delete;
  // SIGKILLs and reaps the broker if it still runs.
  ~BrokerProcess();

  pid_t pid() const noexcept { return pid_; }
  std::uint16_t linePort() const noexcept { return linePort_; }
  std::uint16_t mqttPort() const noexcept { return mqttPort_; }
  std::uint16_t lineTlsPort() const noexcept { return lineTlsPort_; }  // 0 without TLS
  std::uint16_t mqttTlsPort() const noexcept { return mqttTlsPort_; }
  std::uint16_t mqttWsPort() const noexcept { return mqttWsPort_; }  // 0 without --ws-port
  std::uint16_t mqttWssPort() const noexcept { return mqttWssPort_; }

  // waitpid(WNOHANG): true while the broker runs. Once it has exited, exitStatus() has the status.
  bool alive();
  std::optional<int> exitStatus() const noexcept { return status_; }
  // SIGTERM, up to `timeout` for it to exit, then SIGKILL. Returns the wait status.
  int stop(Millis timeout);
  // Everything the broker wrote to stderr so far.
  std::string stderrText() const;

 private:
  BrokerProcess() = default;
  bool waitFor(Millis timeout);

  pid_t pid_ = -1;
  int stdout_ = -1;
  int stderr_ = -1;
  std::uint16_t linePort_ = 0;
  std::uint16_t mqttPort_ = 0;
  std::uint16_t lineTlsPort_ = 0;
  std::uint16_t mqttTlsPort_ = 0;
  std::uint16_t mqttWsPort_ = 0;
  std::uint16_t mqttWssPort_ = 0;
  std::optional<int> status_;
};

// "exit code 0", "killed by signal 11 (Segmentation fault)", ...
std::string describeStatus(int status);

// SIGINT, SIGTERM, SIGHUP: stop the registered broker (SIGTERM, then SIGKILL after 3 s), remove
// the paths given to removeOnInterrupt(), say so on stderr and _exit(130). Async-signal-safe.
// Call once, before start().
void installInterruptHandlers();
// A file or empty directory the interrupt handler removes (in the order given: files first,
// then their directory). Up to 16 paths of up to 255 bytes; others are ignored.
void removeOnInterrupt(const std::string& path);

}  // namespace tern::fuzz
