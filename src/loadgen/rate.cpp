#include "tern/loadgen/rate.hpp"

#include <fmt/format.h>

#include <charconv>
#include <cmath>

namespace tern::loadgen {

namespace {

QuantityParse failure(std::string_view text, std::string_view why) {
  return {false, 0, fmt::format("'{}': {}", text, why)};
}

}  // namespace

QuantityParse parseQuantity(std::string_view text) {
  if (text.empty()) return failure(text, "empty; expected a number such as 2000, 50k or 1.5M");
  std::size_t i = 0;
  bool digits = false;
  bool point = false;
  for (; i < text.size(); ++i) {
    const char c = text[i];
    if (c >= '0' && c <= '9') {
      digits = true;
    } else if (c == '.' && !point) {
      point = true;
    } else {
      break;
    }
  }
  if (!digits) return failure(text, "expected a number such as 2000, 50k or 1.5M");
  const std::size_t numberEnd = i;
  double multiplier = 1;
  if (i < text.size()) {
    switch (text[i]) {
      case 'k':
      case 'K':
        multiplier = 1e3;
        break;
      case 'M':
        multiplier = 1e6;
        break;
      case 'G':
        multiplier = 1e9;
        break;
      case 'm':
        return failure(text, "'m' is ambiguous; write M for millions");
      default:
        return failure(text, fmt::format("unexpected '{}'; the suffixes are k, M and G", text[i]));
    }
    ++i;
  }
  if (i != text.size()) return failure(text, "unexpected characters after the suffix");
  // from_chars rounds correctly ("0.3" is the double nearest 0.3); the scan above guaranteed a
  // plain decimal, so the only possible failure is a number out of double's range.
  double number = 0;
  if (std::from_chars(text.data(), text.data() + numberEnd, number).ec != std::errc{}) {
    return failure(text, "too large");
  }
  const double value = number * multiplier;
  if (!std::isfinite(value)) return failure(text, "too large");
  return {true, value, {}};
}

QuantityParse parseRate(std::string_view text) {
  QuantityParse parsed = parseQuantity(text);
  if (parsed.ok && parsed.value <= 0) return failure(text, "a rate must be greater than zero");
  return parsed;
}

std::string formatRate(double perSecond) {
  const auto compact = [](double v, std::string_view suffix) {
    // Three significant digits, trailing zeros dropped: 1.5M, 50k, 123k.
    std::string digits = fmt::format("{:.{}f}", v, v >= 100 ? 0 : (v >= 10 ? 1 : 2));
    if (digits.find('.') != std::string::npos) {
      while (digits.back() == '0')
        digits.pop_back();
      if (digits.back() == '.') digits.pop_back();
    }
    return digits + std::string(suffix);
  };
  if (perSecond >= 1e9) return compact(perSecond / 1e9, "G");
  if (perSecond >= 1e6) return compact(perSecond / 1e6, "M");
  if (perSecond >= 1e4) return compact(perSecond / 1e3, "k");
  return fmt::format("{:.0f}", perSecond);
}

}  // namespace tern::loadgen
