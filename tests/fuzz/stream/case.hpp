// The stream fuzzer's test case: a small program of socket actions, and its text form.
//
// A Case is a list of Actions over up to kMaxConnections client connections to the broker's line
// or MQTT port, plain or TLS (the client end of a TLS connection runs a tern::net::TlsSession, or
// sends raw bytes to the TLS port), or its MQTT-over-WebSocket ports (mqtt+ws, mqtt+wss: the
// client end sends an HTTP upgrade and frames what it sends, ws_client.hpp). The executor (executor.hpp) runs it; the generator (generator.hpp) makes and
// mutates it; this file defines it, its limits, and the readable text format that seeds and
// reproducers are written in (one action per line; README.md has the grammar):
//
//   case partial_line_then_handover
//   open 0 line
//   send 0 fill:300:41            # 300 bytes 'A', no LF
//   pause 20
//   send 0 "\nCONNECT@c17\n" split 1 gap 2
//   read 0 100 token 0            # wait up to 100 ms, keep the CONNACK token in slot 0
//   send 1 "ATTACH@" token:0 "@push\n"
//
// Bytes are written as pieces: "C-escaped" strings, hex:..., fill:N:HH (N times byte HH),
// rand:N:SEED (N pseudo-random bytes from SEED) and token:K (the token captured in slot K, or a
// forged one when the slot is empty), concatenated.
//
// Plain values and pure functions; any thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace tern::fuzz {

// Limits that bound a case's cost. The parser refuses values outside them (a typo in a seed
// should not pass silently); the generator and the mutator stay inside them (normalize()).
inline constexpr std::size_t kMaxConnections = 12;
inline constexpr std::size_t kTokenSlots = 4;
inline constexpr std::size_t kMaxActions = 160;
inline constexpr std::uint32_t kMaxPauseMillis = 50;
inline constexpr std::uint32_t kMaxCasePauseMillis = 300;  // pauses and split gaps together
inline constexpr std::uint32_t kMaxGapMillis = 5;
inline constexpr std::uint32_t kMaxReadWaitMillis = 200;
inline constexpr std::size_t kMaxSplits = 1024;
inline constexpr std::size_t kMaxCaseBytes = 512 * 1024;  // resolved bytes of all sends
inline constexpr std::size_t kTokenSize = 36;             // 32 random hex digits + 4 for the worker

enum class Port : std::uint8_t { kLine, kMqtt, kLineTls, kMqttTls, kMqttWs, kMqttWss };

constexpr bool isTlsPort(Port port) noexcept {
  return port == Port::kLineTls || port == Port::kMqttTls || port == Port::kMqttWss;
}
// The broker's MQTT-over-WebSocket listeners (--ws-port, and --wss-port under TLS).
constexpr bool isWsPort(Port port) noexcept {
  return port == Port::kMqttWs || port == Port::kMqttWss;
}
constexpr bool isLinePort(Port port) noexcept {
  return port == Port::kLine || port == Port::kLineTls;
}

// What the client end of a connection speaks. The default is kTls on a TLS port and kPlain on a
// plain one; the text form names only the other choices (`raw`, `tls`, `cert`).
enum class Transport : std::uint8_t {
  kPlain,    // bytes as they are: on a TLS port, raw bytes the broker's handshake must refuse
  kTls,      // a client TLS session without a certificate (ClientHello sent at open)
  kTlsCert,  // a client TLS session with a certificate the broker's --tls-ca trusts
};

constexpr Transport defaultTransport(Port port) noexcept {
  return isTlsPort(port) ? Transport::kTls : Transport::kPlain;
}

// The WebSocket client layer over a connection's transport (ws_client.hpp). The default is
// kUpgrade on a WebSocket port and kNone elsewhere; the text form names the other choices (`ws`,
// `noupgrade`, `nows`; `raw` on a WebSocket port also means kNone).
enum class WsLayer : std::uint8_t {
  kNone,       // bytes go to the transport as they are
  kUpgrade,    // an HTTP upgrade request at open, then sends are masked frames, reads decoded
  kNoUpgrade,  // sends framed and reads decoded as kUpgrade, but no request at open: the case
               // sends its own (`send ... raw`)
};

constexpr WsLayer defaultWsLayer(Port port) noexcept {
  return isWsPort(port) ? WsLayer::kUpgrade : WsLayer::kNone;
}

