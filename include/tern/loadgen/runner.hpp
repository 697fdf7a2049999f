// Runner: one loadgen run, from resolving the broker to the final Report.
//
// The calling thread coordinates: it starts one Worker thread per --threads (sessions dealt by
// dealSessions), waits until every session is connected and subscribed, fixes the start time and
// the measured window, prints a progress line per second, waits the bounded drain time for late
// acknowledgements and deliveries, stops and joins the workers, and merges their counters and
// histograms. Workers share nothing per message; see worker.hpp and run_control.hpp.
//
// Start-up helpers return error text (empty on success) instead of throwing, so that the command
// line tool can turn them into exit status 2.
#pragma once

#include <sys/socket.h>

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "tern/loadgen/options.hpp"
#include "tern/loadgen/report.hpp"
#include "tern/loadgen/session.hpp"
#include "tern/loadgen/workload.hpp"

namespace tern::loadgen {

struct BrokerAddress {
  sockaddr_storage address{};
  socklen_t length = 0;
  std::string error;  // empty when resolved
};

// Resolves host (name or numeric, IPv4 or IPv6) and port to the first address getaddrinfo gives.
BrokerAddress resolveBroker(const std::string& host, std::uint16_t port);

// Opens and closes one TCP connection within `timeoutMs`: the broker is listening. Returns the
// reason when it is not.
std::string probeBroker(const BrokerAddress& broker, int timeoutMs);

// Raises RLIMIT_NOFILE to at least `needed` descriptors (the hard limit too, when privileged).
// Returns the reason when it cannot.
std::string raiseDescriptorLimit(std::uint64_t needed);

// Which sessions each of `threads` worker threads owns: publishing clients in contiguous blocks
// (client i's receivers i+1..i+K then mostly share its thread), wildcard subscribers round-robin,
// threads without a publisher first. Every thread gets at least one session when
// threads <= workload.sessions(). A session's schedule does not depend on its thread.
std::vector<std::vector<std::uint32_t>> dealSessions(const Workload& workload,
                                                     std::uint32_t threads);

// Descriptors a run with `options` needs: three per session plus the workers' own.
std::uint64_t descriptorsNeeded(const Options& options) noexcept;

class Runner {
 public:
  // REQUIRES: options.validate() is empty; broker resolved; `tls` made from the options
  // (makeTlsContext) when options.tls, else null.
  Runner(Options options, BrokerAddress broker, SessionFactory factory,
         std::shared_ptr<const net::TlsContext> tls = nullptr);

  // Runs to completion. Progress lines go to `progress` unless options.quiet or it is null. When
  // `*interrupt` becomes true (a signal handler may set it), the load ends there and the run
  // drains and reports as usual. Throws (std::system_error, std::runtime_error) only when threads
  // or event loops cannot be created, e.g. io_uring asked for (--io uring) where it is refused.
  Report run(std::FILE* progress, const std::atomic<bool>* interrupt = nullptr);

 private:
  Options options_;
  BrokerAddress broker_;
  SessionFactory factory_;
  std::shared_ptr<const net::TlsContext> tls_;
};

}  // namespace tern::loadgen
