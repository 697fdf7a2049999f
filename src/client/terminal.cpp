#include "tern/client/terminal.hpp"

#include <fcntl.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>

namespace tern::client {
namespace {

// Process-wide state for the signal handlers. Written by the main thread before the handlers are
// installed (and after they are removed); read by the handlers.
int g_fd = -1;
termios g_saved{};
termios g_raw{};
volatile std::sig_atomic_t g_active = 0;
int g_notifyRead = -1;
int g_notifyWrite = -1;
bool g_atexitRegistered = false;

constexpr int kEndingSignals[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT};
constexpr int kNotifySignals[] = {SIGWINCH, SIGCONT, SIGTSTP};
struct sigaction
    g_previous[sizeof(kEndingSignals) / sizeof(int) + sizeof(kNotifySignals) / sizeof(int)];

void restoreNow() noexcept {
  if (g_active != 0) ::tcsetattr(g_fd, TCSANOW, &g_saved);
}

void notify() noexcept {
  const char byte = 1;
  [[maybe_unused]] const ssize_t ignored = ::write(g_notifyWrite, &byte, 1);
}

void onEndingSignal(int signal) {
  restoreNow();
  g_active = 0;
  // The default action (termination) happens when the handler returns and the signal, raised
  // again here, is unblocked.
  ::signal(signal, SIG_DFL);
  ::raise(signal);
}

void onNotifySignal(int signal) {
  const int savedErrno = errno;
  if (signal == SIGTSTP && g_active != 0) {
    ::tcsetattr(g_fd, TCSANOW, &g_saved);
    // Stop now with the default action: unblock SIGTSTP inside its own handler and raise it.
    ::signal(SIGTSTP, SIG_DFL);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTSTP);
    ::sigprocmask(SIG_UNBLOCK, &set, nullptr);
    ::raise(SIGTSTP);
    // Continued.
    struct sigaction action {};
    action.sa_handler = onNotifySignal;
    sigemptyset(&action.sa_mask);
    action.sa_flags = SA_RESTART;
    ::sigaction(SIGTSTP, &action, nullptr);
  }
  if ((signal == SIGTSTP || signal == SIGCONT) && g_active != 0) {
    ::tcsetattr(g_fd, TCSANOW, &g_raw);
  }
  notify();
  errno = savedErrno;
}

void restoreAtExit() {
  restoreNow();
}

}  // namespace

std::unique_ptr<RawTerminal> RawTerminal::enter(int fd, std::string& error) {
  if (::isatty(fd) == 0) {
    error = "not a terminal";
    return nullptr;
  }
  termios saved{};
  if (::tcgetattr(fd, &saved) != 0) {
    error = std::strerror(errno);
    return nullptr;
  }
  int pipeFds[2];
  if (::pipe2(pipeFds, O_NONBLOCK | O_CLOEXEC) != 0) {
    error = std::strerror(errno);
    return nullptr;
  }
  termios raw = saved;
  raw.c_iflag &= ~static_cast<tcflag_t>(BRKINT | ICRNL | INPCK | ISTRIP | IXON);
  raw.c_cflag |= CS8;
  raw.c_lflag &= ~static_cast<tcflag_t>(ECHO | ICANON | IEXTEN | ISIG);
  raw.c_cc[VMIN] = 1;
  raw.c_cc[VTIME] = 0;

  g_fd = fd;
  g_saved = saved;
  g_raw = raw;
  g_notifyRead = pipeFds[0];
  g_notifyWrite = pipeFds[1];
  if (!g_atexitRegistered) {
    std::atexit(restoreAtExit);
    g_atexitRegistered = true;
  }

  std::size_t slot = 0;
  for (int signal : kEndingSignals) {
    struct sigaction action {};
    action.sa_handler = onEndingSignal;
    sigemptyset(&action.sa_mask);
    ::sigaction(signal, &action, &g_previous[slot++]);
  }
  for (int signal : kNotifySignals) {
    struct sigaction action {};
    action.sa_handler = onNotifySignal;
    sigemptyset(&action.sa_mask);
    action.sa_flags = SA_RESTART;
    ::sigaction(signal, &action, &g_previous[slot++]);
  }
  // Active before the switch: a signal between the two finds the saved settings to restore.
  g_active = 1;
  if (::tcsetattr(fd, TCSAFLUSH, &raw) != 0) {
    error = std::strerror(errno);
    RawTerminal undo;  // its destructor restores the handlers and closes the pipe
    return nullptr;
  }
  return std::unique_ptr<RawTerminal>(new RawTerminal());
}

RawTerminal::~RawTerminal() {
  ::tcsetattr(g_fd, TCSADRAIN, &g_saved);
  g_active = 0;
  std::size_t slot = 0;
  for (int signal : kEndingSignals)
    ::sigaction(signal, &g_previous[slot++], nullptr);
  for (int signal : kNotifySignals)
    ::sigaction(signal, &g_previous[slot++], nullptr);
  ::close(g_notifyRead);
  ::close(g_notifyWrite);
  g_notifyRead = g_notifyWrite = -1;
  g_fd = -1;
}

std::size_t RawTerminal::columns() const noexcept {
  winsize size{};
  if (::ioctl(g_fd, TIOCGWINSZ, &size) != 0) return 0;
  return size.ws_col;
}

int RawTerminal::notifyFd() const noexcept {
  return g_notifyRead;
}

void RawTerminal::drainNotifications() noexcept {
  char bytes[64];
  while (::read(g_notifyRead, bytes, sizeof(bytes)) > 0) {
  }
}

void RawTerminal::suspend() noexcept {
  ::raise(SIGTSTP);
}

}  // namespace tern::client
