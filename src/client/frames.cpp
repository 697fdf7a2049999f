#include "tern/client/frames.hpp"

#include <algorithm>

namespace tern::client {
namespace {

char lowerAscii(char c) noexcept {
  return (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c;
}

bool equalsIgnoreCase(std::string_view a, std::string_view b) noexcept {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (lowerAscii(a[i]) != lowerAscii(b[i])) return false;
  }
  return true;
}

bool isBlank(char c) noexcept {
  return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

std::string_view trimBlanks(std::string_view text) noexcept {
  while (!text.empty() && isBlank(text.front()))
    text.remove_prefix(1);
  while (!text.empty() && isBlank(text.back()))
    text.remove_suffix(1);
  return text;
}

void appendCaret(std::string& out, unsigned char c) {
  out += '^';
  out += c == 0x7F ? '?' : static_cast<char>(c + 0x40);
}

}  // namespace

bool frameTypeIs(std::string_view frame, std::string_view type) noexcept {
  const std::size_t at = frame.find('@');
  return equalsIgnoreCase(frame.substr(0, at), type);
}

Input classifyInput(std::string_view line) noexcept {
  const std::string_view trimmed = trimBlanks(line);
  if (trimmed.empty()) return {InputKind::kEmpty, trimmed};
  if (frameTypeIs(trimmed, "connect")) return {InputKind::kConnect, trimmed};
  if (equalsIgnoreCase(trimmed, "disconnect")) return {InputKind::kDisconnect, trimmed};
  return {InputKind::kRequest, line};
}

std::optional<Push> parsePush(std::string_view frame) noexcept {
  Push push;
  if (frame.starts_with("MESSAGE@")) {
    frame.remove_prefix(8);
  } else if (frame.starts_with("RETAINED@")) {
    frame.remove_prefix(9);
    push.retained = true;
  } else {
    return std::nullopt;
  }
  const std::size_t at = frame.find('@');
  if (at == std::string_view::npos) return std::nullopt;
  push.topic = frame.substr(0, at);
  push.contents = frame.substr(at + 1);
  return push;
}

void appendPushLine(std::string& out, const Push& push) {
  out.append(push.topic);
  out.append(": ");
  out.append(push.contents);
}

void appendReplyLine(std::string& out, std::string_view frame) {
  out.append("server: ");
  out.append(frame);
}

void appendTerminalSafe(std::string& out, std::string_view text) {
  for (std::size_t i = 0; i < text.size(); ++i) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c < 0x20 || c == 0x7F) {
      appendCaret(out, c);
    } else if (c == 0xC2 && i + 1 < text.size() &&
               static_cast<unsigned char>(text[i + 1]) >= 0x80 &&
               static_cast<unsigned char>(text[i + 1]) <= 0x9F) {
      // U+0080..U+009F: C1 controls. 0x9B alone is CSI on terminals that honour 8-bit controls.
      out.append("M-");
      appendCaret(out, static_cast<unsigned char>(text[i + 1]) - 0x80);
      ++i;
    } else {
      out += static_cast<char>(c);
    }
  }
}

std::string_view describe(PublishCheck check) noexcept {
  switch (check) {
    case PublishCheck::kOk:
      return "ok";
    case PublishCheck::kEmptyTopic:
      return "the topic must not be empty";
    case PublishCheck::kTopicSeparator:
      return "the topic must not contain '@' (the line protocol's field separator)";
    case PublishCheck::kLineBreak:
      return "topic and message must not contain a line feed (it ends a frame)";
    case PublishCheck::kTrailingCr:
      return "the message must not end with a carriage return (the framing drops it)";
    case PublishCheck::kAmbiguousRetain:
      return "a message ending in \"@retain\" would be read as the retain flag; it can only be "
             "published retained (-r)";
  }
  return "unknown";
}

PublishCheck appendPublish(std::string& out, std::string_view topic, std::string_view contents,
                           bool retain) {
  if (topic.empty()) return PublishCheck::kEmptyTopic;
  if (topic.find('@') != std::string_view::npos) return PublishCheck::kTopicSeparator;
  if (topic.find('\n') != std::string_view::npos || contents.find('\n') != std::string_view::npos) {
    return PublishCheck::kLineBreak;
  }
  if (!retain) {
    // With the flag the frame ends in "@retain", so only unretained contents lose a final CR.
    if (!contents.empty() && contents.back() == '\r') return PublishCheck::kTrailingCr;
    // The broker reads a last field "retain" as the flag once the frame has four fields, that is
    // when the contents hold an '@' and end with "@retain".
    constexpr std::string_view kFlag = "@retain";
    if (contents.size() >= kFlag.size() &&
        equalsIgnoreCase(contents.substr(contents.size() - kFlag.size()), kFlag)) {
      return PublishCheck::kAmbiguousRetain;
    }
  }
  out.append("PUBLISH@");
  out.append(topic);
  out += '@';
  out.append(contents);
  if (retain) out.append("@retain");
  return PublishCheck::kOk;
}

std::string connectWithCredentials(std::string_view connect, std::string_view username,
                                   const std::optional<std::string>& password) {
  std::string frame(connect);
  const auto fields = std::count(connect.begin(), connect.end(), '@');
  if (username.empty() || fields > 1) return frame;
  frame += fields == 0 ? "@@" : "@";
  frame += username;
  frame += '@';
  if (password) frame += *password;
  return frame;
}

}  // namespace tern::client
