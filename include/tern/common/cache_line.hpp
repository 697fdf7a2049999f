// Cache-line size and a wrapper that gives a value a cache line of its own.
//
// Use it for data written by different threads side by side (per-thread counters, per-thread QSBR
// state): without the padding every write by one thread would invalidate the line the others use.
#pragma once

#include <cstddef>

namespace tern::common {

// 64 bytes on every x86-64 and most ARM64 parts. std::hardware_destructive_interference_size is not
// used because g++ warns that its value may change between compiler versions (an ABI hazard).
inline constexpr std::size_t kCacheLine = 64;

template <typename T>
struct alignas(kCacheLine) CacheAligned {
  T value{};
};

}  // namespace tern::common
