// HTTP header helpers of the WebSocket opening handshake, both ends (the broker's
// parseWsHandshake, loadgen's check of the 101 answer): header names and tokens compare
// case-insensitively (RFC 7230 section 3.2, RFC 6455 section 4), values lose surrounding blanks,
// and list-valued headers (Connection, Upgrade, Sec-WebSocket-Protocol) are searched token by
// token.
//
// Pure functions: any thread, never allocate.
#pragma once

#include <algorithm>
#include <string_view>

namespace tern::protocol::http {

inline char lower(char ch) noexcept {
  return ch >= 'A' && ch <= 'Z' ? static_cast<char>(ch + 32) : ch;
}

inline bool equalsIgnoreCase(std::string_view a, std::string_view b) noexcept {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(),
                                            [](char x, char y) { return lower(x) == lower(y); });
}

// `s` without the spaces and tabs around it.
inline std::string_view trim(std::string_view s) noexcept {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t'))
    s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t'))
    s.remove_suffix(1);
  return s;
}

// Whether the comma-separated list `value` holds `token` (case-insensitive).
inline bool hasToken(std::string_view value, std::string_view token) noexcept {
  while (!value.empty()) {
    const std::size_t comma = value.find(',');
    if (equalsIgnoreCase(trim(value.substr(0, comma)), token)) return true;
    if (comma == std::string_view::npos) break;
    value.remove_prefix(comma + 1);
  }
  return false;
}

}  // namespace tern::protocol::http
