// Appends JSON text to a std::string: strings with the escaping RFC 8259 requires, made valid
// UTF-8 on the way (ill-formed bytes become U+FFFD), and numbers.
//
// Pure functions; any thread. Used for LIST and STATS replies, which are built once per request.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace tern::protocol {

// Appends `text` as a JSON string literal, quotes included.
void appendJsonString(std::string& out, std::string_view text);

// Appends "<key>":<value> (without a leading comma).
void appendJsonField(std::string& out, std::string_view key, std::uint64_t value);

}  // namespace tern::protocol
