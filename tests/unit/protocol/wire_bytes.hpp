// Test helper: packets written the way the specification's tables write them, as octets and
// text pieces: bytes({{0x30, 5, 0, 1}, "t", "xy"}).
#pragma once

#include <initializer_list>
#include <string>
#include <string_view>

namespace tern::protocol::mqtt::testing {

struct Bytes {
  std::string data;
  Bytes(std::initializer_list<int> octets) {
    for (const int b : octets)
      data.push_back(static_cast<char>(b));
  }
  Bytes(std::string_view text) : data(text) {}
  Bytes(const char* text) : data(text) {}
};

inline std::string bytes(std::initializer_list<Bytes> pieces) {
  std::string out;
  for (const Bytes& p : pieces)
    out += p.data;
  return out;
}

}  // namespace tern::protocol::mqtt::testing
