// Plays a case's actions on loopback sockets. See executor.hpp.
#include "executor.hpp"

#include <sys/socket.h>

#include <algorithm>
#include <thread>
#include <vector>

#include "rng.hpp"
#include "ws_client.hpp"

namespace tern::fuzz {

namespace {

constexpr Millis kConnectTimeout{1000};
constexpr std::size_t kReadCap = 1 << 20;     // bytes taken by one read action
constexpr std::size_t kPartialCap = 8 << 10;  // a longer line is no CONNACK: dropped
// Where each case's WebSocket keys start: any constant does; the same for every case so that a
// case file replays its own bytes.
constexpr std::uint64_t kMaskSeed = 0x7465726e2d7773ULL;
// A ping's payload (`ping`): a few bytes the broker's pong echoes.
constexpr std::string_view kPingPayload = "tern";

}  // namespace

void Executor::run(const Case& c) {
  const Clock::time_point deadline = Clock::now() + budget_;
  pausedMillis_ = 0;
  maskState_ = kMaskSeed;
  for (std::string& token : tokens_)
    token.clear();
  ++stats_.cases;
  for (const Action& a : c.actions) {
    Connection& conn = connections_[a.conn % kMaxConnections];
    if (Clock::now() >= deadline && a.kind != Action::Kind::kClose &&
        a.kind != Action::Kind::kReset) {
      ++stats_.actionsSkipped;
      continue;
    }
    switch (a.kind) {
      case Action::Kind::kOpen:
        open(conn, a, deadline);
        break;
      case Action::Kind::kSend:
        send(conn, a, deadline);
        break;
      case Action::Kind::kPause:
        sleepFor(a.millis, deadline);
        break;
      case Action::Kind::kRead:
        read(conn, a, deadline);
        break;
      case Action::Kind::kShutdown:
        if (conn.stream.valid()) ::shutdown(conn.stream.fd(), SHUT_WR);
        conn.writable = false;
        break;
      case Action::Kind::kReset:
        if (conn.stream.valid()) closeWithReset(conn.stream.socket().release());
        conn = Connection{};
        break;
      case Action::Kind::kNotify:
        if (conn.stream.valid() && conn.writable) conn.stream.notify(deadline, stats_.bytesSent);
        break;
      case Action::Kind::kClose:
        conn = Connection{};
        break;
    }
  }
  for (Connection& conn : connections_)
    conn = Connection{};
}

void Executor::open(Connection& conn, const Action& a, Clock::time_point deadline) {
  conn = Connection{};
  const std::uint16_t number = endpoints_.port(a.port);
  const net::TlsContext* context = a.transport == Transport::kTls       ? endpoints_.tls.get()
                                   : a.transport == Transport::kTlsCert ? endpoints_.tlsCert.get()
                                                                        : nullptr;
  const int fd = number == 0 || (a.transport != Transport::kPlain && context == nullptr)
                     ? -1
                     : connectLoopback(number, std::min(deadline, Clock::now() + kConnectTimeout));
  if (fd < 0) {
    ++stats_.connectFailures;
    return;
  }
  ++stats_.connections;
  if (context != nullptr) {
    ++stats_.tlsConnections;
    conn.stream = ClientStream(Socket(fd), *context, deadline);
  } else {
    conn.stream = ClientStream(Socket(fd));
  }
  conn.port = a.port;
  conn.writable = true;
  conn.readable = true;
  if (a.ws != WsLayer::kNone) {
    ++stats_.wsConnections;
    // Host names the port the socket went to; the key is the case's, like the masks.
    if (!conn.stream.startWs(a.ws == WsLayer::kUpgrade, number, splitMix64(maskState_), deadline,
                             stats_.bytesSent)) {
      conn.writable = false;
    }
  }
}

void Executor::handshake(Connection& conn, Clock::time_point deadline) {
  if (!conn.stream.tls() || conn.handshakeCounted) return;
  // What arrives before the handshake is done is handshake records (or garbage): no CONNACK.
  if (conn.stream.handshake(std::min(deadline, Clock::now() + handshakeWait_))) {
    conn.handshakeCounted = true;
    ++stats_.tlsHandshakes;
  } else if (conn.stream.sessionOver()) {
    conn.readable = false;
  }
}

void Executor::send(Connection& conn, const Action& a, Clock::time_point deadline) {
  if (!conn.stream.valid() || !conn.writable) return;
  std::string bytes = resolve(a.pieces, tokens_);
  if (conn.stream.ws()) {
    sendWs(conn, a, bytes, deadline);
    return;
  }
  // TLS chunks are encrypted one by one (records end where chunks do), unless `wire` encrypts
  // all at once and the ciphertext is cut instead, or `raw` goes past the session.
  const bool encryptChunks = conn.stream.tls() && !a.raw && !a.wire;
  if (conn.stream.tls() && !a.raw) {
    handshake(conn, deadline);
    if (a.wire) bytes = conn.stream.encrypt(bytes);
  }
  std::size_t from = 0;
  std::size_t split = 0;
  while (from < bytes.size()) {
    std::size_t to = bytes.size();
    if (a.splitEveryByte) {
      to = from + 1;
    } else if (split < a.splits.size()) {
      to = std::clamp<std::size_t>(a.splits[split++], from + 1, bytes.size());
    }
    const std::string_view chunk(bytes.data() + from, to - from);
    const bool ok = encryptChunks ? conn.stream.send(chunk, deadline, stats_.bytesSent)
                                  : conn.stream.sendRaw(chunk, deadline, stats_.bytesSent);
    if (!ok) {
      conn.writable = false;
      return;
    }
    from = to;
    if (from < bytes.size() && a.millis != 0) sleepFor(a.millis, deadline);
  }
}

void Executor::sendWs(Connection& conn, const Action& a, const std::string& bytes,
                      Clock::time_point deadline) {
  if (conn.stream.tls()) handshake(conn, deadline);
  // The bytes cut at the split points: chunks of the payload, or (`wire`) of the one frame.
  const std::string wire =
      a.wire ? ws::frame(ws::firstByte(true, ws::kBinary), bytes, maskState_) : std::string();
  const std::string_view cut = a.wire ? std::string_view(wire) : std::string_view(bytes);
  std::vector<std::string_view> chunks;
  std::size_t from = 0;
  std::size_t split = 0;
  while (from < cut.size()) {
    std::size_t to = cut.size();
    if (a.splitEveryByte) {
      to = from + 1;
    } else if (split < a.splits.size()) {
      to = std::clamp<std::size_t>(a.splits[split++], from + 1, cut.size());
    }
    chunks.push_back(cut.substr(from, to - from));
    from = to;
  }
  // A fragmented message of one chunk still has two frames: the start and a final continuation.
  const bool oneFragment = a.frag && !a.raw && chunks.size() == 1;
  if (oneFragment) chunks.push_back({});
  const auto put = [&](std::string_view frameBytes) {
    if (!conn.writable) return;
    if (!conn.stream.sendBelowWs(frameBytes, deadline, stats_.bytesSent)) conn.writable = false;
  };
  for (std::size_t i = 0; i < chunks.size() && conn.writable; ++i) {
    if (i != 0 && a.millis != 0) sleepFor(a.millis, deadline);
    if (a.raw || a.wire) {
      put(chunks[i]);
    } else {
      const bool fin = !a.frag || i + 1 == chunks.size();
      const std::uint8_t opcode = a.frag && i != 0 ? ws::kContinuation : ws::kBinary;
      put(ws::frame(ws::firstByte(fin, opcode), chunks[i], maskState_));
    }
    // With `wire`, one ping after the whole frame rather than inside it.
    if (a.ping && (!a.wire || i + 1 == chunks.size())) {
      put(ws::frame(ws::firstByte(true, ws::kPing), kPingPayload, maskState_));
    }
  }
  if (a.closeFrame) {
    put(ws::frame(ws::firstByte(true, ws::kClose), ws::closePayload(1000), maskState_));
  }
}

void Executor::read(Connection& conn, const Action& a, Clock::time_point deadline) {
  if (!conn.stream.valid() || !conn.readable) return;
  const Clock::time_point until =
      std::min(deadline, Clock::now() + Millis(std::min(a.millis, kMaxReadWaitMillis)));
  const bool wantToken = a.tokenSlot >= 0 && isLinePort(conn.port);
  // A token read waits for the CONNACK (or the time); a plain read takes what came first.
  do {
    if (wantToken && !conn.token.empty()) break;
    readOnce(conn, until);
  } while (wantToken && conn.readable && Clock::now() < until);
  if (wantToken && !conn.token.empty()) tokens_[a.tokenSlot % kTokenSlots] = conn.token;
}

void Executor::readOnce(Connection& conn, Clock::time_point until) {
  std::string input;
  if (conn.stream.read(input, until, kReadCap) == ReadStatus::kClosed) conn.readable = false;
  if (conn.stream.handshakeDone() && !conn.handshakeCounted) {
    conn.handshakeCounted = true;
    ++stats_.tlsHandshakes;
  }
  if (const ws::Decoder* d = conn.stream.wsDecoder();
      d != nullptr && d->upgraded() && !conn.upgradeCounted) {
    conn.upgradeCounted = true;
    ++stats_.wsUpgrades;
  }
  if (!isLinePort(conn.port) || input.empty()) return;
  conn.partial += input;
  std::size_t start = 0;
  for (std::size_t lf; (lf = conn.partial.find('\n', start)) != std::string::npos; start = lf + 1) {
    std::string_view line(conn.partial.data() + start, lf - start);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    // CONNACK@<client-id>@<token>: the token is the last field.
    if (line.starts_with("CONNACK@")) conn.token = std::string(line.substr(line.rfind('@') + 1));
  }
  conn.partial.erase(0, start);
  if (conn.partial.size() > kPartialCap) conn.partial.clear();
}

void Executor::sleepFor(std::uint32_t millis, Clock::time_point deadline) {
  millis = std::min({millis, kMaxPauseMillis, kMaxCasePauseMillis - pausedMillis_});
  pausedMillis_ += millis;
  const Clock::time_point until = std::min(deadline, Clock::now() + Millis(millis));
  std::this_thread::sleep_until(until);
}

}  // namespace tern::fuzz
