// The client's interactive mode under a pseudo-terminal: the test plays the user at the keyboard
// and, with a small VT100 screen model, checks what the user sees. The point of the mode is that a
// push arriving while a line is half typed is printed above the prompt and the partial input is
// drawn again intact, with the cursor where it was.
#include <gtest/gtest.h>
#include <pty.h>
#include <termios.h>

#include <functional>
#include <string>
#include <vector>

#include "harness.hpp"

namespace tern::test {
namespace {

constexpr std::string_view kPrompt = "enter with format <type@topic@contents@flag>: ";

// The screen as a terminal would show it, for the sequences the client writes: printable bytes,
// CR, LF, ESC[K (erase to end of row), ESC[<n>C (cursor right), ESC[H and ESC[2J.
class Screen {
 public:
  void feed(std::string_view bytes) {
    for (char c : bytes)
      feedByte(c);
  }
  const std::vector<std::string>& rows() const { return rows_; }
  std::size_t row() const { return row_; }
  std::size_t column() const { return column_; }
  // The row holding the cursor, trailing blanks removed.
  std::string cursorRow() const { return trimmed(row_); }
  std::string trimmed(std::size_t row) const {
    if (row >= rows_.size()) return "";
    std::string text = rows_[row];
    while (!text.empty() && text.back() == ' ')
      text.pop_back();
    return text;
  }
  bool contains(std::string_view text) const {
    for (std::size_t i = 0; i < rows_.size(); ++i) {
      if (trimmed(i).find(text) != std::string::npos) return true;
    }
    return false;
  }

 private:
  void feedByte(char c) {
    if (!escape_.empty()) {
      escape_ += c;
      if (escape_.size() >= 2 && (c >= 0x40 && c <= 0x7E) && escape_ != "\x1b[") {
        applyEscape();
        escape_.clear();
      }
      return;
    }
    if (c == '\x1b') {
      escape_ = "\x1b";
    } else if (c == '\r') {
      column_ = 0;
    } else if (c == '\n') {
      ++row_;
    } else if (static_cast<unsigned char>(c) >= 0x20) {
      std::string& r = at(row_);
      if (r.size() <= column_) r.resize(column_ + 1, ' ');
      r[column_++] = c;
    }
  }
  void applyEscape() {
    const char final = escape_.back();
    const std::string params = escape_.substr(2, escape_.size() - 3);
    if (final == 'K') {
      std::string& r = at(row_);
      if (r.size() > column_) r.resize(column_);
    } else if (final == 'C') {
      column_ += params.empty() ? 1 : std::stoul(params);
    } else if (final == 'H') {
      row_ = column_ = 0;
    } else if (final == 'J' && params == "2") {
      rows_.clear();
    }
  }
  std::string& at(std::size_t row) {
    if (rows_.size() <= row) rows_.resize(row + 1);
    return rows_[row];
  }

  std::vector<std::string> rows_;
  std::size_t row_ = 0;
  std::size_t column_ = 0;
  std::string escape_;
};

// The client on the slave side of a pseudo-terminal, 200 columns wide.
class TerminalClient {
 public:
  explicit TerminalClient(std::uint16_t port) {
    winsize size{};
    size.ws_col = 200;
    size.ws_row = 50;
    const std::string portText = std::to_string(port);
    pid_ = ::forkpty(&master_, nullptr, nullptr, &size);
    if (pid_ == 0) {
      const char* argv[] = {TERN_CLIENT_BIN, "--port", portText.c_str(), nullptr};
      ::execv(argv[0], const_cast<char**>(argv));
      ::_exit(127);
    }
    if (pid_ < 0) throw std::runtime_error("forkpty failed");
  }
  ~TerminalClient() {
    if (!status_) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    ::close(master_);
  }

  void type(std::string_view keys) {
    ASSERT_EQ(::write(master_, keys.data(), keys.size()), static_cast<ssize_t>(keys.size()));
  }

  // Reads the terminal until `done(screen)` holds; false after 10 s or at EOF.
  bool waitFor(const std::function<bool(const Screen&)>& done) {
    const std::int64_t deadline = nowMillis() + 10000;
    while (!done(screen_)) {
      const std::int64_t left = deadline - nowMillis();
      if (left <= 0) return false;
      pollfd p{master_, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left)) <= 0) return false;
      char chunk[4096];
      const ssize_t n = ::read(master_, chunk, sizeof chunk);
      if (n <= 0) return false;  // EIO once the client has exited
      screen_.feed(std::string_view(chunk, static_cast<std::size_t>(n)));
    }
    return true;
  }
  bool waitForText(std::string_view text) {
    return waitFor([&](const Screen& s) { return s.contains(text); });
  }

