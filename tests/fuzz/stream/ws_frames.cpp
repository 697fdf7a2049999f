// The generator's WebSocket vocabulary: upgrade requests and frames, valid and hostile. See
// frames.hpp (its WebSocket section); the frame layout is ws_client.hpp's.
#include <algorithm>
#include <string_view>
#include <utility>
#include <vector>

#include "frames.hpp"
#include "ws_client.hpp"

namespace tern::fuzz::frames {

namespace {

// The broker's largest client frame with the fuzzer's --max-packet-size 65536 (64 KiB more).
constexpr std::uint64_t kBrokerMaxFrame = 65536 + 64 * 1024;

std::string randomText(Rng& rng, std::size_t size) {
  static constexpr std::string_view kChars = "abcdefghijklmnopqrstuvwxyz0123456789-";
  std::string s;
  for (std::size_t i = 0; i < size; ++i)
    s += kChars[rng.below(kChars.size())];
  return s;
}

std::string key(Rng& rng) {
  std::uint64_t state = rng.next();
  return ws::randomKey(state);
}

// A header name in a case HTTP does not care about.
std::string anyCase(Rng& rng, std::string_view name) {
  std::string out(name);
  const std::uint64_t how = rng.below(4);
  for (char& ch : out) {
    if (how == 1 && ch >= 'a' && ch <= 'z') ch = static_cast<char>(ch - 32);
    if (how == 2 && ch >= 'A' && ch <= 'Z') ch = static_cast<char>(ch + 32);
  }
  return out;
}

using Headers = std::vector<std::pair<std::string, std::string>>;

Headers validHeaders(Rng& rng) {
  Headers h{{anyCase(rng, "Host"), "127.0.0.1"},
            {anyCase(rng, "Upgrade"), rng.chance(80) ? "websocket" : "WebSocket"},
            {anyCase(rng, "Connection"), rng.chance(80) ? "Upgrade" : "keep-alive, Upgrade"},
            {anyCase(rng, "Sec-WebSocket-Key"), key(rng)},
            {anyCase(rng, "Sec-WebSocket-Version"), "13"}};
  if (rng.chance(90)) {
    static constexpr std::string_view kProtocols[] = {"mqtt", "mqtt", "mqttv3.1, mqtt",
                                                      "mqtt, mqttv5"};
    h.emplace_back(anyCase(rng, "Sec-WebSocket-Protocol"), std::string(rng.pick(kProtocols)));
  }
  if (rng.chance(20)) h.emplace_back("Origin", "http://localhost");
  if (rng.chance(20)) h.emplace_back("User-Agent", "stream_fuzz/" + randomText(rng, 6));
  if (rng.chance(15)) {
    h.emplace_back("Sec-WebSocket-Extensions", "permessage-deflate; client_max_window_bits");
  }
  if (rng.chance(30)) {  // any order
    for (std::size_t i = h.size(); i > 1; --i)
      std::swap(h[i - 1], h[rng.below(i)]);
  }
  return h;
}

std::string request(std::string_view requestLine, const Headers& headers,
                    std::string_view end = "\r\n") {
  std::string out(requestLine);
  out += end;
  for (const auto& [name, value] : headers)
    out += name + ": " + value + std::string(end);
  out += end;
  return out;
}

void erase(Headers& h, std::string_view lowerName) {
  std::erase_if(h, [&](const auto& header) {
    std::string name = header.first;
    for (char& ch : name)
      if (ch >= 'A' && ch <= 'Z') ch = static_cast<char>(ch + 32);
    return name == lowerName;
  });
}

void set(Headers& h, std::string_view lowerName, std::string value) {
  erase(h, lowerName);
  h.emplace_back(std::string(lowerName), std::move(value));
}

// A frame header announcing `length` with the shortest form or (`wide`) the 64-bit one, masked,
// with the key from the Rng; the payload is the caller's.
std::string header(Rng& rng, std::uint8_t first, std::uint64_t length, bool wide = false) {
  std::string out(1, static_cast<char>(first));
  if (length < 126 && !wide) {
    out += static_cast<char>(0x80 | length);
  } else if (length <= 0xffff && !wide) {
    out += static_cast<char>(0x80 | 126);
    out += static_cast<char>(length >> 8);
    out += static_cast<char>(length);
  } else {
    out += static_cast<char>(0x80 | 127);
    for (int i = 0; i < 8; ++i)
      out += static_cast<char>(length >> (56 - 8 * i));
  }
  const std::uint64_t word = rng.next();
  for (int i = 0; i < 4; ++i)
    out += static_cast<char>(word >> (8 * i));
  return out;
}

}  // namespace

std::string wsUpgrade(Rng& rng) {
  return request("GET /mqtt HTTP/1.1", validHeaders(rng));
}

std::string wsHostileUpgrade(Rng& rng) {
  Headers h = validHeaders(rng);
  std::string line = "GET /mqtt HTTP/1.1";
  switch (rng.below(16)) {
    case 0: {  // a header missing
      static constexpr std::string_view kNames[] = {"host", "upgrade", "connection",
                                                    "sec-websocket-key", "sec-websocket-version"};
      erase(h, rng.pick(kNames));
      break;
    }
    case 1: {  // a header twice
      const auto copy = h[rng.below(h.size())];
      h.push_back(copy);
      break;
    }
    case 2: {  // a key that is not 16 bytes in base64
      static constexpr std::string_view kKeys[] = {"",
                                                   "dGhlIHNhbXBsZSBub25jZQ",
                                                   "short==",
                                                   "dGhlIHNhbXBsZSBub25jZQ==x",
                                                   "!!!!!!!!!!!!!!!!!!!!!!==",
                                                   "dGhlIHNhbXBsZSBub25jZQ=="};
      set(h, "sec-websocket-key", std::string(rng.pick(kKeys)));
      break;
    }
    case 3: {  // another version
      static constexpr std::string_view kVersions[] = {"8", "12", "14", "", "13, 8", "013"};
      set(h, "sec-websocket-version", std::string(rng.pick(kVersions)));
      break;
    }
    case 4:
      set(h, "sec-websocket-protocol", rng.chance(50) ? "mqttv5" : "");
      break;
    case 5: {
      static constexpr std::string_view kLines[] = {"POST /mqtt HTTP/1.1",  "HEAD /mqtt HTTP/1.1",
                                                    "get /mqtt HTTP/1.1",   "GET /mqtt HTTP/1.0",
                                                    "GET /mqtt HTTP/2.0",   "GET /mqtt",
                                                    "GET  /mqtt  HTTP/1.1", "GET / HTTP/1.1"};
      line = rng.pick(kLines);
      break;
    }
    case 6:
      set(h, "upgrade", rng.chance(50) ? "h2c" : "websocket2");
      break;
    case 7:
      set(h, "connection", rng.chance(50) ? "close" : "keep-alive");
      break;
    case 8:  // a line that is no header
      h.emplace_back("no colon here", "");
      h.back().first = rng.chance(50) ? "no colon here" : " folded";
      break;
    case 9:  // headers past the 8 KiB limit: 431
      h.emplace_back("X-Padding", std::string(rng.range(8200, 20000), 'p'));
      break;
    case 10:  // many small headers, near the limit
      for (std::size_t i = rng.range(100, 400); i > 0; --i)
        h.emplace_back("X-" + randomText(rng, 4), randomText(rng, 12));
      break;
    case 11:  // bare LFs
      return request(line, h, "\n");
    case 12: {  // NULs and control bytes inside
      std::string r = request(line, h);
      r.insert(rng.below(r.size()), std::string("\0\x01\x7f", 3));
      return r;
    }
    case 13: {  // garbage
      std::string r;
      for (std::size_t i = rng.range(1, 300); i > 0; --i)
        r += static_cast<char>(rng.below(256));
      return rng.chance(50) ? r : r + "\r\n\r\n";
    }
    case 14: {  // a valid request, mutated
      std::string r = request(line, h);
      for (std::size_t n = 1 + rng.skewed(2); n > 0; --n)
        mutateBytes(rng, r);
      return r;
    }
    default:  // a valid request without its end: the broker waits (--handshake-timeout)
      return request(line, h).substr(0, request(line, h).size() - 2);
  }
  return request(line, h);
}

std::string wsFrame(Rng& rng, std::uint8_t first, std::string_view payload, bool masked) {
  std::uint64_t state = rng.next();
  return ws::frame(first, payload, state, masked);
}

std::string wsDataFrames(Rng& rng, std::string_view payload) {
  const auto control = [&rng]() {
    return wsFrame(rng, ws::firstByte(true, rng.chance(70) ? ws::kPing : ws::kPong),
                   randomText(rng, rng.below(20)));
  };
  if (payload.size() < 2 || rng.chance(40)) {
    std::string out = wsFrame(rng, ws::firstByte(true, ws::kBinary), payload);
    if (rng.chance(20)) out = control() + out;
    return out;
  }
  std::string out;
  std::size_t from = 0;
  for (std::size_t pieces = rng.range(2, 5); from < payload.size(); --pieces) {
    const std::size_t to = pieces <= 1 ? payload.size() : rng.range(from, payload.size());
    const bool last = to == payload.size();
    out += wsFrame(rng, ws::firstByte(last, from == 0 ? ws::kBinary : ws::kContinuation),
                   payload.substr(from, to - from));
    if (!last && rng.chance(25)) out += control();
    from = to;
  }
  return out;
}

std::string wsHostileFrame(Rng& rng) {
  const std::string some = randomText(rng, rng.below(40));
  switch (rng.below(17)) {
    case 0:  // unmasked: 1002
      return wsFrame(rng, ws::firstByte(true, ws::kBinary), mqttPacket(rng), false);
    case 1:  // reserved bits
      return wsFrame(
          rng, static_cast<std::uint8_t>(ws::firstByte(true, ws::kBinary) | (0x10 << rng.below(3))),
          mqttPacket(rng));
    case 2: {  // opcodes RFC 6455 reserves
      static constexpr std::uint8_t kOpcodes[] = {3, 4, 5, 6, 7, 0xb, 0xc, 0xd, 0xe, 0xf};
      return wsFrame(rng, ws::firstByte(true, rng.pick(kOpcodes)), some);
    }
    case 3:  // a 64-bit length with its top bit set
      return header(rng, ws::firstByte(true, ws::kBinary),
                    0x8000000000000000ULL | rng.below(1u << 20), true) +
             some;
    case 4:  // longer than the broker's frame limit: 1009 before any payload is taken
      return header(rng, ws::firstByte(true, ws::kBinary), kBrokerMaxFrame + 1 + rng.skewed(30)) +
             some;
    case 5:  // text: 1003 [MQTT-6.0.0-1], with valid or invalid UTF-8
      return wsFrame(rng, ws::firstByte(true, ws::kText),
                     rng.chance(50) ? some : std::string("\xc3\x28\xff", 3));
    case 6: {  // close codes the RFC forbids on the wire
      static constexpr std::uint16_t kCodes[] = {0,    999,  1004, 1005, 1006, 1012,
                                                 1015, 1016, 2000, 2999, 5000, 65535};
      return wsFrame(rng, ws::firstByte(true, ws::kClose), ws::closePayload(rng.pick(kCodes)));
    }
    case 7: {  // a close reason that is not UTF-8
      static constexpr std::string_view kBad[] = {"\xff", "ok\xc3", "\xed\xa0\x80", "\xc0\xaf",
                                                  "abc\xf4\x90\x80\x80"};
      return wsFrame(rng, ws::firstByte(true, ws::kClose),
                     ws::closePayload(1000, std::string(rng.pick(kBad))));
    }
    case 8:  // a close payload of one byte
      return wsFrame(rng, ws::firstByte(true, ws::kClose), std::string(1, '\x03'));
    case 9:  // a control frame over 125 bytes
      return wsFrame(rng, ws::firstByte(true, rng.chance(50) ? ws::kPing : ws::kClose),
                     ws::closePayload(1000, std::string(rng.range(124, 300), 'r')));
    case 10:  // a fragmented control frame
      return wsFrame(rng, ws::firstByte(false, ws::kPing), some);
    case 11:  // a continuation without a start
      return wsFrame(rng, ws::firstByte(rng.chance(50), ws::kContinuation), mqttPacket(rng));
    case 12:  // a new message inside a fragmented one
      return wsFrame(rng, ws::firstByte(false, ws::kBinary), some) +
             wsFrame(rng, ws::firstByte(true, rng.chance(70) ? ws::kBinary : ws::kText), some);
    case 13:  // a pong no ping asked for, and pings (answered with pongs)
      return wsFrame(rng, ws::firstByte(true, rng.chance(50) ? ws::kPong : ws::kPing), some);
    case 14: {  // a non-minimal length: 16 or 64 bits for a short payload
      const std::string body = mqttPacket(rng);
      return header(rng, ws::firstByte(true, ws::kBinary), body.size(), rng.chance(50)) + body;
    }
    case 15: {  // a close the broker echoes, with a valid reason (sometimes non-ASCII)
      return wsFrame(rng, ws::firstByte(true, ws::kClose),
                     rng.chance(20)
                         ? std::string()
                         : ws::closePayload(rng.chance(70) ? 1000 : 3000 + rng.below(2000),
                                            rng.chance(50) ? "bye" : "\xc3\xa9t\xc3\xa9"));
    }
    default: {  // empty binary frames, many
      std::string out;
      for (std::size_t i = rng.range(1, 40); i > 0; --i)
        out += wsFrame(rng, ws::firstByte(true, ws::kBinary), {});
      return out;
    }
  }
}

void mutateWsFrames(Rng& rng, std::string& frames) {
  if (frames.size() < 2) {
    mutateBytes(rng, frames);
    return;
  }
  switch (rng.below(6)) {
    case 0:  // FIN or a reserved bit
      frames[0] ^= static_cast<char>(0x80 >> rng.below(4));
      break;
    case 1:  // the opcode
      frames[0] = static_cast<char>((frames[0] & 0xf0) | rng.below(16));
      break;
    case 2:  // the mask bit: the payload's first bytes become the key, or the key payload
      frames[1] ^= static_cast<char>(0x80);
      break;
    case 3:  // the 7-bit length, including 126 and 127 that announce longer forms
      frames[1] = static_cast<char>((frames[1] & 0x80) | rng.below(128));
      break;
    default:
      for (std::size_t n = 1 + rng.skewed(2); n > 0; --n)
        mutateBytes(rng, frames);
      break;
  }
}

}  // namespace tern::fuzz::frames
