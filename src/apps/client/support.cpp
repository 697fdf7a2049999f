#include <poll.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>

#include "client_app.hpp"
#include "tern/client/frames.hpp"

namespace tern::client::app {

SessionOptions sessionOptions(const CommandLine& commandLine) {
  SessionOptions options;
  options.host = commandLine.connection.host;
  options.port = commandLine.connection.port;
  const double ms = std::ceil(commandLine.connection.timeoutSeconds * 1000.0);
  options.timeout = std::chrono::milliseconds(static_cast<long long>(std::max(ms, 1.0)));
  options.requestSocket = commandLine.lineMode.requestSocket;
  options.tls = commandLine.connection.tlsContext;
  if (options.tls) options.tlsServerName = commandLine.connection.effectiveTlsServerName();
  return options;
}

std::string connectFrame(const std::string& clientId, const ConnectionOptions& connection) {
  return connectWithCredentials(clientId.empty() ? std::string("CONNECT") : "CONNECT@" + clientId,
                                connection.username, connection.password);
}

ExitCode exitCodeFor(SessionStatus status) noexcept {
  switch (status) {
    case SessionStatus::kOk:
      return ExitCode::kOk;
    case SessionStatus::kUnreachable:
      return ExitCode::kUsage;
    default:
      return ExitCode::kFailed;
  }
}

bool Output::flush() {
  std::size_t done = 0;
  while (!failed_ && done < buffer_.size()) {
    const ssize_t n = ::write(fd_, buffer_.data() + done, buffer_.size() - done);
    if (n > 0) {
      done += static_cast<std::size_t>(n);
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      pollfd writable{fd_, POLLOUT, 0};  // a descriptor someone else made non-blocking
      ::poll(&writable, 1, -1);
    } else {
      failed_ = true;
    }
  }
  buffer_.clear();
  return !failed_;
}

void printError(Output& out, std::string_view text) {
  out.flush();
  Output err(STDERR_FILENO);
  err.line(text);
  err.flush();
}

SessionStatus endSession(Session& session, SessionListener& listener) {
  if (session.state() == Session::State::kOpen) {
    if (SessionStatus s = session.send("DISCONNECT"); s != SessionStatus::kOk) return s;
  }
  while (session.state() != Session::State::kClosed) {
    if (session.state() == Session::State::kOpen && session.pendingReplies() == 0) {
      session.close();  // DISCONNECT was answered with something else than DISCONNACK
      return SessionStatus::kRejected;
    }
    if (SessionStatus s = session.poll(-1, {}, listener); s != SessionStatus::kOk) return s;
  }
  return SessionStatus::kOk;
}

std::string describeFailure(const Session& session, SessionStatus status) {
  return status == SessionStatus::kRejected ? "DISCONNECT was not answered with DISCONNACK"
                                            : session.lastError();
}

}  // namespace tern::client::app
