// Payload: what every loadgen publish carries, so that receivers can check it without shared state.
//
// Layout, all lowercase hex of fixed width, then padding up to the requested size:
//   bytes  0..7   publisher id      (32 bits)
//   bytes  8..23  sequence number   (64 bits, 0 for a publisher's first message)
//   bytes 24..39  intended send time (64 bits, steady-clock ns)
//   bytes 40..    padding 'a'..'z' repeating
// Only [0-9a-z] ever appear: no LF, no CR, no '@' (so the contents stay readable even to a parser
// that splits on '@'), valid UTF-8, safe as line-protocol contents and as an MQTT payload.
//
// Pure functions: any thread, never allocate.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

namespace tern::loadgen {

inline constexpr std::size_t kPayloadHeaderBytes = 40;
// Leaves room for "PUBLISH@<topic>@" under the line protocol's default 65536-byte frame limit.
inline constexpr std::size_t kMaxPayloadBytes = 65000;
// MQTT: a megabyte (the 1 MB round trips of perf/websocket), which leaves room for the topic and
// the headers under the broker's default --max-packet-size of 1 MiB.
inline constexpr std::size_t kMaxMqttPayloadBytes = 1000000;

struct PayloadFields {
  std::uint32_t publisher = 0;
  std::uint64_t sequence = 0;
  std::int64_t intendedNs = 0;
};

enum class PayloadStatus {
  kOk,
  kTooShort,  // fewer than kPayloadHeaderBytes bytes
  kBadDigit,  // a header byte is not a lowercase hex digit
};

// Writes the whole payload (header and padding) into `out`. REQUIRES: out.size() >=
// kPayloadHeaderBytes. Never allocates.
void encodePayload(std::span<char> out, const PayloadFields& fields) noexcept;

// Rewrites only the header of a payload whose padding is already in place (the per-message path:
// padding is written once per buffer). REQUIRES: out.size() >= kPayloadHeaderBytes.
void encodePayloadHeader(std::span<char> out, const PayloadFields& fields) noexcept;

// Reads the header of `payload` into `fields`; the padding is not inspected (receivers check the
// total size against what the run publishes). Never allocates.
PayloadStatus decodePayload(std::string_view payload, PayloadFields& fields) noexcept;

}  // namespace tern::loadgen
