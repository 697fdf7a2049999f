#include "tern/client/line_editor.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <iterator>

namespace tern::client {
namespace {

bool isContinuation(unsigned char c) noexcept {
  return (c & 0xC0) == 0x80;
}

std::size_t countCodePoints(std::string_view text) noexcept {
  return static_cast<std::size_t>(std::count_if(text.begin(), text.end(), [](char c) {
    return !isContinuation(static_cast<unsigned char>(c));
  }));
}

// Byte offset of the code point with index `index` (text.size() past the last one).
std::size_t offsetOfCodePoint(std::string_view text, std::size_t index) noexcept {
  std::size_t offset = 0;
  while (offset < text.size()) {
    if (!isContinuation(static_cast<unsigned char>(text[offset]))) {
      if (index == 0) return offset;
      --index;
    }
    ++offset;
  }
  return offset;
}

// Continuation bytes that follow a UTF-8 lead byte; 0 for a byte that cannot start a sequence.
std::size_t continuationCount(unsigned char lead) noexcept {
  if (lead >= 0xC2 && lead <= 0xDF) return 1;
  if (lead >= 0xE0 && lead <= 0xEF) return 2;
  if (lead >= 0xF0 && lead <= 0xF4) return 3;
  return 0;
}

constexpr char kEraseRow[] = "\r\x1b[K";

}  // namespace

LineEditor::LineEditor(std::string prompt, std::size_t columns)
    : prompt_(std::move(prompt)),
      promptColumns_(countCodePoints(prompt_)),
      columns_(columns == 0 ? 80 : columns) {}

std::size_t LineEditor::inputColumns() const noexcept {
  // The last column stays free so that writing there never makes the terminal wrap; at least one
  // column is left for the input even when the prompt is wider than the terminal.
  return columns_ > promptColumns_ + 1 ? columns_ - promptColumns_ - 1 : 1;
}

void LineEditor::redraw(std::string& out) const {
  if (closed_) return;
  const std::string_view text = buffer_;
  const std::size_t window = inputColumns();
  const std::size_t cursorIndex = countCodePoints(text.substr(0, cursor_));
  const std::size_t total = countCodePoints(text);
  const std::size_t first = cursorIndex > window ? cursorIndex - window : 0;
  const std::size_t shown = std::min(total - first, window);
  const std::size_t from = offsetOfCodePoint(text, first);
  const std::size_t to = offsetOfCodePoint(text, first + shown);
  out += '\r';
  out += prompt_;
  out.append(text.substr(from, to - from));
  out += "\x1b[K\r";
  const std::size_t column = promptColumns_ + cursorIndex - first;
  if (column > 0) fmt::format_to(std::back_inserter(out), "\x1b[{}C", column);
}

void LineEditor::printAbove(std::string_view text, std::string& out) const {
  out += kEraseRow;
  out.append(text);
  out += "\r\n";
  redraw(out);
}

void LineEditor::erase(std::string& out) const {
  out += kEraseRow;
}

LineEditor::Event LineEditor::feed(char byte, std::string& out) {
  if (closed_) return Event::kNone;
  const auto c = static_cast<unsigned char>(byte);
  const bool afterCr = afterCr_;
  afterCr_ = false;
  switch (escape_) {
    case Escape::kNone:
      break;
    case Escape::kEsc:
      // ESC [ and ESC O start the sequences of cursor keys; ESC + another key (Meta) is ignored.
      escape_ = c == '[' ? Escape::kCsi : c == 'O' ? Escape::kSs3 : Escape::kNone;
      csiParams_.clear();
      return Event::kNone;
    case Escape::kCsi:
      if (c >= 0x40 && c <= 0x7E) {
        escape_ = Escape::kNone;
        feedCsiFinal(static_cast<char>(c), out);
      } else if (c >= 0x20 && c <= 0x3F) {
        if (csiParams_.size() < 16) csiParams_ += static_cast<char>(c);
      } else {
        escape_ = Escape::kNone;  // not a CSI byte: the sequence is dropped
      }
      return Event::kNone;
    case Escape::kSs3:
      escape_ = Escape::kNone;
      csiParams_.clear();
      feedCsiFinal(static_cast<char>(c), out);
      return Event::kNone;
  }
  if (c == '\n' && afterCr) return Event::kNone;  // CR LF from one Enter key
  return feedText(c, out);
}

LineEditor::Event LineEditor::feedText(unsigned char c, std::string& out) {
  if (utf8Needed_ > 0) {
    if (isContinuation(c)) {
      utf8Pending_ += static_cast<char>(c);
      if (--utf8Needed_ == 0) {
        insert(utf8Pending_, out);
        utf8Pending_.clear();
      }
      return Event::kNone;
    }
    utf8Pending_.clear();  // a broken sequence is dropped; `c` starts afresh
    utf8Needed_ = 0;
  }
  if (c >= 0x80) {
    utf8Needed_ = continuationCount(c);
    if (utf8Needed_ > 0) utf8Pending_.assign(1, static_cast<char>(c));
    return Event::kNone;
  }
  if (c >= 0x20 && c < 0x7F) {
    const char text = static_cast<char>(c);
    insert(std::string_view(&text, 1), out);
    return Event::kNone;
  }
  switch (c) {
    case '\r':
    case '\n':
      afterCr_ = c == '\r';
      line_ = std::move(buffer_);
      buffer_.clear();
      cursor_ = 0;
      out += "\r\n";
      redraw(out);
      return Event::kLine;
    case 0x7F:  // Backspace (DEL)
    case 0x08:  // ^H
      if (cursor_ > 0) eraseRange(previousBoundary(cursor_), cursor_, out);
      return Event::kNone;
    case 0x04:  // ^D
      if (buffer_.empty()) {
        out += "\r\n";
        closed_ = true;
        return Event::kEof;
      }
      if (cursor_ < buffer_.size()) eraseRange(cursor_, nextBoundary(cursor_), out);
      return Event::kNone;
    case 0x03:  // ^C
      out += "^C\r\n";
      closed_ = true;
      return Event::kInterrupt;
    case 0x1A:  // ^Z
      out += "^Z\r\n";
      return Event::kSuspend;
    case 0x01:  // ^A
      moveTo(0, out);
      return Event::kNone;
    case 0x05:  // ^E
      moveTo(buffer_.size(), out);
      return Event::kNone;
    case 0x02:  // ^B
      moveTo(previousBoundary(cursor_), out);
      return Event::kNone;
    case 0x06:  // ^F
      moveTo(nextBoundary(cursor_), out);
      return Event::kNone;
    case 0x15:  // ^U
      eraseRange(0, cursor_, out);
      return Event::kNone;
    case 0x0B:  // ^K
      eraseRange(cursor_, buffer_.size(), out);
      return Event::kNone;
    case 0x17: {  // ^W: blanks before the cursor, then the word before them
      std::size_t from = cursor_;
      while (from > 0 && buffer_[from - 1] == ' ')
        --from;
      while (from > 0 && buffer_[from - 1] != ' ')
        --from;
      eraseRange(from, cursor_, out);
      return Event::kNone;
    }
    case 0x0C:  // ^L
      out += "\x1b[H\x1b[2J";
      redraw(out);
      return Event::kNone;
    case 0x1B:
      escape_ = Escape::kEsc;
      return Event::kNone;
    default:
      return Event::kNone;  // other control bytes (Tab included) are ignored
  }
}

void LineEditor::feedCsiFinal(char final, std::string& out) {
  switch (final) {
    case 'C':
      moveTo(nextBoundary(cursor_), out);
      return;
    case 'D':
      moveTo(previousBoundary(cursor_), out);
      return;
    case 'H':
      moveTo(0, out);
      return;
    case 'F':
      moveTo(buffer_.size(), out);
      return;
    case '~':
      if (csiParams_ == "1" || csiParams_ == "7") {
        moveTo(0, out);
      } else if (csiParams_ == "4" || csiParams_ == "8") {
        moveTo(buffer_.size(), out);
      } else if (csiParams_ == "3" && cursor_ < buffer_.size()) {
        eraseRange(cursor_, nextBoundary(cursor_), out);
      }
      return;
    default:
      return;
  }
}

void LineEditor::insert(std::string_view bytes, std::string& out) {
  const bool atEnd = cursor_ == buffer_.size();
  buffer_.insert(cursor_, bytes);
  cursor_ += bytes.size();
  // Typing at the end of an input that still fits needs only the echo of the character.
  if (atEnd && countCodePoints(buffer_) <= inputColumns()) {
    out.append(bytes);
  } else {
    redraw(out);
  }
}

void LineEditor::eraseRange(std::size_t from, std::size_t to, std::string& out) {
  if (from >= to) return;
  buffer_.erase(from, to - from);
  cursor_ = from;
  redraw(out);
}

void LineEditor::moveTo(std::size_t offset, std::string& out) {
  if (offset == cursor_) return;
  cursor_ = offset;
  redraw(out);
}

std::size_t LineEditor::previousBoundary(std::size_t offset) const noexcept {
  if (offset == 0) return 0;
  --offset;
  while (offset > 0 && isContinuation(static_cast<unsigned char>(buffer_[offset])))
    --offset;
  return offset;
}

std::size_t LineEditor::nextBoundary(std::size_t offset) const noexcept {
  if (offset >= buffer_.size()) return buffer_.size();
  ++offset;
  while (offset < buffer_.size() && isContinuation(static_cast<unsigned char>(buffer_[offset]))) {
    ++offset;
  }
  return offset;
}

}  // namespace tern::client
