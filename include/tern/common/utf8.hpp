// UTF-8 validation and repair, as MQTT and the line protocol define valid text.
//
// Pure functions: any thread, never allocate (except appendSanitizedUtf8, which appends to `out`).
#pragma once

#include <string>
#include <string_view>

namespace tern::common {

// True when `text` is well-formed UTF-8 (RFC 3629: no overlong forms, no surrogates U+D800..U+DFFF,
// nothing above U+10FFFF). NUL is well-formed here; callers that forbid it check separately.
bool isValidUtf8(std::string_view text) noexcept;

// Appends `text` to `out`, replacing each maximal ill-formed subsequence with U+FFFD (the
// "substitution of maximal subparts" practice of the Unicode standard, chapter 3).
void appendSanitizedUtf8(std::string& out, std::string_view text);

}  // namespace tern::common
