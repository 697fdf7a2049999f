#include "tern/common/utf8.hpp"

#include <cstdint>

namespace tern::common {
namespace {

// Length of the well-formed sequence starting at text[i], or 0 when ill-formed. When the result is
// 0, `maximal` receives the length of the maximal ill-formed subpart (at least 1): the lead byte
// and the continuation bytes that were valid before the sequence broke off.
std::size_t sequenceLength(std::string_view text, std::size_t i, std::size_t* maximal) noexcept {
  const auto byte = [&](std::size_t k) { return static_cast<std::uint8_t>(text[k]); };
  const std::uint8_t lead = byte(i);
  *maximal = 1;
  if (lead < 0x80) return 1;
  std::size_t need = 0;
  std::uint8_t lo = 0x80, hi = 0xBF;  // allowed range of the first continuation byte
  if (lead >= 0xC2 && lead <= 0xDF) {
    need = 1;
  } else if (lead == 0xE0) {
    need = 2, lo = 0xA0;
  } else if ((lead >= 0xE1 && lead <= 0xEC) || lead == 0xEE || lead == 0xEF) {
    need = 2;
  } else if (lead == 0xED) {
    need = 2, hi = 0x9F;  // excludes the surrogates
  } else if (lead == 0xF0) {
    need = 3, lo = 0x90;
  } else if (lead >= 0xF1 && lead <= 0xF3) {
    need = 3;
  } else if (lead == 0xF4) {
    need = 3, hi = 0x8F;  // nothing above U+10FFFF
  } else {
    return 0;
  }
  for (std::size_t k = 1; k <= need; ++k) {
    if (i + k >= text.size()) return 0;
    const std::uint8_t c = byte(i + k);
    const bool ok = k == 1 ? (c >= lo && c <= hi) : (c >= 0x80 && c <= 0xBF);
    if (!ok) return 0;
    *maximal = k + 1;  // counts the byte just accepted
  }
  return need + 1;
}

}  // namespace

bool isValidUtf8(std::string_view text) noexcept {
  std::size_t i = 0;
  while (i < text.size()) {
    // Fast path: eight ASCII bytes at a time.
    while (i + 8 <= text.size()) {
      std::uint64_t word = 0;
      for (std::size_t k = 0; k < 8; ++k) {
        word |= static_cast<std::uint64_t>(static_cast<std::uint8_t>(text[i + k])) << (8 * k);
      }
      if ((word & 0x8080808080808080ULL) != 0) break;
      i += 8;
    }
    if (i >= text.size()) break;
    std::size_t maximal = 0;
    const std::size_t n = sequenceLength(text, i, &maximal);
    if (n == 0) return false;
    i += n;
  }
  return true;
}

void appendSanitizedUtf8(std::string& out, std::string_view text) {
  std::size_t i = 0;
  while (i < text.size()) {
    std::size_t maximal = 0;
    const std::size_t n = sequenceLength(text, i, &maximal);
    if (n == 0) {
      out.append("\xEF\xBF\xBD");
      // The maximal subpart is the lead byte and the continuation bytes that were still valid; the
      // byte that broke the sequence starts the next one.
      i += maximal;
    } else {
      out.append(text.substr(i, n));
      i += n;
    }
  }
}

}  // namespace tern::common
