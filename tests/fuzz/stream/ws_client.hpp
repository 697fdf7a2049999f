// The client end of MQTT over WebSockets (RFC 6455, subprotocol "mqtt") for the stream fuzzer:
// the HTTP upgrade request, masked frames, and a decoder of what the broker answers.
//
// Frames are built here for everything the fuzzer sends in frames: ClientStream's own sends (one
// binary frame each), the executor's send modes (per-chunk frames, one frame cut at the split
// points, fragmented messages, pings, closes) and the generator's hostile frames (which it then
// sends as raw bytes). Masking keys and the upgrade's Sec-WebSocket-Key come from a SplitMix64
// state the caller owns, so the bytes of a case depend on the case alone and a case replays.
//
// The decoder reads the broker's side: the HTTP answer to the upgrade (a 101, or a refusal after
// which the broker closes), then frames, streamed (a frame's payload is handed on as it arrives,
// so nothing waits for a whole frame and at most a frame header and a close payload are held).
// The broker's frames are unmasked; a masked one is unmasked anyway (the decoder judges nothing,
// it only has to find MQTT's bytes).
//
// Pure values and functions; single-threaded.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace tern::fuzz::ws {

inline constexpr std::uint8_t kContinuation = 0x0;
inline constexpr std::uint8_t kText = 0x1;
inline constexpr std::uint8_t kBinary = 0x2;
inline constexpr std::uint8_t kClose = 0x8;
inline constexpr std::uint8_t kPing = 0x9;
inline constexpr std::uint8_t kPong = 0xa;

// A valid upgrade request for 127.0.0.1:`port` (GET /mqtt, Upgrade, Connection,
// Sec-WebSocket-Key of 16 bytes drawn from `state`, Sec-WebSocket-Version 13,
// Sec-WebSocket-Protocol mqtt).
std::string upgradeRequest(std::uint16_t port, std::uint64_t& state);

// A base64 Sec-WebSocket-Key: 16 bytes drawn from `state`.
std::string randomKey(std::uint64_t& state);

// One frame: `first` is the first header byte as sent (FIN, RSV1-3, opcode), the payload masked
// with a key drawn from `state` (nothing is drawn when !masked). The length takes the shortest
// form (7, 16 or 64 bits).
std::string frame(std::uint8_t first, std::string_view payload, std::uint64_t& state,
                  bool masked = true);
// The first header byte of a frame with this FIN and opcode (no reserved bits).
constexpr std::uint8_t firstByte(bool fin, std::uint8_t opcode) noexcept {
  return static_cast<std::uint8_t>((fin ? 0x80 : 0) | (opcode & 0x0f));
}
// A close frame's payload: the code (big-endian), then the reason.
std::string closePayload(std::uint16_t code, std::string_view reason = {});

class Decoder {
 public:
  // Decodes `bytes` from the broker: the payload of binary and continuation frames is appended
  // to `payload`; text, ping and pong payloads are dropped; a close frame ends it.
  void feed(std::string_view bytes, std::string& payload);

  // The broker answered the upgrade with 101 Switching Protocols.
  bool upgraded() const noexcept { return upgraded_; }
  // Nothing more carries MQTT: a close frame arrived, or the upgrade was refused.
  bool over() const noexcept { return phase_ == Phase::kOver; }
  // What ended it: "upgrade refused: <status line>", "close frame <code>", or empty.
  const std::string& why() const noexcept { return why_; }

 private:
  enum class Phase : std::uint8_t { kHttp, kHeader, kPayload, kOver };
  // Bounds what is held for the HTTP answer: the broker's are well under 1 KiB.
  static constexpr std::size_t kMaxHttp = 16 * 1024;

  void feedHttp(std::string_view& bytes);
  void feedHeader(std::string_view& bytes);
  void feedPayload(std::string_view& bytes, std::string& payload);
  void finishFrame();

  Phase phase_ = Phase::kHttp;
  bool upgraded_ = false;
  std::string buffer_;  // kHttp: the answer so far; kHeader: the frame header so far (<= 14)
  std::uint8_t opcode_ = 0;
  bool masked_ = false;
  unsigned char mask_[4] = {};
  std::uint64_t remaining_ = 0;  // kPayload: payload bytes still to come
  std::uint64_t offset_ = 0;     // kPayload: payload bytes seen (the mask's phase)
  std::string closeBody_;        // a close frame's payload (<= 125 bytes kept)
  std::string why_;
};

}  // namespace tern::fuzz::ws
