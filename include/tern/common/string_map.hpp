// StringMap<V>: an unordered_map keyed by std::string that is searched with a std::string_view,
// without building a std::string per lookup (C++20 heterogeneous lookup: a transparent hash and
// std::equal_to<>).
//
// Not thread-safe, as any standard container.
#pragma once

#include <cstddef>
#include <functional>
#include <string>
#include <string_view>
#include <unordered_map>

namespace tern::common {

struct StringHash {
  using is_transparent = void;
  std::size_t operator()(std::string_view text) const noexcept {
    return std::hash<std::string_view>{}(text);
  }
};

template <typename V>
using StringMap = std::unordered_map<std::string, V, StringHash, std::equal_to<>>;

}  // namespace tern::common
