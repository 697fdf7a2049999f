// libFuzzer target for MQTT over WebSockets' decoders: the opening handshake (parseWsHandshake)
// and the frames after it (WsStream, libwslay underneath). The first byte picks the mode: even,
// the rest is a connection's whole input (a handshake, then frames once it is accepted); odd,
// the rest is frames alone. Input is fed twice: at once, and in chunks whose sizes come from a
// PRNG seeded by a hash of the input (so a crash reproduces from the input alone), the way socket
// reads arrive. Invariants checked, besides ASan/UBSan finding no fault:
//   Handshake: every proper prefix of an input whose decision is kAccepted or kRefused is
//   kIncomplete or the same decision (the decision never depends on bytes past the headers'
//   end, except the 431 for a long request); an acceptance consumes the headers exactly (its
//   bytes end in CRLF CRLF) and answers "101 Switching Protocols" with a 28-character
//   Sec-WebSocket-Accept; a refusal answers an HTTP 4xx with "Connection: close" and a reason.
//   Frames: both feedings give the same payload bytes and the same state; each output is a
//   sequence of whole, unmasked server frames, pongs and at most one close, which comes last and
//   is the same in both; the pongs may differ in number (libwslay sends no pong once a close is
//   queued, so one read that holds a ping and a fault answers with the close alone); the
//   payload is never longer than the input; once closing, the close's code is one the RFC
//   allows a server to send, and later input changes nothing.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "tern/protocol/ws_handshake.hpp"
#include "tern/protocol/ws_stream.hpp"

namespace {

using tern::protocol::WsHandshake;
using tern::protocol::WsStream;

#define check(ok)                                                                    \
  do {                                                                               \
    if (!(ok)) {                                                                     \
      std::fprintf(stderr, "ws_fuzz: check failed at line %d: %s\n", __LINE__, #ok); \
      std::abort();                                                                  \
    }                                                                                \
  } while (false)

std::uint64_t hashOf(std::string_view s) {
  std::uint64_t h = 1469598103934665603ull;
  for (const char ch : s)
    h = (h ^ static_cast<unsigned char>(ch)) * 1099511628211ull;
  return h;
}

// The server frames of `out`: a pong count and the close frame (empty if none); aborts on
// anything else.
struct Frames {
  std::size_t pongs = 0;
  std::string close;
};

Frames serverFrames(std::string_view out) {
  Frames f;
  while (!out.empty()) {
    check(out.size() >= 2 && f.close.empty());
    const auto op = static_cast<unsigned char>(out[0]);
    const auto len = static_cast<unsigned char>(out[1]);
    check((op == 0x8a || op == 0x88) && len <= 125);  // unmasked, control frames are small
    check(out.size() >= 2u + len);
    if (op == 0x88) {
      f.close.assign(out.substr(0, 2u + len));
    } else {
      ++f.pongs;
    }
    out.remove_prefix(2u + len);
  }
  return f;
}

struct Decoded {
  std::string payload;
  std::string output;
  WsStream::State state = WsStream::State::kOpen;
};

Decoded decodeFrames(std::string_view frames, std::uint64_t seed, bool chunked) {
  constexpr std::size_t kMaxFrame = 4096;
  WsStream ws(kMaxFrame);
  Decoded d;
  std::uint64_t x = seed | 1;
  while (!frames.empty()) {
    std::size_t n = frames.size();
    if (chunked) {
      x ^= x << 13, x ^= x >> 7, x ^= x << 17;
      n = std::min<std::size_t>(frames.size(), 1 + x % 64);
    }
    d.state = ws.receive(frames.substr(0, n), d.payload, d.output);
    frames.remove_prefix(n);
  }
  if (d.state == WsStream::State::kClosing) {
    // A close frame ends the output: 0x88, a length of 0 or 2+, and a code a server may send.
    const std::uint16_t code = ws.closeSent();
    check(code == 1005 || (code >= 1000 && code <= 1011 && code != 1004 && code != 1006) ||
          (code >= 3000 && code <= 4999));
    std::string more;
    check(ws.receive("\x82\x81\x00\x00\x00\x00x", d.payload, more) == WsStream::State::kClosing);
    check(more.empty());
  }
  return d;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const bool framesOnly = (data[0] & 1) != 0;
  const std::string_view input(reinterpret_cast<const char*>(data) + 1, size - 1);
  const std::uint64_t seed = hashOf(input);
  std::string_view frames = input;
  if (!framesOnly) {
    const tern::protocol::WsHandshakeOptions options{512, {}};
    const WsHandshake h = tern::protocol::parseWsHandshake(input, options);
    if (h.status == WsHandshake::Status::kIncomplete) {
      check(input.size() < options.maxBytes && h.response.empty());
      return 0;
    }
    check(h.response.starts_with("HTTP/1.1 "));
    if (h.status == WsHandshake::Status::kRefused) {
      check(h.response[9] == '4' && !h.problem.empty());
      check(h.response.find("Connection: close\r\n") != std::string::npos);
    } else {
      check(h.consumed <= input.size() && h.consumed >= 4);
      check(input.substr(h.consumed - 4, 4) == "\r\n\r\n");
      check(h.response.starts_with("HTTP/1.1 101 Switching Protocols\r\n"));
      const std::size_t at = h.response.find("Sec-WebSocket-Accept: ");
      check(at != std::string::npos && h.response.find("\r\n", at) == at + 22 + 28);
    }
    // Prefixes decide nothing else (sampled: at most 64 of them).
    const std::size_t step = 1 + input.size() / 64;
    for (std::size_t n = 0; n < input.size(); n += step) {
      const WsHandshake p = tern::protocol::parseWsHandshake(input.substr(0, n), options);
      check(p.status == WsHandshake::Status::kIncomplete || p.status == h.status);
    }
    if (h.status != WsHandshake::Status::kAccepted) return 0;
    frames.remove_prefix(h.consumed);
  }
  const Decoded whole = decodeFrames(frames, seed, false);
  const Decoded pieces = decodeFrames(frames, seed, true);
  check(whole.payload == pieces.payload);
  check(whole.state == pieces.state);
  const Frames a = serverFrames(whole.output);
  const Frames b = serverFrames(pieces.output);
  check(a.close == b.close);
  check(a.close.empty() || whole.state == WsStream::State::kClosing);
  check(whole.payload.size() <= frames.size());
  return 0;
}
