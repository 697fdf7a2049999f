#include "metrics_server.hpp"

#include <microhttpd.h>
#include <unistd.h>

#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <string_view>

#include "metrics.hpp"
#include "tern/common/clock.hpp"
#include "tern/common/log.hpp"
#include "tern/common/metrics_text.hpp"

namespace tern::broker {
namespace {

MHD_Result reply(MHD_Connection* connection, unsigned status, std::string_view body,
                 std::string_view contentType) {
  MHD_Response* response = MHD_create_response_from_buffer(
      body.size(), const_cast<char*>(body.data()), MHD_RESPMEM_MUST_COPY);
  if (response == nullptr) return MHD_NO;
  MHD_add_response_header(response, MHD_HTTP_HEADER_CONTENT_TYPE, std::string(contentType).c_str());
  if (status == MHD_HTTP_METHOD_NOT_ALLOWED) {
    MHD_add_response_header(response, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
  }
  const MHD_Result queued = MHD_queue_response(connection, status, response);
  MHD_destroy_response(response);
  return queued;
}

MHD_Result onRequest(void* cls, MHD_Connection* connection, const char* url, const char* method,
                     const char*, const char*, std::size_t*, void**) {
  auto& server = *static_cast<MetricsServer*>(cls);
  const std::string_view m(method);
  if (m != MHD_HTTP_METHOD_GET && m != MHD_HTTP_METHOD_HEAD) {
    return reply(connection, MHD_HTTP_METHOD_NOT_ALLOWED, "only GET and HEAD\n", "text/plain");
  }
  if (std::strcmp(url, "/metrics") != 0) {
    return reply(connection, MHD_HTTP_NOT_FOUND, "not found: the metrics are at /metrics\n",
                 "text/plain");
  }
  const std::string body = server.render();
  return reply(connection, MHD_HTTP_OK, body, common::MetricsText::kContentType);
}

// libmicrohttpd's complaints (a malformed request, a header too large) come at a client's
// pace: one line per 10 s at most, with the count.
void onLog(void* cls, const char* format, va_list args) {
  auto& limiter = *static_cast<common::LogLimiter*>(cls);
  const std::uint64_t times = limiter.admit(common::monotonicNanos());
  if (times == 0) return;
  char line[512];
  std::vsnprintf(line, sizeof line, format, args);
  std::size_t n = std::strlen(line);
  while (n > 0 && line[n - 1] == '\n')
    line[--n] = '\0';
  TERN_LOG_WARN("metrics endpoint: {} ({} message(s) since the last such line)", line, times);
}

}  // namespace

MetricsServer::MetricsServer(const BrokerContext& context, int listenFd, double startedAtSeconds)
    : context_(context), startedAt_(startedAtSeconds) {
  // The logger goes first, so that no message of option parsing reaches MHD's own stderr logger.
  daemon_ = MHD_start_daemon(
      MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_AUTO | MHD_USE_ERROR_LOG, 0, nullptr, nullptr,
      &onRequest, this, MHD_OPTION_EXTERNAL_LOGGER, &onLog, &logLimiter_, MHD_OPTION_LISTEN_SOCKET,
      listenFd, MHD_OPTION_CONNECTION_LIMIT, kMaxConnections, MHD_OPTION_CONNECTION_TIMEOUT,
      kIdleTimeoutSeconds, MHD_OPTION_CONNECTION_MEMORY_LIMIT, std::size_t{32 * 1024},
      MHD_OPTION_END);
  if (daemon_ == nullptr) {
    ::close(listenFd);
    throw std::runtime_error("cannot start the metrics endpoint (libmicrohttpd refused)");
  }
}

MetricsServer::~MetricsServer() {
  MHD_stop_daemon(daemon_);
}

std::string MetricsServer::render() {
  return renderMetrics(context_, startedAt_, memory_);
}

}  // namespace tern::broker
