// RawTerminal: a terminal in raw mode for the line editor, restored on every way out.
//
// enter() saves the terminal's settings and switches it to raw mode: no echo, no line buffering,
// no signals from ^C/^Z/^\ (the editor sees those bytes), no CR->LF translation of input, 8-bit
// input. Output processing stays on, so a stray "\n" written by anyone still starts a new line.
//
// The settings come back when the RawTerminal is destroyed, at exit(), and when the process is
// ended or stopped by a signal: SIGINT, SIGTERM, SIGHUP and SIGQUIT restore the terminal and then
// take their default action; SIGTSTP restores it, stops, and switches to raw mode again when the
// process continues. After a continue or a window size change (SIGWINCH) notifyFd() becomes
// readable so the owner can redraw.
//
// At most one RawTerminal exists at a time: the signal handlers use process-wide state. Owned by
// the main thread; the handlers only call async-signal-safe functions.
#pragma once

#include <cstddef>
#include <memory>
#include <string>

namespace tern::client {

class RawTerminal {
 public:
  // Switches `fd` (a terminal) to raw mode. Returns nullptr with `error` set when `fd` is not a
  // terminal or cannot be configured. REQUIRES: no other RawTerminal exists.
  static std::unique_ptr<RawTerminal> enter(int fd, std::string& error);

  // Restores the saved settings and the previous signal dispositions.
  ~RawTerminal();
  RawTerminal(const RawTerminal&) = delete;
  RawTerminal& operator=(const RawTerminal&) = delete;

  // The terminal width in columns; 0 when the terminal does not say.
  std::size_t columns() const noexcept;

  // Readable after SIGWINCH or SIGCONT; call drainNotifications(), then redraw.
  int notifyFd() const noexcept;
  void drainNotifications() noexcept;

  // What ^Z does in a cooked terminal: restores the settings and stops the process; when it
  // continues, raw mode is back and notifyFd() is readable.
  void suspend() noexcept;

 private:
  RawTerminal() = default;
};

}  // namespace tern::client
