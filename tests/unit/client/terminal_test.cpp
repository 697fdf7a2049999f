#include "tern/client/terminal.hpp"

#include <gtest/gtest.h>
#include <pty.h>
#include <termios.h>
#include <unistd.h>

#include <string>

namespace tern::client {
namespace {

// A pseudo-terminal pair, closed at the end of the test.
struct Pty {
  Pty() {
    winsize size{};
    size.ws_col = 93;
    size.ws_row = 24;
    EXPECT_EQ(::openpty(&master, &slave, nullptr, nullptr, &size), 0);
  }
  ~Pty() {
    ::close(master);
    ::close(slave);
  }
  termios settings() const {
    termios t{};
    EXPECT_EQ(::tcgetattr(slave, &t), 0);
    return t;
  }
  int master = -1;
  int slave = -1;
};

TEST(RawTerminal, SwitchesToRawModeAndRestoresTheSettings) {
  Pty pty;
  const termios before = pty.settings();
  ASSERT_NE(before.c_lflag & ECHO, 0u);
  ASSERT_NE(before.c_lflag & ICANON, 0u);
  {
    std::string error;
    const std::unique_ptr<RawTerminal> terminal = RawTerminal::enter(pty.slave, error);
    ASSERT_TRUE(terminal) << error;
    const termios raw = pty.settings();
    EXPECT_EQ(raw.c_lflag & (ECHO | ICANON | ISIG | IEXTEN), 0u);
    EXPECT_EQ(raw.c_iflag & (ICRNL | IXON), 0u);
    EXPECT_NE(raw.c_oflag & OPOST, 0u);  // "\n" still starts a new line
    EXPECT_EQ(terminal->columns(), 93u);
  }
  const termios after = pty.settings();
  EXPECT_EQ(after.c_lflag, before.c_lflag);
  EXPECT_EQ(after.c_iflag, before.c_iflag);
  EXPECT_EQ(after.c_oflag, before.c_oflag);
}

TEST(RawTerminal, RefusesWhatIsNotATerminal) {
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  std::string error;
  EXPECT_FALSE(RawTerminal::enter(fds[0], error));
  EXPECT_FALSE(error.empty());
  ::close(fds[0]);
  ::close(fds[1]);
}

}  // namespace
}  // namespace tern::client
