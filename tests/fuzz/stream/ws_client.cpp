// The WebSocket client side: requests, frames, and the decoder. See ws_client.hpp.
#include "ws_client.hpp"

#include <algorithm>

#include "rng.hpp"

namespace tern::fuzz::ws {

namespace {

constexpr char kBase64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

}  // namespace

std::string randomKey(std::uint64_t& state) {
  unsigned char bytes[16];
  const std::uint64_t a = splitMix64(state);
  const std::uint64_t b = splitMix64(state);
  for (int i = 0; i < 8; ++i) {
    bytes[i] = static_cast<unsigned char>(a >> (8 * i));
    bytes[8 + i] = static_cast<unsigned char>(b >> (8 * i));
  }
  std::string out;
  for (int i = 0; i < 15; i += 3) {  // 5 groups of 3 bytes, then the 16th byte and "=="
    const unsigned v = (bytes[i] << 16) | (bytes[i + 1] << 8) | bytes[i + 2];
    for (int shift = 18; shift >= 0; shift -= 6)
      out += kBase64[(v >> shift) & 63];
  }
  out += kBase64[bytes[15] >> 2];
  out += kBase64[(bytes[15] & 3) << 4];
  out += "==";
  return out;
}

std::string upgradeRequest(std::uint16_t port, std::uint64_t& state) {
  return "GET /mqtt HTTP/1.1\r\nHost: 127.0.0.1:" + std::to_string(port) +
         "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: " + randomKey(state) +
         "\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n";
}

std::string frame(std::uint8_t first, std::string_view payload, std::uint64_t& state, bool masked) {
  std::string out;
  out.reserve(payload.size() + 14);
  out += static_cast<char>(first);
  const char maskBit = masked ? static_cast<char>(0x80) : 0;
  const std::uint64_t n = payload.size();
  if (n < 126) {
    out += static_cast<char>(maskBit | static_cast<char>(n));
  } else if (n <= 0xffff) {
    out += static_cast<char>(maskBit | 126);
    out += static_cast<char>(n >> 8);
    out += static_cast<char>(n);
  } else {
    out += static_cast<char>(maskBit | 127);
    for (int i = 0; i < 8; ++i)
      out += static_cast<char>(n >> (56 - 8 * i));
  }
  if (!masked) {
    out += payload;
    return out;
  }
  const std::uint64_t word = splitMix64(state);
  char key[4];
  for (int i = 0; i < 4; ++i)
    key[i] = static_cast<char>(word >> (8 * i));
  out.append(key, 4);
  for (std::size_t i = 0; i < payload.size(); ++i)
    out += static_cast<char>(payload[i] ^ key[i % 4]);
  return out;
}

std::string closePayload(std::uint16_t code, std::string_view reason) {
  std::string out;
  out += static_cast<char>(code >> 8);
  out += static_cast<char>(code);
  out += reason;
  return out;
}

void Decoder::feed(std::string_view bytes, std::string& payload) {
  // Each pass consumes input or changes phase, so this ends with the input.
  while (!bytes.empty() && phase_ != Phase::kOver) {
    switch (phase_) {
      case Phase::kHttp:
        feedHttp(bytes);
        break;
      case Phase::kHeader:
        feedHeader(bytes);
        break;
      case Phase::kPayload:
        feedPayload(bytes, payload);
        break;
      case Phase::kOver:
        break;
    }
  }
}

void Decoder::feedHttp(std::string_view& bytes) {
  // Only up to the end of the headers: frames may follow in the same read.
  const std::size_t before = buffer_.size();
  buffer_.append(bytes.substr(0, kMaxHttp - std::min(kMaxHttp, before)));
  const std::size_t end = buffer_.find("\r\n\r\n");
  if (end == std::string::npos) {
    bytes = {};
    if (buffer_.size() >= kMaxHttp) {
      why_ = "no end of the HTTP answer in " + std::to_string(kMaxHttp) + " bytes";
      phase_ = Phase::kOver;
    }
    return;
  }
  bytes.remove_prefix(end + 4 - before);
  const std::string status = buffer_.substr(0, buffer_.find("\r\n"));
  buffer_.clear();
  if (status.starts_with("HTTP/1.1 101")) {
    upgraded_ = true;
    phase_ = Phase::kHeader;
  } else {
    why_ = "upgrade refused: " + status.substr(0, 120);
    phase_ = Phase::kOver;
  }
}

void Decoder::feedHeader(std::string_view& bytes) {
  // Byte by byte until the header's length is known and it is whole (at most 14 bytes).
  while (!bytes.empty()) {
    buffer_ += bytes.front();
    bytes.remove_prefix(1);
    if (buffer_.size() < 2) continue;
    const auto second = static_cast<unsigned char>(buffer_[1]);
    const std::size_t lengthBytes = (second & 0x7f) == 127 ? 8 : (second & 0x7f) == 126 ? 2 : 0;
    const std::size_t size = 2 + lengthBytes + ((second & 0x80) != 0 ? 4 : 0);
    if (buffer_.size() < size) continue;
    opcode_ = static_cast<std::uint8_t>(buffer_[0] & 0x0f);
    masked_ = (second & 0x80) != 0;
    remaining_ = second & 0x7f;
    if (lengthBytes != 0) {
      remaining_ = 0;
      for (std::size_t i = 0; i < lengthBytes; ++i)
        remaining_ = (remaining_ << 8) | static_cast<unsigned char>(buffer_[2 + i]);
    }
    if (masked_) {
      for (int i = 0; i < 4; ++i)
        mask_[i] = static_cast<unsigned char>(buffer_[2 + lengthBytes + i]);
    }
    buffer_.clear();
    offset_ = 0;
    closeBody_.clear();
    phase_ = Phase::kPayload;
    if (remaining_ == 0) finishFrame();  // an empty frame ends with its header
    return;
  }
}

void Decoder::feedPayload(std::string_view& bytes, std::string& payload) {
  const std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(remaining_, bytes.size()));
  std::string_view chunk = bytes.substr(0, n);
  bytes.remove_prefix(n);
  remaining_ -= n;
  std::string unmasked;
  if (masked_) {
    unmasked.reserve(n);
    for (std::size_t i = 0; i < n; ++i)
      unmasked += static_cast<char>(chunk[i] ^ mask_[(offset_ + i) % 4]);
    chunk = unmasked;
  }
  offset_ += n;
  if (opcode_ == kBinary || opcode_ == kContinuation) {
    payload += chunk;
  } else if (opcode_ == kClose && closeBody_.size() < 125) {
    closeBody_ += chunk.substr(0, 125 - closeBody_.size());
  }
  if (remaining_ == 0) finishFrame();
}

void Decoder::finishFrame() {
  phase_ = Phase::kHeader;
  if (opcode_ == kClose) {
    const unsigned code = closeBody_.size() >= 2
                              ? (static_cast<unsigned char>(closeBody_[0]) << 8) |
                                    static_cast<unsigned char>(closeBody_[1])
                              : 0;
    why_ = "close frame " + (code != 0 ? std::to_string(code) : std::string("without a code"));
    phase_ = Phase::kOver;
  }
}

}  // namespace tern::fuzz::ws
