// The client side of MQTT over WebSockets (RFC 6455) for loadgen's sessions: the opening
// handshake (the upgrade request a session sends first and the check of the broker's 101
// answer), the encoder of the masked frames a client sends, and an incremental decoder of the
// broker's (unmasked) frames.
//
// How a session uses it (session_socket.hpp): it sends upgradeRequest() and, in the same write,
// its first frames (the broker decodes what follows the request), so it never waits for the 101.
// Each turn's MQTT bytes are framed at once as ONE binary frame (appendFrame); what the broker
// sends is read through parseUpgradeResponse() once, then FrameDecoder::decode(), which hands
// the binary payload on as it arrives (a frame is never buffered whole), answers pings and
// reports a close or a frame a server must not send.
//
// Mask keys come from MaskKeys, a xorshift generator seeded per socket from OpenSSL's RAND_bytes:
// RFC 6455 wants them unpredictable to scripts in a browser sharing a proxy, which a load
// generator is not; they are never used for anything but masking.
//
// Pure functions and per-socket values; upgradeRequest(), makeKey() and a refusal allocate, the
// frame encoder and decoder never do once their output buffers have grown. One thread at a time.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "tern/net/byte_buffer.hpp"

namespace tern::loadgen::ws {

enum class Opcode : std::uint8_t {
  kContinuation = 0x0,
  kText = 0x1,
  kBinary = 0x2,
  kClose = 0x8,
  kPing = 0x9,
  kPong = 0xa,
};

// --- the opening handshake -------------------------------------------------------------------

// A fresh Sec-WebSocket-Key: 16 random bytes (RAND_bytes) in base64, 24 characters.
std::string makeKey();
// base64(SHA-1(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11")) (RFC 6455 section 4.2.2), with
// OpenSSL's EVP digest and EVP_EncodeBlock.
std::string acceptKey(std::string_view key);
// "GET <path> HTTP/1.1" with Host, Upgrade: websocket, Connection: Upgrade, Sec-WebSocket-Key,
// Sec-WebSocket-Version: 13 and Sec-WebSocket-Protocol: mqtt, ending in the blank line.
std::string upgradeRequest(std::string_view host, std::string_view path, std::string_view key);

struct UpgradeResponse {
  enum class Status {
    kIncomplete,  // no end of headers yet: wait for more input
    kAccepted,    // 101 with the right accept key; the first `consumed` bytes were the answer
    kRefused,     // anything else; `problem` says what
  };
  Status status = Status::kIncomplete;
  std::size_t consumed = 0;
  std::string problem;
};
// The most an answer's status line and headers may take before it counts as refused.
inline constexpr std::size_t kMaxResponseBytes = 8192;
// Reads the broker's answer to upgradeRequest(key) from the front of `input`: it must be
// "HTTP/1.1 101", with Upgrade: websocket, Connection: Upgrade and Sec-WebSocket-Accept equal
// to acceptKey(key) (header names case-insensitive).
UpgradeResponse parseUpgradeResponse(std::string_view input, std::string_view key);

// --- frames a client sends -------------------------------------------------------------------

// A fast generator of 32-bit mask keys (xorshift64*), one per socket.
class MaskKeys {
 public:
  // A generator seeded from RAND_bytes (a fresh one per connection).
  static MaskKeys fromRandom();
  explicit MaskKeys(std::uint64_t seed) noexcept : state_(seed != 0 ? seed : 0x9e3779b97f4a7c15) {}
  std::uint32_t next() noexcept {
    state_ ^= state_ >> 12;
    state_ ^= state_ << 25;
    state_ ^= state_ >> 27;
    return static_cast<std::uint32_t>((state_ * 0x2545f4914f6cdd1dULL) >> 32);
  }

 private:
  std::uint64_t state_;
};

// The longest header of a masked frame: 2 bytes, a 64-bit length, a 4-byte mask key.
inline constexpr std::size_t kMaxMaskedHeaderBytes = 14;
// The header of a masked frame (FIN set) of `length` payload bytes: 2, 4 or 10 bytes of opcode
// and length, then the mask key, whose bytes on the wire are `mask` from its high byte down.
// Written to `out`; returns its size (6, 8 or 14).
std::size_t writeMaskedHeader(Opcode opcode, std::uint64_t length, std::uint32_t mask,
                              char* out) noexcept;
// Copies `size` bytes from `in` to `out` XOR the mask key (`in` == `out` masks in place),
// eight bytes at a time. `offset`: the position of in[0] in the frame's payload.
void maskCopy(const char* in, char* out, std::size_t size, std::uint32_t mask,
              std::size_t offset = 0) noexcept;
// Appends one masked final frame of `opcode` carrying `payload` to `out`. Allocates only when
// `out` grows.
void appendFrame(net::ByteBuffer& out, Opcode opcode, std::string_view payload, std::uint32_t mask);

// --- frames the broker sends -----------------------------------------------------------------

// The payload a control frame may carry (RFC 6455 section 5.5).
inline constexpr std::size_t kMaxControlPayload = 125;

class FrameDecoder {
 public:
  enum class Status {
    kOk,        // every byte was taken; go on
    kClosed,    // the broker sent a close frame: closeCode (1005 without one) and reason
    kProtocol,  // a frame a server must not send: problem says which
  };
  struct Result {
    Status status = Status::kOk;
    std::uint16_t closeCode = 0;
    std::string_view reason;   // kClosed: the close frame's reason text (valid until next call)
    std::string_view problem;  // kProtocol: a constant string
  };

  // Decodes `bytes`, the next of the broker's stream: the payload of binary frames and their
  // continuations is appended to `payload` as it arrives; a ping is answered by appending a
  // masked pong (mask from `masks`) to `replies`; a pong is ignored. After kClosed or kProtocol
  // the stream is over: the decoder must not be fed again (reset() starts a new one).
  Result decode(std::string_view bytes, net::ByteBuffer& payload, net::ByteBuffer& replies,
                MaskKeys& masks);
  void reset() noexcept { *this = FrameDecoder(); }

 private:
  Result fail(std::string_view problem) noexcept;
  bool refuse(std::string_view problem) noexcept;  // fail(), then false
  // Checks the header in header_ (headerHave_ == headerNeed_); false with result_ set on a bad
  // frame.
  bool startFrame() noexcept;
  // The control frame in control_ is complete.
  Result endControl(net::ByteBuffer& replies, MaskKeys& masks);

  unsigned char header_[10] = {};
  std::size_t headerHave_ = 0;
  std::size_t headerNeed_ = 2;
  bool inPayload_ = false;       // reading a frame's payload (its header is done)
  std::uint64_t remaining_ = 0;  // payload bytes of the current frame still to come
  Opcode opcode_ = Opcode::kBinary;
  bool fragmented_ = false;  // a binary message without its final frame yet
  char control_[kMaxControlPayload] = {};
  std::size_t controlHave_ = 0;
  Result result_;
  bool done_ = false;
};

}  // namespace tern::loadgen::ws
