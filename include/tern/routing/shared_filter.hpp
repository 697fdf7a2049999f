// Shared subscription filters: "$share/<name>/<filter>" (MQTT 5.0 4.8.2), read apart into the
// share name and the filter that matches topics. Pure functions; any thread; no allocation.
#pragma once

#include <string_view>

namespace tern::routing {

// A subscription filter read as a shared one: "$share/<name>/<filter>".
struct SharedFilter {
  enum class Kind {
    kNotShared,  // an ordinary filter
    kShared,     // name and filter are set
    kInvalid,    // starts with "$share/" but has no valid share name or no filter after it
  };
  Kind kind = Kind::kNotShared;
  std::string_view name;
  std::string_view filter;
};
// Splits `subscription` (a valid topic filter) [MQTT-4.8.2-1, 4.8.2-2]: the share name is at least
// one character and holds no '/', '+' or '#'; the filter after it is at least one level.
SharedFilter parseSharedFilter(std::string_view subscription) noexcept;
// The filter a subscription matches topics with: `subscription` itself, or the part of a shared
// one after its share name.
std::string_view effectiveFilter(std::string_view subscription) noexcept;

}  // namespace tern::routing
