// MetricsServer: the HTTP endpoint Prometheus scrapes (--metrics-port): GET or HEAD /metrics
// answers renderMetrics() in the text exposition format; other paths get 404, other methods 405.
//
// libmicrohttpd (Debian libmicrohttpd-dev) serves it on a thread of its own, so a scrape, a
// slow scraper or a hostile HTTP client never runs on a worker's loop; it holds at most
// kMaxConnections connections, each with a bounded request buffer and an idle timeout.
//
// Ownership: owned by the Broker, created in start() and destroyed before the workers. Threads:
// the constructor and destructor on the Broker's thread; requests on libmicrohttpd's thread.
#pragma once

#include <string>

#include "metrics.hpp"
#include "tern/common/log_limiter.hpp"

struct MHD_Daemon;

namespace tern::broker {

struct BrokerContext;

class MetricsServer {
 public:
  static constexpr unsigned kMaxConnections = 32;
  static constexpr unsigned kIdleTimeoutSeconds = 10;

  // Serves on `listenFd` (a listening socket, whose ownership passes to the server). Throws
  // std::runtime_error when the server cannot start (start-up).
  MetricsServer(const BrokerContext& context, int listenFd, double startedAtSeconds);
  ~MetricsServer();
  MetricsServer(const MetricsServer&) = delete;
  MetricsServer& operator=(const MetricsServer&) = delete;

  // libmicrohttpd's request callback (public for the C callback's sake; not to be called).
  std::string render();

 private:
  const BrokerContext& context_;
  const double startedAt_;
  common::LogLimiter logLimiter_;  // for libmicrohttpd's messages (its thread only)
  MetricsMemory memory_;           // libmicrohttpd's thread only (one thread serves every request)
  MHD_Daemon* daemon_ = nullptr;
};

}  // namespace tern::broker