// A stretch of the bytes to send.
struct Piece {
  enum class Kind : std::uint8_t { kBytes, kFill, kRandom, kToken };
  Kind kind = Kind::kBytes;
  std::string bytes;        // kBytes
  std::uint32_t count = 0;  // kFill, kRandom: how many bytes
  std::uint8_t fill = 0;    // kFill: the byte
  std::uint64_t seed = 0;   // kRandom
  std::uint8_t slot = 0;    // kToken: < kTokenSlots

  static Piece literal(std::string bytes) {
    Piece p;
    p.bytes = std::move(bytes);
    return p;
  }
  static Piece token(std::uint8_t slot) {
    Piece p;
    p.kind = Kind::kToken;
    p.slot = slot;
    return p;
  }
  bool operator==(const Piece&) const = default;
};

struct Action {
  enum class Kind : std::uint8_t {
    kOpen,      // connect `conn` to `port` (an open `conn` is closed first)
    kSend,      // send the pieces on `conn`, in chunks cut at `splits`, `millis` apart
    kPause,     // sleep `millis` (<= kMaxPauseMillis)
    kRead,      // wait up to `millis` for input on `conn`, read what is there and drop it;
                // with tokenSlot >= 0 wait for a CONNACK line and keep its token in that slot
    kShutdown,  // shutdown(SHUT_WR): half-close
    kReset,     // SO_LINGER {1, 0} then close: the peer sees an RST
    kClose,     // close normally
    kNotify,    // TLS connections: send a close_notify alert (nothing on a plain one)
  };
  Kind kind = Kind::kPause;
  std::uint8_t conn = 0;  // < kMaxConnections
  Port port = Port::kLine;
  Transport transport = Transport::kPlain;  // kOpen
  WsLayer ws = WsLayer::kNone;              // kOpen
  std::vector<Piece> pieces;
  std::vector<std::uint32_t> splits;  // ascending offsets into the resolved bytes
  bool splitEveryByte = false;        // send one byte per send() (overrides `splits`)
  std::uint32_t millis = 0;
  int tokenSlot = -1;
  // kSend on a TLS connection: `raw` sends the bytes past the session (as if they were
  // ciphertext); `wire` encrypts all the bytes at once and cuts the ciphertext at `splits`
  // (without it each chunk is encrypted on its own, so records end where chunks do).
  bool raw = false;
  bool wire = false;
  // kSend on a WebSocket connection (one with a WsLayer): `raw` sends the bytes past the
  // WebSocket layer (still through TLS on mqtt+wss); `wire` sends them in one binary frame whose
  // bytes are cut at `splits` (without it each chunk is a frame of its own); `frag` sends the
  // chunks as one fragmented message (binary, then continuations, the last one final); `ping`
  // follows each data frame with a ping; `close` ends the send with a close frame (1000).
  // Ignored on other connections.
  bool frag = false;
  bool ping = false;
  bool closeFrame = false;

  bool operator==(const Action&) const = default;
};

struct Case {
  std::string name;
  std::vector<Action> actions;
};

// Total size of the pieces once resolved (a token counts kTokenSize).
std::size_t resolvedSize(const std::vector<Piece>& pieces) noexcept;

// The bytes of the pieces; token:K becomes tokens[K], or kForgedToken when that slot is empty.
inline constexpr std::string_view kForgedToken = "000000000000000000000000000000000000";
std::string resolve(const std::vector<Piece>& pieces, const std::string (&tokens)[kTokenSlots]);

// Brings a case back inside the limits above: drops actions past kMaxActions and sends past
// kMaxCaseBytes, clamps pauses, waits, gaps and indexes, sorts and dedups split points and drops
// those outside the bytes. Idempotent.
void normalize(Case& c);

// The text form: a "case NAME" line, then one line per action. parseCases(serialize(c)) == {c}
// for a normalized case.
std::string serialize(const Case& c);

// Parses one or more cases. A file without a "case" line is one case named `defaultName`; each
// "case NAME" line starts a new one. Blank lines and lines starting with '#' are skipped. On a
// syntax error returns nullopt and sets `error` to "line N: what".
std::optional<std::vector<Case>> parseCases(std::string_view text, std::string_view defaultName,
                                            std::string& error);

}  // namespace tern::fuzz
