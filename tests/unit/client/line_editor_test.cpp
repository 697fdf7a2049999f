#include "tern/client/line_editor.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace tern::client {
namespace {

using Event = LineEditor::Event;

// Feeds `keys` byte by byte; returns the terminal output and collects the events other than kNone.
std::string type(LineEditor& editor, std::string_view keys, std::vector<Event>* events = nullptr) {
  std::string out;
  for (char key : keys) {
    const Event event = editor.feed(key, out);
    if (event != Event::kNone && events != nullptr) events->push_back(event);
  }
  return out;
}

// The bytes of a full redraw of prompt "> " with `shown` input and the cursor at `column`.
std::string redrawn(std::string_view shown, int column) {
  std::string out = "\r> " + std::string(shown) + "\x1b[K\r";
  if (column > 0) out += "\x1b[" + std::to_string(column) + "C";
  return out;
}

constexpr char kLeft[] = "\x1b[D";
constexpr char kRight[] = "\x1b[C";

TEST(LineEditor, DrawsThePromptWithTheCursorAfterIt) {
  LineEditor editor("> ");
  std::string out;
  editor.redraw(out);
  EXPECT_EQ(out, redrawn("", 2));
}

TEST(LineEditor, EchoesCharactersTypedAtTheEnd) {
  LineEditor editor("> ");
  EXPECT_EQ(type(editor, "pub"), "pub");
  EXPECT_EQ(editor.buffer(), "pub");
  EXPECT_EQ(editor.cursor(), 3u);
}

TEST(LineEditor, BackspaceDeletesBeforeTheCursor) {
  LineEditor editor("> ");
  type(editor, "pubx");
  EXPECT_EQ(type(editor, "\x7f"), redrawn("pub", 5));
  EXPECT_EQ(type(editor, "\x08"), redrawn("pu", 4));  // ^H too
  EXPECT_EQ(editor.buffer(), "pu");
  EXPECT_EQ(type(editor, "\x7f\x7f\x7f"), redrawn("p", 3) + redrawn("", 2));  // nothing left
}

TEST(LineEditor, ArrowsMoveAndTypingInsertsAtTheCursor) {
  LineEditor editor("> ");
  type(editor, "ac");
  EXPECT_EQ(type(editor, kLeft), redrawn("ac", 3));
  EXPECT_EQ(editor.cursor(), 1u);
  EXPECT_EQ(type(editor, "b"), redrawn("abc", 4));
  EXPECT_EQ(editor.buffer(), "abc");
  EXPECT_EQ(type(editor, kRight), redrawn("abc", 5));
  EXPECT_EQ(type(editor, kRight), "");                   // already at the end: nothing to redraw
  EXPECT_EQ(type(editor, "\x1bOD"), redrawn("abc", 4));  // application-mode Left
}

TEST(LineEditor, HomeEndAndDeleteKeys) {
  LineEditor editor("> ");
  type(editor, "abc");
  type(editor, "\x1b[H");
  EXPECT_EQ(editor.cursor(), 0u);
  EXPECT_EQ(type(editor, "\x1b[3~"), redrawn("bc", 2));
  type(editor, "\x1b[F");
  EXPECT_EQ(editor.cursor(), 2u);
  type(editor, "\x01");  // ^A
  EXPECT_EQ(editor.cursor(), 0u);
  type(editor, "\x05");  // ^E
  EXPECT_EQ(editor.cursor(), 2u);
  type(editor, "\x1b[1~");
  EXPECT_EQ(editor.cursor(), 0u);
  type(editor, "\x1b[4~");
  EXPECT_EQ(editor.cursor(), 2u);
}

TEST(LineEditor, CtrlUClearsUpToTheCursor) {
  LineEditor editor("> ");
  type(editor, "subscribe@a");
  EXPECT_EQ(type(editor, "\x15"), redrawn("", 2));
  EXPECT_EQ(editor.buffer(), "");

  type(editor, "abcd");
  type(editor, std::string(kLeft) + kLeft);
  type(editor, "\x15");
  EXPECT_EQ(editor.buffer(), "cd");
  EXPECT_EQ(editor.cursor(), 0u);
}

TEST(LineEditor, CtrlKAndCtrlWDeleteForwardAndTheWordBefore) {
  LineEditor editor("> ");
  type(editor, "one two  three");
  type(editor, "\x17");  // ^W
  EXPECT_EQ(editor.buffer(), "one two  ");
  type(editor, "\x17");
  EXPECT_EQ(editor.buffer(), "one ");
  type(editor, "\x01\x0b");  // ^A ^K
  EXPECT_EQ(editor.buffer(), "");
}

TEST(LineEditor, EnterCompletesTheLineAndDrawsAFreshPrompt) {
  LineEditor editor("> ");
  std::vector<Event> events;
  type(editor, "ping");
  EXPECT_EQ(type(editor, "\r", &events), "\r\n" + redrawn("", 2));
  ASSERT_EQ(events, std::vector<Event>{Event::kLine});
  EXPECT_EQ(editor.takeLine(), "ping");
  EXPECT_EQ(editor.buffer(), "");
  EXPECT_EQ(editor.cursor(), 0u);
}

TEST(LineEditor, CrLfFromOneEnterCompletesOneLine) {
  LineEditor editor("> ");
  std::vector<Event> events;
  type(editor, "a\r\nb\n", &events);
  EXPECT_EQ(events, (std::vector<Event>{Event::kLine, Event::kLine}));
  EXPECT_EQ(editor.takeLine(), "b");
}

TEST(LineEditor, CtrlDIsEndOfInputOnlyOnAnEmptyLine) {
  LineEditor editor("> ");
  std::vector<Event> events;
  type(editor, "ab");
  type(editor, kLeft);
  type(editor, "\x04", &events);  // deletes the 'b' under the cursor
  EXPECT_TRUE(events.empty());
  EXPECT_EQ(editor.buffer(), "a");
  type(editor, "\x04", &events);  // at the end of a non-empty line: nothing
  EXPECT_TRUE(events.empty());
  type(editor, "\x7f");
  EXPECT_EQ(type(editor, "\x04", &events), "\r\n");
  EXPECT_EQ(events, std::vector<Event>{Event::kEof});
  EXPECT_TRUE(editor.closed());
}

TEST(LineEditor, CtrlCInterruptsAndClosesTheEditor) {
  LineEditor editor("> ");
  std::vector<Event> events;
  type(editor, "half");
  EXPECT_EQ(type(editor, "\x03", &events), "^C\r\n");
  EXPECT_EQ(events, std::vector<Event>{Event::kInterrupt});
  EXPECT_TRUE(editor.closed());
  EXPECT_EQ(type(editor, "more\r", &events), "");  // a closed editor ignores input
  std::string out;
  editor.printAbove("t: late", out);  // output still shows, without a prompt
  EXPECT_EQ(out, "\r\x1b[Kt: late\r\n");
}

TEST(LineEditor, CtrlZAsksToSuspend) {
  LineEditor editor("> ");
  std::vector<Event> events;
  type(editor, "ab\x1a", &events);
  EXPECT_EQ(events, std::vector<Event>{Event::kSuspend});
  EXPECT_EQ(editor.buffer(), "ab");
  EXPECT_FALSE(editor.closed());
}

TEST(LineEditor, PrintAboveKeepsThePartialInputAndTheCursor) {
  LineEditor editor("> ");
  type(editor, "publish@t@hel");
  type(editor, std::string(kLeft) + kLeft);
  std::string out;
  editor.printAbove("news: sunny", out);
  EXPECT_EQ(out, "\r\x1b[Knews: sunny\r\n" + redrawn("publish@t@hel", 13));
  EXPECT_EQ(editor.buffer(), "publish@t@hel");
  EXPECT_EQ(editor.cursor(), 11u);
  type(editor, "X");  // typing goes on where it was
  EXPECT_EQ(editor.buffer(), "publish@t@hXel");
}

TEST(LineEditor, InsertsUtf8AsWholeCharacters) {
  LineEditor editor("> ");
  EXPECT_EQ(type(editor, "\xc3"), "");  // first byte of U+00E9: nothing to show yet
  EXPECT_EQ(type(editor, "\xa9"), "\xc3\xa9");
  type(editor, "\xe2\x82\xac");  // U+20AC
  EXPECT_EQ(editor.buffer(), "\xc3\xa9\xe2\x82\xac");
  EXPECT_EQ(type(editor, kLeft), redrawn("\xc3\xa9\xe2\x82\xac", 3));  // columns, not bytes
  EXPECT_EQ(editor.cursor(), 2u);
  type(editor, "\x7f");
  EXPECT_EQ(editor.buffer(), "\xe2\x82\xac");
}

TEST(LineEditor, DropsBrokenUtf8AndIgnoresOtherControls) {
  LineEditor editor("> ");
  EXPECT_EQ(type(editor, "\xc3x"), "x");      // a lead byte followed by ASCII
  EXPECT_EQ(type(editor, "\xff\xa9"), "");    // not a lead byte; a stray continuation byte
  EXPECT_EQ(type(editor, "\t\x07\x1c"), "");  // Tab, BEL, ^\ .
  EXPECT_EQ(editor.buffer(), "x");
}

TEST(LineEditor, IgnoresUnknownEscapeSequences) {
  LineEditor editor("> ");
  type(editor, "ab");
  EXPECT_EQ(type(editor, "\x1b[A\x1b[1;5B\x1b[200~\x1bx"), "");  // Up, Ctrl-Down, paste mark, Alt-x
  EXPECT_EQ(editor.buffer(), "ab");
  EXPECT_EQ(type(editor, "\x1b[1;5D"), redrawn("ab", 3));  // Ctrl-Left moves like Left
}

TEST(LineEditor, ScrollsLongInputSoTheCursorStaysVisible) {
  LineEditor editor("> ", 12);  // 12 columns: "> ", 9 for input, the last one free
  EXPECT_EQ(type(editor, "123456789"), "123456789");
  EXPECT_EQ(type(editor, "A"), redrawn("23456789A", 11));
  type(editor, "\x01");  // ^A: the window slides back to the start
  std::string out;
  editor.redraw(out);
  EXPECT_EQ(out, redrawn("123456789", 2));
  editor.setColumns(20);
  out.clear();
  editor.redraw(out);
  EXPECT_EQ(out, redrawn("123456789A", 2));
}

TEST(LineEditor, CtrlLClearsTheScreenAndRedraws) {
  LineEditor editor("> ");
  type(editor, "ab");
  EXPECT_EQ(type(editor, "\x0c"), "\x1b[H\x1b[2J" + redrawn("ab", 4));
}

TEST(LineEditor, EraseClearsThePromptRow) {
  LineEditor editor("> ");
  std::string out;
  editor.erase(out);
  EXPECT_EQ(out, "\r\x1b[K");
}

}  // namespace
}  // namespace tern::client
