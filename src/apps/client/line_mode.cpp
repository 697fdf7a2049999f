// The session mode (no verb): requests typed at a prompt or read from stdin, one per line.

#include <poll.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <memory>

#include "client_app.hpp"
#include "tern/client/frames.hpp"
#include "tern/client/line_editor.hpp"
#include "tern/client/line_reader.hpp"
#include "tern/client/terminal.hpp"

namespace tern::client::app {
namespace {

constexpr char kPrompt[] = "enter with format <type@topic@contents@flag>: ";
constexpr char kNotConnected[] = "not connected: type connect first";

// Where the session mode shows frames and local messages.
class Display {
 public:
  virtual ~Display() = default;
  virtual void show(std::string_view line) = 0;   // a frame, formatted
  virtual void error(std::string_view text) = 0;  // a local message
  virtual bool flush() = 0;                       // false once the output is broken
};

// stdin mode: frames on stdout, local messages on stderr.
class StreamDisplay final : public Display {
 public:
  void show(std::string_view line) override { out_.line(line); }
  void error(std::string_view text) override { printError(out_, text); }
  bool flush() override { return out_.flush(); }

 private:
  Output out_{STDOUT_FILENO};
};

// Interactive mode: everything above the prompt, control characters made visible.
class TerminalDisplay final : public Display {
 public:
  explicit TerminalDisplay(LineEditor& editor) : editor_(editor) {}
  void show(std::string_view line) override {
    scratch_.clear();
    appendTerminalSafe(scratch_, line);
    editor_.printAbove(scratch_, out_.buffer());
  }
  void error(std::string_view text) override { show(text); }
  bool flush() override { return out_.flush(); }
  std::string& screen() noexcept { return out_.buffer(); }

 private:
  LineEditor& editor_;
  Output out_{STDOUT_FILENO};
  std::string scratch_;
};

// What both session modes share: the meaning of each input line and the display of each frame.
class LineSession final : public SessionListener {
 public:
  // `stopOnBreak`: a broken session ends the run (stdin mode) instead of only being reported.
  LineSession(const CommandLine& commandLine, Display& display, bool stopOnBreak)
      : session_(sessionOptions(commandLine)),
        connection_(commandLine.connection),
        display_(display),
        raw_(commandLine.lineMode.raw),
        stopOnBreak_(stopOnBreak) {}

  Session& session() noexcept { return session_; }
  Outcome& outcome() noexcept { return outcome_; }
  bool stopped() const noexcept { return stopped_; }

  // True when the next line may be handled: not connected, or every reply is in.
  bool readyForInput() const noexcept {
    return session_.state() == Session::State::kClosed ||
           (session_.state() == Session::State::kOpen && session_.pendingReplies() == 0);
  }

  // Acts on one input line. connect and disconnect finish before this returns; other requests
  // are only sent.
  void handle(std::string_view line) {
    const Input input = classifyInput(line);
    if (input.kind == InputKind::kEmpty) return;
    if (session_.state() == Session::State::kClosed) {
      if (input.kind == InputKind::kConnect) {
        connect(input.frame);
      } else {
        display_.error(kNotConnected);
        outcome_.fail(ExitCode::kFailed);
      }
      return;
    }
    // Connected: "connect" goes out as typed too, and the broker says what it thinks of it.
    report(session_.send(input.frame));
    if (input.kind == InputKind::kDisconnect) pumpUntilClosed();
  }

  // One round of I/O on the session and `extra`.
  void poll(int waitMs, std::span<pollfd> extra) {
    report(session_.poll(waitMs, extra, *this));
    flush();
  }

  // Keeps showing pushes for `seconds`.
  void linger(double seconds) {
    const auto until = std::chrono::steady_clock::now() +
                       std::chrono::milliseconds(static_cast<long long>(seconds * 1000.0));
    while (!stopped_ && session_.state() == Session::State::kOpen) {
      const auto left =
          std::chrono::ceil<std::chrono::milliseconds>(until - std::chrono::steady_clock::now());
      if (left.count() <= 0) break;
      poll(static_cast<int>(left.count()), {});
    }
  }

  // Disconnects (if connected) and waits for the end of the session. `quiet`: the DISCONNACK is
  // not shown, since no input line asked for it.
  void end(bool quiet) {
    if (session_.state() == Session::State::kClosed) return;
    quiet_ = quiet;
    report(endSession(session_, *this));
    quiet_ = false;
    flush();
  }

  void flush() {
    if (!display_.flush()) {
      outcome_.fail(ExitCode::kFailed);
      stopped_ = true;
    }
  }

  void onFrame(FrameKind kind, std::string_view frame) override {
    if (kind == FrameKind::kReply && isErrorFrame(frame)) outcome_.fail(ExitCode::kFailed);
    if (quiet_ && kind == FrameKind::kReply) return;
    if (raw_) {
      display_.show(frame);
      return;
    }
    line_.clear();
    if (kind == FrameKind::kHandshake && frameTypeIs(frame, "ATTACHACK")) return;
    std::optional<Push> push;
    if (kind == FrameKind::kPush) push = parsePush(frame);
    if (push) {
      appendPushLine(line_, *push);
    } else {
      appendReplyLine(line_, frame);
    }
    display_.show(line_);
  }

