// The one-shot verbs: `client pub` and `client sub`, in the style of mosquitto_pub/mosquitto_sub.

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <csignal>
#include <optional>

#include <fmt/format.h>

#include "client_app.hpp"
#include "tern/client/frames.hpp"
#include "tern/client/line_reader.hpp"

namespace tern::client::app {
namespace {

using Clock = std::chrono::steady_clock;

// Listener of `pub`: keeps the last reply, ignores pushes (pub subscribes to nothing).
class ReplyKeeper final : public SessionListener {
 public:
  void onFrame(FrameKind kind, std::string_view frame) override {
    if (kind == FrameKind::kHandshake || kind == FrameKind::kReply) lastReply_.assign(frame);
  }
  const std::string& lastReply() const noexcept { return lastReply_; }

 private:
  std::string lastReply_;
};

// Connects, reporting a failure on stderr. Returns kOk or the exit code of the failure.
ExitCode connectVerb(Session& session, SessionListener& listener, const std::string& clientId,
                     const ConnectionOptions& connection, Output& out) {
  const SessionStatus status = session.connect(connectFrame(clientId, connection), listener);
  if (status == SessionStatus::kOk) return ExitCode::kOk;
  printError(out, "error: " + session.lastError());
  return exitCodeFor(status);
}

// Sends `request` and polls until its reply is in. Returns kOk or why the session broke.
SessionStatus request(Session& session, SessionListener& listener, std::string_view frame) {
  if (SessionStatus s = session.send(frame); s != SessionStatus::kOk) return s;
  while (session.pendingReplies() > 0) {
    if (SessionStatus s = session.poll(-1, {}, listener); s != SessionStatus::kOk) return s;
  }
  return SessionStatus::kOk;
}

// SIGINT and SIGTERM, turned into a readable pipe for the poll loop of `sub`.
class StopSignals {
 public:
  StopSignals() {
    if (::pipe2(fds_, O_NONBLOCK | O_CLOEXEC) != 0) fds_[0] = fds_[1] = -1;
    writeFd_ = fds_[1];
    struct sigaction action {};
    action.sa_handler = [](int) {
      const int savedErrno = errno;
      const char byte = 1;
      [[maybe_unused]] const ssize_t ignored = ::write(writeFd_, &byte, 1);
      errno = savedErrno;
    };
    sigemptyset(&action.sa_mask);
    ::sigaction(SIGINT, &action, &previousInt_);
    ::sigaction(SIGTERM, &action, &previousTerm_);
  }
  ~StopSignals() {
    ::sigaction(SIGINT, &previousInt_, nullptr);
    ::sigaction(SIGTERM, &previousTerm_, nullptr);
    writeFd_ = -1;
    if (fds_[0] >= 0) ::close(fds_[0]);
    if (fds_[1] >= 0) ::close(fds_[1]);
  }
  StopSignals(const StopSignals&) = delete;
  StopSignals& operator=(const StopSignals&) = delete;
  int fd() const noexcept { return fds_[0]; }

 private:
  static inline volatile int writeFd_ = -1;  // read by the handler
  int fds_[2];
  struct sigaction previousInt_ {};
  struct sigaction previousTerm_ {};
};

// Listener of `sub`: prints pushes until the count is reached, keeps the last reply.
class SubPrinter final : public SessionListener {
 public:
  SubPrinter(const SubOptions& options, Output& out) : options_(options), out_(out) {}

  void onFrame(FrameKind kind, std::string_view frame) override {
    if (kind != FrameKind::kPush) {
      lastReply_.assign(frame);
      return;
    }
    const std::optional<Push> push = parsePush(frame);
    if (!push) return;  // PONG or ERROR on the push socket: never asked for
    if (push->retained && options_.skipRetained) return;
    if (countReached()) return;  // what arrives while disconnecting is not asked for
    std::string& buffer = out_.buffer();
    if (options_.verbose) {
      buffer.append(push->topic);
      buffer += ' ';
    }
    buffer.append(push->contents);
    buffer += '\n';
    ++received_;
  }

  bool countReached() const noexcept { return options_.count > 0 && received_ >= options_.count; }
  const std::string& lastReply() const noexcept { return lastReply_; }

