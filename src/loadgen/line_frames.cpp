#include "tern/loadgen/line_frames.hpp"

namespace tern::loadgen {

namespace {

// Splits "<prefix><a>@<b>" into a and b; the prefix includes its '@'.
bool splitAfter(std::string_view frame, std::string_view prefix, std::string_view& first,
                std::string_view& rest) noexcept {
  if (!frame.starts_with(prefix)) return false;
  frame.remove_prefix(prefix.size());
  const std::size_t at = frame.find('@');
  if (at == std::string_view::npos) return false;
  first = frame.substr(0, at);
  rest = frame.substr(at + 1);
  return true;
}

}  // namespace

bool parseMessageFrame(std::string_view frame, std::string_view& topic,
                       std::string_view& contents) noexcept {
  return splitAfter(frame, "MESSAGE@", topic, contents) && !topic.empty();
}

bool parseConnack(std::string_view frame, std::string_view& token) noexcept {
  std::string_view clientId;
  return splitAfter(frame, "CONNACK@", clientId, token) && !clientId.empty() && !token.empty() &&
         token.find('@') == std::string_view::npos;
}

bool parseError(std::string_view frame, std::string_view& code) noexcept {
  if (!frame.starts_with("ERROR@")) return false;
  frame.remove_prefix(6);
  code = frame.substr(0, frame.find('@'));
  return true;
}

std::string connectFrame(std::string_view clientId, std::string_view username,
                         const std::optional<std::string>& password) {
  std::string frame = "CONNECT";
  if (!clientId.empty() || !username.empty()) {
    frame += '@';
    frame += clientId;
  }
  if (!username.empty()) {
    frame += '@';
    frame += username;
    frame += '@';
    if (password) frame += *password;
  }
  frame += '\n';
  return frame;
}

}  // namespace tern::loadgen