 private:
  void connect(std::string_view frame) {
    const SessionStatus status = session_.connect(
        connectWithCredentials(frame, connection_.username, connection_.password), *this);
    if (status == SessionStatus::kOk) return;
    // A refusal was shown as "server: ERROR@..." already, and the run goes on; a connection that
    // could not be made or broke is a local error.
    if (status != SessionStatus::kRejected) display_.error("error: " + session_.lastError());
    outcome_.fail(exitCodeFor(status));
    if (stopOnBreak_ && status != SessionStatus::kRejected) stopped_ = true;
  }

  void pumpUntilClosed() {
    while (!stopped_ && session_.state() != Session::State::kClosed)
      poll(-1, {});
  }

  void report(SessionStatus status) {
    if (status == SessionStatus::kOk) return;
    display_.error("error: " + describeFailure(session_, status));
    outcome_.fail(exitCodeFor(status));
    if (stopOnBreak_) stopped_ = true;
  }

  Session session_;
  const ConnectionOptions& connection_;
  Display& display_;
  Outcome outcome_;
  std::string line_;
  bool raw_;
  bool stopOnBreak_;
  bool quiet_ = false;
  bool stopped_ = false;
};

}  // namespace

int runStdin(const CommandLine& commandLine) {
  StreamDisplay display;
  LineSession lines(commandLine, display, /*stopOnBreak=*/true);
  LineReader input;
  bool eof = false;
  for (;;) {
    // Buffered lines go out one at a time, each once the previous one is answered.
    while (!lines.stopped() && lines.readyForInput()) {
      std::string_view line;
      const LineReader::Result result = input.next(line);
      if (result == LineReader::Result::kFrame || (eof && input.takeRest(line))) {
        lines.handle(line);
        lines.flush();
        continue;
      }
      if (result == LineReader::Result::kTooLong) {
        display.error("error: an input line is longer than the limit of the line reader");
        lines.outcome().fail(ExitCode::kFailed);
        lines.session().close();
        return lines.outcome().code();
      }
      break;
    }
    if (lines.stopped()) {
      lines.session().close();
      return lines.outcome().code();
    }
    if (eof && lines.readyForInput()) {
      if (lines.session().state() == Session::State::kOpen) {
        lines.linger(commandLine.lineMode.waitSeconds);
        lines.end(/*quiet=*/true);
      }
      lines.flush();
      return lines.outcome().code();
    }
    pollfd stdinReady{STDIN_FILENO, POLLIN, 0};
    const bool wantInput = !eof && lines.readyForInput();
    lines.poll(-1, wantInput ? std::span<pollfd>(&stdinReady, 1) : std::span<pollfd>());
    if (wantInput && (stdinReady.revents & (POLLIN | POLLHUP | POLLERR | POLLNVAL)) != 0) {
      const std::span<char> space = input.writable(64 * 1024);
      const ssize_t n = ::read(STDIN_FILENO, space.data(), space.size());
      if (n > 0) {
        input.commit(static_cast<std::size_t>(n));
      } else if (n == 0 || (errno != EINTR && errno != EAGAIN)) {
        eof = true;  // a read error ends the input like EOF does
      }
    }
  }
}

int runInteractive(const CommandLine& commandLine) {
  std::string error;
  const std::unique_ptr<RawTerminal> terminal = RawTerminal::enter(STDIN_FILENO, error);
  if (!terminal) return runStdin(commandLine);

  LineEditor editor(kPrompt, terminal->columns());
  TerminalDisplay display(editor);
  LineSession lines(commandLine, display, /*stopOnBreak=*/false);
  editor.redraw(display.screen());
  lines.flush();
  char bytes[4096];
  while (!lines.stopped()) {
    pollfd extra[2] = {{STDIN_FILENO, POLLIN, 0}, {terminal->notifyFd(), POLLIN, 0}};
    lines.poll(-1, extra);
    if ((extra[1].revents & POLLIN) != 0) {  // resized, or continued after a stop
      terminal->drainNotifications();
      editor.setColumns(terminal->columns());
      editor.redraw(display.screen());
      lines.flush();
    }
    if ((extra[0].revents & (POLLIN | POLLHUP | POLLERR | POLLNVAL)) == 0) continue;
    const ssize_t n = ::read(STDIN_FILENO, bytes, sizeof(bytes));
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n <= 0) {  // the terminal hung up: as ^D
      lines.end(/*quiet=*/false);
      return lines.outcome().code();
    }
    for (ssize_t i = 0; i < n && !lines.stopped(); ++i) {
      switch (editor.feed(bytes[i], display.screen())) {
        case LineEditor::Event::kNone:
          break;
        case LineEditor::Event::kLine: {
          lines.flush();
          const std::string line = editor.takeLine();
          lines.handle(line);
          lines.flush();
          break;
        }
        case LineEditor::Event::kEof:
          lines.flush();
          lines.end(/*quiet=*/false);
          return lines.outcome().code();
        case LineEditor::Event::kInterrupt:
          lines.flush();
          return static_cast<int>(ExitCode::kInterrupted);
        case LineEditor::Event::kSuspend:
          lines.flush();
          terminal->suspend();  // returns once continued; notifyFd() then asks for a redraw
          break;
      }
    }
    lines.flush();
  }
  return lines.outcome().code();
}

}  // namespace tern::client::app