  // Waits for the exit; returns the exit code (-1 if killed or still running after 10 s).
  int exitCode() {
    waitFor([](const Screen&) { return false; });  // drain until EOF
    const std::int64_t deadline = nowMillis() + 10000;
    while (!status_ && nowMillis() < deadline) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) status_ = status;
      std::this_thread::sleep_for(Millis(5));
    }
    return status_ ? exitCodeOf(*status_) : -1;
  }

  // The terminal's settings as the client left them.
  termios settings() const {
    termios t{};
    ::tcgetattr(master_, &t);
    return t;
  }

  const Screen& screen() const { return screen_; }

 private:
  pid_t pid_ = -1;
  int master_ = -1;
  Screen screen_;
  std::optional<int> status_;
};

class ClientInteractive : public ::testing::Test {
 protected:
  BrokerProcess broker{{"--workers", "2"}};
};

TEST_F(ClientInteractive, PushAppearsAboveThePartialInputWhichStaysIntact) {
  TerminalClient client(broker.port());
  const std::string prompt(kPrompt);
  ASSERT_TRUE(client.waitFor([&](const Screen& s) {
    return s.cursorRow() + " " == prompt && s.column() == prompt.size();
  }));
  EXPECT_EQ(client.settings().c_lflag & ECHO, 0u);  // raw mode: the client echoes by itself

  client.type("connect@ia\r");
  ASSERT_TRUE(client.waitForText("server: CONNACK@ia@"));
  client.type("subscribe@news\r");
  ASSERT_TRUE(client.waitForText("server: SUBACK"));

  // Half a request, then the cursor two characters back.
  client.type("publish@news@hel\x1b[D\x1b[D");
  const std::size_t inputColumn = prompt.size() + 14;
  ASSERT_TRUE(client.waitFor([&](const Screen& s) {
    return s.cursorRow() == prompt + "publish@news@hel" && s.column() == inputColumn;
  }));

  LineClient other(broker.port());
  ASSERT_EQ(other.request.request("PUBLISH@news@sunny"), "PUBACK");
  ASSERT_TRUE(client.waitFor([&](const Screen& s) {
    return s.row() > 0 && s.trimmed(s.row() - 1) == "news: sunny" &&
           s.cursorRow() == prompt + "publish@news@hel" && s.column() == inputColumn;
  })) << "screen row: "
      << client.screen().cursorRow();

  // Typing goes on where the cursor was; the line sent is the edited one.
  client.type("X\r");
  ASSERT_TRUE(client.waitForText("server: PUBACK"));
  ASSERT_TRUE(client.waitForText("news: hXel"));  // its own message, pushed back
  for (const std::string& row : client.screen().rows()) {
    // No row mixes the prompt and a message: pushes never overwrite the input line.
    if (row.find("news: ") != std::string::npos) {
      EXPECT_EQ(row.find("enter with"), std::string::npos) << row;
    }
  }

  client.type("\x04");  // ^D: disconnect and exit
  ASSERT_TRUE(client.waitForText("server: DISCONNACK"));
  EXPECT_EQ(client.exitCode(), 0);
  const termios after = client.settings();
  EXPECT_EQ(after.c_lflag & (ECHO | ICANON), static_cast<tcflag_t>(ECHO | ICANON));
}

TEST_F(ClientInteractive, RequestBeforeConnectGetsALocalMessage) {
  TerminalClient client(broker.port());
  ASSERT_TRUE(client.waitForText("enter with format"));
  client.type("ping\r");
  ASSERT_TRUE(client.waitForText("not connected: type connect first"));
  client.type("half typed\x03");  // ^C
  EXPECT_EQ(client.exitCode(), 130);
  EXPECT_TRUE(client.screen().contains("half typed^C"));
  const termios after = client.settings();
  EXPECT_EQ(after.c_lflag & (ECHO | ICANON), static_cast<tcflag_t>(ECHO | ICANON));
}

TEST_F(ClientInteractive, EditingKeysChangeWhatIsSent) {
  TerminalClient client(broker.port());
  ASSERT_TRUE(client.waitForText("enter with format"));
  client.type("connect\r");
  ASSERT_TRUE(client.waitForText("server: CONNACK@"));
  // "pong" erased by ^U, "pinx" fixed by Backspace, Home/End and a Delete of a stray first char.
  client.type(
      "pong\x15"
      "Xpinx\x7fg\x1b[H\x1b[3~\x1b[F\r");
  ASSERT_TRUE(client.waitForText("server: PONG"));
  client.type("\x04");
  EXPECT_EQ(client.exitCode(), 0);
}

}  // namespace
}  // namespace tern::test