 private:
  const SubOptions& options_;
  Output& out_;
  std::uint64_t received_ = 0;
  std::string lastReply_;
};

}  // namespace

int runPub(const CommandLine& commandLine) {
  const PubOptions& options = commandLine.pub;
  Output out(STDOUT_FILENO);
  Outcome outcome;

  std::string frame;
  const std::string_view contents =
      options.source == PubOptions::Source::kMessage ? options.message : std::string_view();
  // For -l the topic is checked with empty contents now and each line when it is read.
  if (PublishCheck check = appendPublish(frame, options.topic, contents, options.retain);
      check != PublishCheck::kOk) {
    printError(out, "error: " + std::string(describe(check)));
    return static_cast<int>(ExitCode::kUsage);
  }

  Session session(sessionOptions(commandLine));
  ReplyKeeper replies;
  if (ExitCode code = connectVerb(session, replies, options.clientId, commandLine.connection, out);
      code != ExitCode::kOk) {
    return static_cast<int>(code);
  }

  // Returns false when the session broke.
  auto publish = [&](std::string_view publishFrame) {
    if (SessionStatus s = request(session, replies, publishFrame); s != SessionStatus::kOk) {
      printError(out, "error: " + session.lastError());
      outcome.fail(exitCodeFor(s));
      return false;
    }
    if (isErrorFrame(replies.lastReply())) {
      printError(out, "error: " + replies.lastReply());
      outcome.fail(ExitCode::kFailed);
    }
    return true;
  };

  if (options.source != PubOptions::Source::kLines) {
    publish(frame);
  } else {
    LineReader input;
    bool eof = false;
    std::uint64_t lineNumber = 0;
    bool alive = true;
    while (alive) {
      std::string_view line;
      const LineReader::Result result = input.next(line);
      if (result == LineReader::Result::kFrame || (eof && input.takeRest(line))) {
        ++lineNumber;
        frame.clear();
        if (PublishCheck check = appendPublish(frame, options.topic, line, options.retain);
            check != PublishCheck::kOk) {
          printError(out,
                     fmt::format("error: stdin line {} not sent: {}", lineNumber, describe(check)));
          outcome.fail(ExitCode::kFailed);
          continue;
        }
        alive = publish(frame);
        continue;
      }
      if (result == LineReader::Result::kTooLong) {
        printError(out, "error: a stdin line is longer than the limit of the line reader");
        outcome.fail(ExitCode::kFailed);
        break;
      }
      if (eof) break;
      // Waiting for stdin, the session is polled too: a broker that goes away is noticed.
      pollfd stdinReady{STDIN_FILENO, POLLIN, 0};
      if (SessionStatus s = session.poll(-1, {&stdinReady, 1}, replies); s != SessionStatus::kOk) {
        printError(out, "error: " + session.lastError());
        outcome.fail(exitCodeFor(s));
        break;
      }
      if ((stdinReady.revents & (POLLIN | POLLHUP | POLLERR | POLLNVAL)) == 0) continue;
      const std::span<char> space = input.writable(64 * 1024);
      const ssize_t n = ::read(STDIN_FILENO, space.data(), space.size());
      if (n > 0) {
        input.commit(static_cast<std::size_t>(n));
      } else if (n == 0 || (errno != EINTR && errno != EAGAIN)) {
        eof = true;
      }
    }
  }

  if (SessionStatus s = endSession(session, replies); s != SessionStatus::kOk) {
    printError(out, "error: " + describeFailure(session, s));
    outcome.fail(exitCodeFor(s));
  }
  return outcome.code();
}

int runSub(const CommandLine& commandLine) {
  const SubOptions& options = commandLine.sub;
  Output out(STDOUT_FILENO);
  Outcome outcome;
  StopSignals stop;
  Session session(sessionOptions(commandLine));
  SubPrinter printer(options, out);

  if (ExitCode code = connectVerb(session, printer, options.clientId, commandLine.connection, out);
      code != ExitCode::kOk) {
    return static_cast<int>(code);
  }
  std::optional<Clock::time_point> deadline;
  if (options.timeLimitSeconds > 0) {
    deadline = Clock::now() +
               std::chrono::milliseconds(static_cast<long long>(options.timeLimitSeconds * 1000.0));
  }

  bool timedOut = false;
  bool stopped = false;
  std::size_t subscribed = 0;  // filters whose SUBSCRIBE has been sent
  while (!stopped && !printer.countReached()) {
    if (session.state() == Session::State::kOpen && session.pendingReplies() == 0) {
      if (subscribed > 0 && isErrorFrame(printer.lastReply())) {
        printError(out, "error: SUBSCRIBE@" + options.filters[subscribed - 1] + ": " +
                            printer.lastReply());
        outcome.fail(ExitCode::kFailed);
        break;
      }
      if (subscribed < options.filters.size()) {
        if (SessionStatus s = session.send("SUBSCRIBE@" + options.filters[subscribed++]);
            s != SessionStatus::kOk) {
          printError(out, "error: " + session.lastError());
          outcome.fail(exitCodeFor(s));
          break;
        }
      }
    }
    int waitMs = -1;
    if (deadline) {
      const auto left = std::chrono::ceil<std::chrono::milliseconds>(*deadline - Clock::now());
      if (left.count() <= 0) {
        timedOut = true;
        break;
      }
      waitMs = static_cast<int>(left.count());
    }
    pollfd stopReady{stop.fd(), POLLIN, 0};
    const SessionStatus status = session.poll(waitMs, {&stopReady, 1}, printer);
    if (!out.flush()) {
      outcome.fail(ExitCode::kFailed);
      break;
    }
    if (status != SessionStatus::kOk) {
      printError(out, "error: " + session.lastError());
      outcome.fail(exitCodeFor(status));
      break;
    }
    stopped = (stopReady.revents & POLLIN) != 0;
  }

  if (timedOut && options.count > 0 && !printer.countReached()) {
    outcome.fail(ExitCode::kTimedOut);
  }
  if (SessionStatus s = endSession(session, printer); s != SessionStatus::kOk) {
    printError(out, "error: " + describeFailure(session, s));
    outcome.fail(exitCodeFor(s));
  }
  if (!out.flush()) outcome.fail(ExitCode::kFailed);
  return outcome.code();
}

}  // namespace tern::client::app
