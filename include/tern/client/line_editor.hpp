// LineEditor: the state machine of a one-line terminal editor, without any I/O.
//
// The caller reads key bytes from a terminal in raw mode and feeds them one at a time; the editor
// updates the input buffer and appends to `out` the exact bytes to write to the terminal (VT100 /
// ECMA-48 sequences that every terminal emulator in use understands). Keeping the terminal out of
// this class is what lets the tests feed keys and compare the bytes.
//
// Display model: one terminal row holds the prompt and a window onto the input. When the input is
// wider than the row, the window scrolls horizontally so the cursor stays visible (the single-line
// mode of linenoise); the last column is left free so the terminal never wraps. printAbove() shows
// a line of output above the prompt: it erases the row, writes the line and a line break, and draws
// the prompt and the input again with the cursor where it was, so output arriving while the user
// types never mixes with the input.
//
// Keys: printable ASCII and UTF-8 insert at the cursor; Backspace (DEL or ^H) deletes before the
// cursor, Delete (ESC[3~) and ^D on a non-empty line at it; Left/Right (ESC[D, ESC[C, ESC OD, ESC
// OC, ^B, ^F) move by one character; Home/End (ESC[H, ESC[F, ESC[1~, ESC[4~, ESC OH, ESC OF, ^A,
// ^E); ^U deletes from the line start to the cursor (the whole line when the cursor is at the end);
// ^K deletes to the end; ^W deletes the word before the cursor; ^L clears the screen; Enter (CR or
// LF) completes the line; ^D on an empty line is end of input; ^C interrupts; ^Z asks to suspend.
// Other control bytes and unknown escape sequences are ignored. Columns are counted one per code
// point: double-width characters (CJK, emoji) make the cursor drift until the next full redraw.
//
// One thread. Not thread-safe.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace tern::client {

class LineEditor {
 public:
  enum class Event {
    kNone,
    kLine,       // Enter: takeLine() returns the line; a fresh prompt has been drawn
    kEof,        // ^D on an empty line; the editor is closed (see closed())
    kInterrupt,  // ^C; the editor is closed
    kSuspend,    // ^Z; the caller suspends and calls redraw() when the process continues
  };

  // `columns` is the terminal width (80 when unknown). The prompt is printable text.
  explicit LineEditor(std::string prompt, std::size_t columns = 80);

  // Appends the bytes that draw the prompt and the input with the cursor in place: the first draw,
  // and after something else wrote to the terminal. Nothing once closed.
  void redraw(std::string& out) const;

  // Feeds one byte of terminal input. Appends the terminal output it causes to `out`.
  Event feed(char byte, std::string& out);

  // The line completed by the last kLine event (moved out; empty afterwards).
  std::string takeLine() { return std::move(line_); }

  // Appends the bytes that show `text` on its own row above the prompt and redraw the prompt and
  // the input. REQUIRES: `text` holds no control characters (see appendTerminalSafe()).
  void printAbove(std::string_view text, std::string& out) const;

  // The terminal width changed; the next draw uses it (call redraw() to apply it now).
  void setColumns(std::size_t columns) noexcept { columns_ = columns == 0 ? 80 : columns; }

  // Appends the bytes that erase the prompt row, leaving the cursor at its start.
  void erase(std::string& out) const;

  std::string_view buffer() const noexcept { return buffer_; }
  // The cursor as a byte offset into buffer(), always at a code point boundary.
  std::size_t cursor() const noexcept { return cursor_; }
  // True after kEof or kInterrupt: nothing more is drawn except printAbove() text.
  bool closed() const noexcept { return closed_; }

 private:
  enum class Escape { kNone, kEsc, kCsi, kSs3 };

  Event feedText(unsigned char byte, std::string& out);
  void feedCsiFinal(char final, std::string& out);
  void insert(std::string_view bytes, std::string& out);
  void eraseRange(std::size_t from, std::size_t to, std::string& out);
  void moveTo(std::size_t offset, std::string& out);
  std::size_t previousBoundary(std::size_t offset) const noexcept;
  std::size_t nextBoundary(std::size_t offset) const noexcept;
  std::size_t inputColumns() const noexcept;

  std::string prompt_;
  std::size_t promptColumns_;
  std::size_t columns_;
  std::string buffer_;
  std::size_t cursor_ = 0;
  std::string line_;
  Escape escape_ = Escape::kNone;
  std::string csiParams_;       // parameter bytes of the escape sequence being read
  std::string utf8Pending_;     // the first bytes of a UTF-8 sequence still arriving
  std::size_t utf8Needed_ = 0;  // continuation bytes still expected for utf8Pending_
  bool afterCr_ = false;        // the last byte was a CR: a LF right after it is the same Enter
  bool closed_ = false;
};

}  // namespace tern::client
