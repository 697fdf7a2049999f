// Parsing of human quantities on the loadgen command line: "50k", "1.5M", "2000".
//
// A quantity is a decimal number (digits with at most one '.') followed by at most one suffix:
// k or K (x1e3), M (x1e6), G (x1e9). Lowercase 'm' is refused rather than guessed (milli or mega?).
// Pure functions: any thread. Errors are values: the message says what was wrong with the text.
#pragma once

#include <string>
#include <string_view>

namespace tern::loadgen {

struct QuantityParse {
  bool ok = false;
  double value = 0;
  std::string error;  // empty when ok
};

// Parses a non-negative quantity as above.
QuantityParse parseQuantity(std::string_view text);

// Parses a rate in events per second: a quantity that must be > 0.
QuantityParse parseRate(std::string_view text);

// Formats a rate compactly for humans: 950, 50k, 1.5M (three significant digits at most).
std::string formatRate(double perSecond);

}  // namespace tern::loadgen
