#include "tern/loadgen/ws_client.hpp"

#include <openssl/evp.h>
#include <openssl/rand.h>

#include <algorithm>
#include <chrono>
#include <cstring>

#include "tern/protocol/http_tokens.hpp"
#include "tern/protocol/ws_handshake.hpp"

namespace tern::loadgen::ws {

namespace {

using protocol::http::equalsIgnoreCase;
using protocol::http::hasToken;
using protocol::http::trim;

std::string base64(const unsigned char* bytes, std::size_t size) {
  // EVP_EncodeBlock writes 4 characters per 3 bytes and a terminating NUL.
  std::string text(4 * ((size + 2) / 3) + 1, '\0');
  const int n =
      EVP_EncodeBlock(reinterpret_cast<unsigned char*>(text.data()), bytes, static_cast<int>(size));
  text.resize(static_cast<std::size_t>(std::max(n, 0)));
  return text;
}

UpgradeResponse refused(std::string problem) {
  UpgradeResponse response;
  response.status = UpgradeResponse::Status::kRefused;
  response.problem = std::move(problem);
  return response;
}

// Printable for an error message: at most 100 bytes, control characters as '?'.
std::string printable(std::string_view text) {
  std::string out(text.substr(0, 100));
  for (char& ch : out)
    if (static_cast<unsigned char>(ch) < 32 || ch == 127) ch = '?';
  return out;
}

}  // namespace

std::string makeKey() {
  unsigned char nonce[16];
  if (RAND_bytes(nonce, sizeof nonce) != 1) {
    // No entropy to be had: any 16 bytes do, the key is no secret.
    const auto now = std::chrono::steady_clock::now().time_since_epoch().count();
    MaskKeys fallback(static_cast<std::uint64_t>(now));
    for (std::size_t i = 0; i < sizeof nonce; i += 4) {
      const std::uint32_t word = fallback.next();
      std::memcpy(nonce + i, &word, 4);
    }
  }
  return base64(nonce, sizeof nonce);
}

std::string acceptKey(std::string_view key) {
  return protocol::wsAcceptKey(key);  // the broker's own computation: both ends agree
}

std::string upgradeRequest(std::string_view host, std::string_view path, std::string_view key) {
  std::string request;
  request.reserve(200 + host.size() + path.size());
  request.append("GET ").append(path).append(" HTTP/1.1\r\nHost: ").append(host);
  request.append("\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ");
  request.append(key);
  request.append("\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n");
  return request;
}

UpgradeResponse parseUpgradeResponse(std::string_view input, std::string_view key) {
  const std::size_t end = input.substr(0, kMaxResponseBytes).find("\r\n\r\n");
  if (end == std::string_view::npos) {
    if (input.size() >= kMaxResponseBytes) {
      return refused("the broker's answer to the WebSocket upgrade has no end of headers");
    }
    return {};
  }
  std::string_view head = input.substr(0, end + 2);  // every line with its CRLF
  const auto nextLine = [&head]() {
    const std::size_t crlf = head.find("\r\n");
    const std::string_view line = head.substr(0, crlf);
    head.remove_prefix(crlf + 2);
    return line;
  };
  // "HTTP/1.1 101 Switching Protocols" (the reason phrase is free text).
  const std::string_view statusLine = nextLine();
  if (!statusLine.starts_with("HTTP/1.1 101") ||
      (statusLine.size() > 12 && statusLine[12] != ' ')) {
    return refused("the broker refused the WebSocket upgrade: " + printable(statusLine));
  }
  bool upgrade = false;
  bool connection = false;
  std::string_view accept;
  while (!head.empty()) {
    const std::string_view line = nextLine();
    const std::size_t colon = line.find(':');
    if (colon == std::string_view::npos) {
      return refused("a malformed header in the broker's 101 answer: " + printable(line));
    }
    const std::string_view name = line.substr(0, colon);
    const std::string_view value = trim(line.substr(colon + 1));
    if (equalsIgnoreCase(name, "Upgrade")) upgrade = upgrade || hasToken(value, "websocket");
    if (equalsIgnoreCase(name, "Connection")) connection = connection || hasToken(value, "upgrade");
    if (equalsIgnoreCase(name, "Sec-WebSocket-Accept")) accept = value;
  }
  if (!upgrade) return refused("the broker's 101 answer lacks Upgrade: websocket");
  if (!connection) return refused("the broker's 101 answer lacks Connection: Upgrade");
  if (accept.data() == nullptr)
    return refused("the broker's 101 answer lacks Sec-WebSocket-Accept");
  if (accept != acceptKey(key)) {
    return refused("the broker's Sec-WebSocket-Accept does not match the key: " +
                   printable(accept));
  }
  UpgradeResponse response;
  response.status = UpgradeResponse::Status::kAccepted;
  response.consumed = end + 4;
  return response;
}

MaskKeys MaskKeys::fromRandom() {
  std::uint64_t seed = 0;
  if (RAND_bytes(reinterpret_cast<unsigned char*>(&seed), sizeof seed) != 1) {
    seed = static_cast<std::uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
  }
  return MaskKeys(seed);
}

std::size_t writeMaskedHeader(Opcode opcode, std::uint64_t length, std::uint32_t mask,
                              char* out) noexcept {
  auto* o = reinterpret_cast<unsigned char*>(out);
  o[0] = static_cast<unsigned char>(0x80 | static_cast<unsigned>(opcode));
  std::size_t n = 2;
  if (length < 126) {
    o[1] = static_cast<unsigned char>(0x80 | length);
  } else if (length <= 0xffff) {
    o[1] = 0x80 | 126;
    o[2] = static_cast<unsigned char>(length >> 8);
    o[3] = static_cast<unsigned char>(length);
    n = 4;
  } else {
    o[1] = 0x80 | 127;
    for (int i = 0; i < 8; ++i)
      o[2 + i] = static_cast<unsigned char>(length >> (56 - 8 * i));
    n = 10;
  }
  o[n] = static_cast<unsigned char>(mask >> 24);
  o[n + 1] = static_cast<unsigned char>(mask >> 16);
  o[n + 2] = static_cast<unsigned char>(mask >> 8);
  o[n + 3] = static_cast<unsigned char>(mask);
  return n + 4;
}

void maskCopy(const char* in, char* out, std::size_t size, std::uint32_t mask,
              std::size_t offset) noexcept {
  const unsigned char key[4] = {
      static_cast<unsigned char>(mask >> 24), static_cast<unsigned char>(mask >> 16),
      static_cast<unsigned char>(mask >> 8), static_cast<unsigned char>(mask)};
  // The key as it lines up with in[0..7]; its period 4 divides 8, so one word serves throughout.
  unsigned char pattern[8];
  for (std::size_t i = 0; i < 8; ++i)
    pattern[i] = key[(i + offset) % 4];
  std::uint64_t word;
  std::memcpy(&word, pattern, 8);
  std::size_t i = 0;
  for (; i + 8 <= size; i += 8) {
    std::uint64_t chunk;
    std::memcpy(&chunk, in + i, 8);
    chunk ^= word;
    std::memcpy(out + i, &chunk, 8);
  }
  for (; i < size; ++i)
    out[i] = static_cast<char>(in[i] ^ static_cast<char>(pattern[i % 8]));
}

void appendFrame(net::ByteBuffer& out, Opcode opcode, std::string_view payload,
                 std::uint32_t mask) {
  char* at = out.writable(kMaxMaskedHeaderBytes + payload.size()).data();
  const std::size_t header = writeMaskedHeader(opcode, payload.size(), mask, at);
  maskCopy(payload.data(), at + header, payload.size(), mask);
  out.commit(header + payload.size());
}

// --- decoding ---------------------------------------------------------------------------------

FrameDecoder::Result FrameDecoder::fail(std::string_view problem) noexcept {
  done_ = true;
  result_ = {};
  result_.status = Status::kProtocol;
  result_.problem = problem;
  return result_;
}

bool FrameDecoder::refuse(std::string_view problem) noexcept {
  fail(problem);
  return false;
}

bool FrameDecoder::startFrame() noexcept {
  const bool fin = (header_[0] & 0x80) != 0;
  const unsigned op = header_[0] & 0x0f;
  if (headerNeed_ == 2) {
    // The first two bytes: everything but an extended length can be judged.
    if ((header_[0] & 0x70) != 0) return refuse("a WebSocket frame with reserved bits set");
    if ((header_[1] & 0x80) != 0) return refuse("a masked WebSocket frame from the broker");
    const unsigned length7 = header_[1] & 0x7f;
    switch (op) {
      case 0x0:
        if (!fragmented_) return refuse("a WebSocket continuation frame with no message");
        break;
      case 0x1:
        return refuse("a WebSocket text frame (MQTT travels in binary frames)");
      case 0x2:
        if (fragmented_) return refuse("a WebSocket binary frame inside a fragmented one");
        break;
      case 0x8:
      case 0x9:
      case 0xa:
        if (!fin) return refuse("a fragmented WebSocket control frame");
        if (length7 > kMaxControlPayload) {
          return refuse("a WebSocket control frame longer than 125 bytes");
        }
        break;
      default:
        return refuse("a WebSocket frame with an unknown opcode");
    }
    if (length7 == 126) headerNeed_ = 4;
    if (length7 == 127) headerNeed_ = 10;
    if (headerNeed_ != 2) return true;  // the extended length follows
  }
  std::uint64_t length = header_[1] & 0x7f;
  if (headerNeed_ == 4) {
    length = (std::uint64_t{header_[2]} << 8) | header_[3];
  } else if (headerNeed_ == 10) {
    length = 0;
    for (int i = 2; i < 10; ++i)
      length = (length << 8) | header_[i];
    if ((length >> 63) != 0) return refuse("a WebSocket frame length over 2^63");
  }
  opcode_ = static_cast<Opcode>(op);
  if (opcode_ == Opcode::kBinary || opcode_ == Opcode::kContinuation) fragmented_ = !fin;
  remaining_ = length;
  controlHave_ = 0;
  inPayload_ = true;
  return true;
}

FrameDecoder::Result FrameDecoder::endControl(net::ByteBuffer& replies, MaskKeys& masks) {
  switch (opcode_) {
    case Opcode::kPing:
      appendFrame(replies, Opcode::kPong, std::string_view(control_, controlHave_), masks.next());
      return {};
    case Opcode::kClose:
      if (controlHave_ == 1) return fail("a WebSocket close frame with a one-byte body");
      done_ = true;
      result_ = {};
      result_.status = Status::kClosed;
      if (controlHave_ == 0) {
        result_.closeCode = 1005;  // "no status code was present" (RFC 6455 section 7.4.1)
      } else {
        result_.closeCode =
            static_cast<std::uint16_t>((static_cast<unsigned char>(control_[0]) << 8) |
                                       static_cast<unsigned char>(control_[1]));
        result_.reason = std::string_view(control_ + 2, controlHave_ - 2);
      }
      return result_;
    default:  // a pong: nothing to do
      return {};
  }
}

FrameDecoder::Result FrameDecoder::decode(std::string_view bytes, net::ByteBuffer& payload,
                                          net::ByteBuffer& replies, MaskKeys& masks) {
  if (done_) return result_;
  while (!bytes.empty()) {
    if (!inPayload_) {
      const std::size_t n = std::min(headerNeed_ - headerHave_, bytes.size());
      std::memcpy(header_ + headerHave_, bytes.data(), n);
      headerHave_ += n;
      bytes.remove_prefix(n);
      if (headerHave_ < headerNeed_) break;
      if (!startFrame()) return result_;
      if (!inPayload_) continue;  // an extended length to read first
      if (remaining_ != 0) continue;
    } else {
      const std::size_t n =
          static_cast<std::size_t>(std::min<std::uint64_t>(remaining_, bytes.size()));
      if (opcode_ == Opcode::kBinary || opcode_ == Opcode::kContinuation) {
        payload.append(bytes.substr(0, n));
      } else {
        std::memcpy(control_ + controlHave_, bytes.data(), n);
        controlHave_ += n;
      }
      remaining_ -= n;
      bytes.remove_prefix(n);
      if (remaining_ != 0) break;
    }
    // The frame is complete.
    if (opcode_ != Opcode::kBinary && opcode_ != Opcode::kContinuation) {
      const Result result = endControl(replies, masks);
      if (result.status != Status::kOk) return result;
    }
    inPayload_ = false;
    headerHave_ = 0;
    headerNeed_ = 2;
  }
  return {};
}

}  // namespace tern::loadgen::ws
