#include "tern/protocol/json_writer.hpp"

#include <fmt/format.h>

#include "tern/common/utf8.hpp"

namespace tern::protocol {

void appendJsonString(std::string& out, std::string_view text) {
  std::string clean;
  std::string_view valid = text;
  if (!common::isValidUtf8(text)) {
    common::appendSanitizedUtf8(clean, text);
    valid = clean;
  }
  out.push_back('"');
  std::size_t run = 0;  // start of the pending run of bytes that need no escaping
  for (std::size_t i = 0; i < valid.size(); ++i) {
    const auto c = static_cast<unsigned char>(valid[i]);
    if (c >= 0x20 && c != '"' && c != '\\') continue;
    out.append(valid.substr(run, i - run));
    run = i + 1;
    switch (c) {
      case '"':
        out.append("\\\"");
        break;
      case '\\':
        out.append("\\\\");
        break;
      case '\n':
        out.append("\\n");
        break;
      case '\r':
        out.append("\\r");
        break;
      case '\t':
        out.append("\\t");
        break;
      case '\b':
        out.append("\\b");
        break;
      case '\f':
        out.append("\\f");
        break;
      default:
        fmt::format_to(std::back_inserter(out), "\\u{:04x}", c);
    }
  }
  out.append(valid.substr(run));
  out.push_back('"');
}

void appendJsonField(std::string& out, std::string_view key, std::uint64_t value) {
  appendJsonString(out, key);
  out.push_back(':');
  fmt::format_to(std::back_inserter(out), "{}", value);
}

}  // namespace tern::protocol
