// The runners of the `client` program, one per mode, and what they share. Each runner returns the
// process exit status (tern::client::ExitCode). Main thread only.
#pragma once

#include <string>
#include <string_view>

#include "tern/client/command_line.hpp"
#include "tern/client/session.hpp"

namespace tern::client::app {

// Session mode on a terminal: prompt, line editor, pushes above the prompt.
int runInteractive(const CommandLine& commandLine);
// Session mode on anything else: one request per line from stdin.
int runStdin(const CommandLine& commandLine);
int runPub(const CommandLine& commandLine);
int runSub(const CommandLine& commandLine);

SessionOptions sessionOptions(const CommandLine& commandLine);

// "CONNECT" or "CONNECT@<id>", with the credentials of --username/--password when given.
std::string connectFrame(const std::string& clientId, const ConnectionOptions& connection);

// kUnreachable -> kUsage (the broker cannot be reached), every other failure -> kFailed.
ExitCode exitCodeFor(SessionStatus status) noexcept;

// The first failure of a run decides the exit status.
class Outcome {
 public:
  void fail(ExitCode code) noexcept {
    if (code_ == ExitCode::kOk) code_ = code;
  }
  int code() const noexcept { return static_cast<int>(code_); }
  bool failed() const noexcept { return code_ != ExitCode::kOk; }

 private:
  ExitCode code_ = ExitCode::kOk;
};

// Buffered output to a descriptor, written out by flush(). Output is buffered per round of I/O,
// not per line, so a burst of pushes costs one write(2).
class Output {
 public:
  explicit Output(int fd) : fd_(fd) {}
  std::string& buffer() noexcept { return buffer_; }
  void line(std::string_view text) {
    buffer_.append(text);
    buffer_ += '\n';
  }
  // Writes the buffer. Returns false once the descriptor has failed (EPIPE, ...); what could not
  // be written is dropped.
  bool flush();
  bool failed() const noexcept { return failed_; }

 private:
  int fd_;
  std::string buffer_;
  bool failed_ = false;
};

// Flushes `out` (so the order of stdout and stderr lines is kept), then writes `text` and a line
// feed to stderr.
void printError(Output& out, std::string_view text);

// Ends the session: DISCONNECT, then poll until the broker has closed every socket. Frames that
// arrive meanwhile go to the listener. Returns kOk or why the end was not clean (kRejected when
// DISCONNECT got another reply than DISCONNACK). Nothing to do when the session is closed.
SessionStatus endSession(Session& session, SessionListener& listener);

// What went wrong in endSession(), for a human.
std::string describeFailure(const Session& session, SessionStatus status);

}  // namespace tern::client::app
