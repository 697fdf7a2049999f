// Case generation from blocks, and case mutation. See generator.hpp.
#include "generator.hpp"

#include <algorithm>
#include <utility>
#include <vector>

#include "frames.hpp"

namespace tern::fuzz {

namespace {

using Block = std::vector<Action>;

// The shares of generated cases (and of inserted blocks) that are TLS cases and WebSocket
// cases; the rest are plain.
constexpr unsigned kTlsPercent = 28;
constexpr unsigned kWsPercent = 17;

enum class Mode : std::uint8_t { kPlain, kTls, kWs };

Mode chooseMode(Rng& rng) {
  const std::uint64_t draw = rng.below(100);
  return draw < kWsPercent                 ? Mode::kWs
         : draw < kWsPercent + kTlsPercent ? Mode::kTls
                                           : Mode::kPlain;
}

Action open(std::uint8_t conn, Port port) {
  Action a;
  a.kind = Action::Kind::kOpen;
  a.conn = conn;
  a.port = port;
  a.transport = defaultTransport(port);
  return a;
}

Action pause(std::uint32_t millis) {
  Action a;
  a.kind = Action::Kind::kPause;
  a.millis = millis;
  return a;
}

Action read(std::uint8_t conn, std::uint32_t millis, int tokenSlot = -1) {
  Action a;
  a.kind = Action::Kind::kRead;
  a.conn = conn;
  a.millis = millis;
  a.tokenSlot = tokenSlot;
  return a;
}

Action ending(std::uint8_t conn, Action::Kind kind) {
  Action a;
  a.kind = kind;
  a.conn = conn;
  return a;
}

// Random split points for `size` bytes: none, a few, or every byte.
void chooseSplits(Rng& rng, Action& a, std::size_t size) {
  a.splits.clear();
  a.splitEveryByte = false;
  a.millis = 0;
  const std::uint64_t how = rng.below(100);
  if (how < 50 || size < 2) return;
  if (how < 88) {
    for (std::size_t i = rng.range(1, 4); i > 0; --i)
      a.splits.push_back(static_cast<std::uint32_t>(rng.range(1, size - 1)));
    std::sort(a.splits.begin(), a.splits.end());
    if (rng.chance(30)) a.millis = static_cast<std::uint32_t>(rng.range(1, kMaxGapMillis));
  } else if (size <= 600) {
    a.splitEveryByte = true;
  }
}

Action send(Rng& rng, std::uint8_t conn, std::vector<Piece> pieces) {
  Action a;
  a.kind = Action::Kind::kSend;
  a.conn = conn;
  a.pieces = std::move(pieces);
  chooseSplits(rng, a, resolvedSize(a.pieces));
  return a;
}

Action send(Rng& rng, std::uint8_t conn, std::string bytes) {
  return send(rng, conn, {Piece::literal(std::move(bytes))});
}

// The port `conn` was last opened on before action `at`, or the line port.
Port portAt(const Case& c, std::size_t at, std::uint8_t conn) {
  for (std::size_t i = std::min(at, c.actions.size()); i > 0; --i) {
    const Action& a = c.actions[i - 1];
    if (a.kind == Action::Kind::kOpen && a.conn == conn) return a.port;
  }
  return Port::kLine;
}

Port tlsPortOf(Port port) noexcept {
  return isWsPort(port) ? Port::kMqttWss : isLinePort(port) ? Port::kLineTls : Port::kMqttTls;
}

Port plainPortOf(Port port) noexcept {
  return isWsPort(port) ? Port::kMqttWs : isLinePort(port) ? Port::kLine : Port::kMqtt;
}

// A send's WebSocket mode: one frame per chunk (the default), one frame cut at the split points,
// a fragmented message; sometimes with pings after the frames.
void chooseWsMode(Rng& rng, Action& a) {
  a.wire = a.frag = a.ping = a.closeFrame = a.raw = false;
  const std::uint64_t how = rng.below(100);
  if (how < 25) {
    a.wire = true;
  } else if (how < 50) {
    a.frag = true;
  }
  a.ping = rng.chance(12);
}

// A send of `bytes` on `conn` in one of the WebSocket modes (chooseWsMode).
Action wsSend(Rng& rng, std::uint8_t conn, std::string bytes) {
  Action a = send(rng, conn, std::move(bytes));
  chooseWsMode(rng, a);
  return a;
}

// Moves an MQTT block to the WebSocket ports (mqtt+wss sometimes, with a certificate now and
// then), with its sends in varied WebSocket modes.
void overWs(Rng& rng, Block& b) {
  const bool wss = rng.chance(35);
  const bool cert = wss && rng.chance(15);
  for (Action& a : b) {
    if (a.kind == Action::Kind::kOpen) {
      a.port = wss ? Port::kMqttWss : Port::kMqttWs;
      a.transport = cert ? Transport::kTlsCert : defaultTransport(a.port);
      a.ws = WsLayer::kUpgrade;
    } else if (a.kind == Action::Kind::kSend) {
      chooseWsMode(rng, a);
    }
  }
}

// Moves a block to TLS: its opens go to the TLS ports with a client session (sometimes one with
// a certificate), and some of its sends cut the ciphertext instead of the plaintext.
void overTls(Rng& rng, Block& b) {
  for (Action& a : b) {
    if (a.kind == Action::Kind::kOpen) {
      a.port = tlsPortOf(a.port);
      a.transport = rng.chance(15) ? Transport::kTlsCert : Transport::kTls;
    } else if (a.kind == Action::Kind::kSend && rng.chance(35)) {
      a.wire = true;
    }
  }
}

class CaseBuilder {
 public:
  // kTls: a TLS case, whose blocks mostly go over TLS and include the TLS-only ones; kWs: a
  // WebSocket case, whose blocks mostly go to the WebSocket ports.
  CaseBuilder(Rng& rng, Mode mode) noexcept
      : rng_(rng), tls_(mode == Mode::kTls), ws_(mode == Mode::kWs) {}

  Block makeBlock() {
    if (ws_) {
      static constexpr unsigned kWsWeights[] = {40, 12, 14, 18, 6, 6, 4};
      switch (rng_.weighted(kWsWeights)) {
        case 0: {
          Block b = mqttClient();
          overWs(rng_, b);
          return b;
        }
        case 1:
          return wsHandOver();
        case 2:
          return wsHostileUpgrade();
        case 3:
          return wsHostileFrames();
        case 4:
          return wsOnOtherPort();
        case 5:
          return otherOnWsPort();
        default:
          return plainBlock();
      }
    }
    if (tls_) {
      static constexpr unsigned kTlsWeights[] = {70, 10, 5, 7, 8};
      switch (rng_.weighted(kTlsWeights)) {
        case 0: {
          Block b = plainBlock();
          if (rng_.chance(85)) overTls(rng_, b);
          return b;
        }
        case 1:
          return tlsGarbage();
        case 2:
          return tlsStalled();
        case 3:
          return tlsOnPlainPort();
        default:
          return tlsInjected();
      }
    }
    return plainBlock();
  }

 private:
  Block plainBlock() {
    static constexpr unsigned kWeights[] = {30, 22, 6, 8, 25, 7, 4};
    switch (rng_.weighted(kWeights)) {
      case 0:
        return lineSession();
      case 1:
        return handOver();
      case 2:
        return forgedAttach();
      case 3:
        return lineNoise();
      case 4:
        return mqttClient();
      case 5:
        return mqttNoise();
      default:
        return crossProtocol();
    }
  }

  Port anyTlsPort() { return rng_.chance(50) ? Port::kLineTls : Port::kMqttTls; }

  Action rawOpen(std::uint8_t conn, Port port) {
    Action a = open(conn, port);
    a.transport = Transport::kPlain;
    return a;
  }

  // Raw bytes on a TLS port: what the broker's handshake must refuse, or wait for and time out.
  Block tlsGarbage() {
    Block b;
    const std::uint8_t conn = newConn();
    const Port port = anyTlsPort();
    b.push_back(rawOpen(conn, port));
    std::string bytes;
    switch (rng_.below(6)) {
      case 0:
      case 1: {  // a ClientHello, mutated one or more times
        bytes = frames::tlsClientHello(rng_);
        for (std::size_t n = 1 + rng_.skewed(2); n > 0; --n)
          frames::mutateTlsRecords(rng_, bytes);
        break;
      }
      case 2:  // the plain protocol on the TLS port
        bytes = isLinePort(port) ? "CONNECT@" + frames::lineClientId(rng_) + "\n" +
                                       frames::lineRequest(rng_) + "\n"
                                 : frames::mqttConnect(rng_);
        break;
      case 3:
        bytes = "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n";
        break;
      case 4:  // an SSLv2-style hello header, then noise
        bytes = std::string("\x80\x2e\x01\x00\x02", 5) + frames::lineNoise(rng_);
        break;
      default:
        bytes = frames::tlsRecordNoise(rng_);
        break;
    }
    b.push_back(send(rng_, conn, std::move(bytes)));
    maybeRead(b, conn, 60);
    if (rng_.chance(20)) b.push_back(send(rng_, conn, frames::tlsRecordNoise(rng_)));
    end(b, conn);
    return b;
  }

  // A handshake that stops half-way: nothing, part of a ClientHello, or a whole one whose server
  // flight is never answered; reads keep the case going towards the broker's
  // --handshake-timeout 2 (bounded by the case's time limit), so the broker's timer closes it.
  Block tlsStalled() {
    Block b;
    const std::uint8_t conn = newConn();
    const Port port = anyTlsPort();
    if (rng_.chance(25)) {
      // A client session: its ClientHello goes out at open, the server's answer is never read.
      b.push_back(open(conn, port));
      b.push_back(pause(static_cast<std::uint32_t>(rng_.range(0, kMaxPauseMillis))));
    } else {
      b.push_back(rawOpen(conn, port));
      std::string hello = frames::tlsClientHello(rng_);
      const std::uint64_t how = rng_.below(3);
      if (how == 1) hello.resize(rng_.range(1, hello.size() - 1));
      if (how != 0 || rng_.chance(70)) b.push_back(send(rng_, conn, std::move(hello)));
      const std::size_t reads = rng_.chance(20) ? rng_.range(8, 14) : rng_.range(0, 3);
      for (std::size_t i = 0; i < reads; ++i)
        b.push_back(read(conn, kMaxReadWaitMillis));
    }
    end(b, conn);
    return b;
  }

  // A TLS client on a plain port: the ClientHello is what the line or MQTT parser gets.
  Block tlsOnPlainPort() {
    Block b;
    const std::uint8_t conn = newConn();
    const bool line = rng_.chance(50);
    Action o = open(conn, line ? Port::kLine : Port::kMqtt);
    o.transport = rng_.chance(20) ? Transport::kTlsCert : Transport::kTls;
    b.push_back(o);
    maybeRead(b, conn, 60);
    b.push_back(
        send(rng_, conn,
             line ? "CONNECT@" + frames::lineClientId(rng_) + "\n" : frames::mqttConnect(rng_)));
    maybeRead(b, conn, 50);
    end(b, conn);
    return b;
  }

  // A TLS session that works, then raw records past it (bad MAC, alerts in clear, renegotiation,
  // over-long records), or data after close_notify.
  Block tlsInjected() {
    Block b;
    const std::uint8_t conn = newConn();
    const Port port = anyTlsPort();
    b.push_back(open(conn, port));
    b.push_back(send(rng_, conn,
                     isLinePort(port) ? "CONNECT@" + frames::lineClientId(rng_) + "\n"
                                      : frames::mqttConnect(rng_)));
    maybeRead(b, conn, 60);
    if (rng_.chance(30)) b.push_back(ending(conn, Action::Kind::kNotify));
    Action noise = send(rng_, conn, frames::tlsRecordNoise(rng_));
    noise.raw = rng_.chance(80);
    b.push_back(std::move(noise));
    if (rng_.chance(40)) {
      b.push_back(
          send(rng_, conn,
               isLinePort(port) ? frames::lineRequest(rng_) + "\n" : frames::mqttPacket(rng_)));
    }
    maybeRead(b, conn, 50);
    end(b, conn);
    return b;
  }

  std::uint8_t newConn() { return static_cast<std::uint8_t>(nextConn_++ % kMaxConnections); }
  std::uint8_t newSlot() { return static_cast<std::uint8_t>(nextSlot_++ % kTokenSlots); }

  void maybePause(Block& b, unsigned percent) {
    if (rng_.chance(percent)) b.push_back(pause(static_cast<std::uint32_t>(rng_.range(0, 20))));
  }
  void maybeRead(Block& b, std::uint8_t conn, unsigned percent) {
    if (rng_.chance(percent))
      b.push_back(read(conn, static_cast<std::uint32_t>(rng_.range(0, 10))));
  }
  void end(Block& b, std::uint8_t conn) {
    static constexpr Action::Kind kEndings[] = {Action::Kind::kClose, Action::Kind::kReset,
                                                Action::Kind::kShutdown};
    // A close_notify first, sometimes (only TLS connections send one).
    if (tls_ && rng_.chance(20)) b.push_back(ending(conn, Action::Kind::kNotify));
    if (rng_.chance(55)) b.push_back(ending(conn, rng_.pick(kEndings)));
  }

  // Frames for a request socket, pipelined into one send or sent one by one.
  void requests(Block& b, std::uint8_t conn, std::size_t count) {
    if (rng_.chance(50)) {
      std::string batch;
      for (std::size_t i = 0; i < count; ++i)
        batch += frames::lineRequest(rng_) + frames::lineEnd(rng_);
      b.push_back(send(rng_, conn, std::move(batch)));
      maybeRead(b, conn, 70);
      return;
    }
    for (std::size_t i = 0; i < count; ++i) {
      b.push_back(send(rng_, conn, frames::lineRequest(rng_) + frames::lineEnd(rng_)));
      maybeRead(b, conn, 40);
      maybePause(b, 10);
    }
  }

  Block lineSession() {
    Block b;
    const std::uint8_t first = newConn();
    const std::uint8_t slot = newSlot();
    b.push_back(open(first, Port::kLine));
    std::string connect =
        rng_.chance(85) ? "CONNECT@" + frames::lineClientId(rng_) : frames::lineConnect(rng_);
    if (rng_.chance(10)) connect = frames::partialLine(rng_, rng_.skewed(9)) + "\n" + connect;
    b.push_back(send(rng_, first, connect + frames::lineEnd(rng_)));
    b.push_back(read(first, 100, slot));
    std::vector<std::uint8_t> sockets{first};
    const std::size_t attaches = rng_.below(4);  // the third is one too many
    for (std::size_t i = 0; i < attaches; ++i) {
      const std::uint8_t conn = newConn();
      b.push_back(open(conn, Port::kLine));
      const bool push = i == 0 ? rng_.chance(70) : rng_.chance(40);
      std::vector<Piece> pieces{Piece::literal("ATTACH@"), Piece::token(slot),
                                Piece::literal(push ? "@push" : "@request")};
      pieces.push_back(Piece::literal(frames::lineEnd(rng_)));
      b.push_back(send(rng_, conn, std::move(pieces)));
      b.push_back(read(conn, 30));
      sockets.push_back(conn);
    }
    for (std::size_t round = rng_.range(1, 3); round > 0; --round) {
      const std::uint8_t conn = sockets[rng_.below(sockets.size())];
      requests(b, conn, static_cast<std::size_t>(rng_.range(1, 6)));
      if (rng_.chance(20)) b.push_back(send(rng_, conn, "PING\n"));
    }
    for (std::uint8_t conn : sockets)
      end(b, conn);
    return b;
  }

  // What the hand-over path must survive: a partial frame buffered before the socket moves.
  Block handOver() {
    Block b;
    const std::uint8_t conn = newConn();
    b.push_back(open(conn, Port::kLine));
    if (rng_.chance(30)) b.push_back(send(rng_, conn, frames::lineNoise(rng_)));
    const std::size_t size = rng_.chance(90) ? rng_.range(1, 1500) : rng_.range(1500, 5000);
    b.push_back(send(rng_, conn, frames::partialLine(rng_, size)));
    b.push_back(pause(static_cast<std::uint32_t>(rng_.range(2, 30))));
    std::vector<Piece> frame{Piece::literal(rng_.chance(85) ? "\n" : "")};
    switch (rng_.below(5)) {
      case 0:
        frame.push_back(Piece::literal("ATTACH@" + frames::forgedToken(rng_) +
                                       (rng_.chance(50) ? "@push" : "@request")));
        break;
      case 1:
        frame.push_back(Piece::literal("ATTACH@"));
        frame.push_back(Piece::token(static_cast<std::uint8_t>(rng_.below(kTokenSlots))));
        frame.push_back(Piece::literal(rng_.chance(50) ? "@push" : "@request"));
        break;
      default:
        frame.push_back(Piece::literal("CONNECT@" + frames::lineClientId(rng_)));
        break;
    }
    frame.push_back(Piece::literal(frames::lineEnd(rng_)));
    if (rng_.chance(40)) {
      frame.push_back(Piece::literal(frames::lineRequest(rng_) + frames::lineEnd(rng_)));
    }
    b.push_back(send(rng_, conn, std::move(frame)));
    b.push_back(read(conn, static_cast<std::uint32_t>(rng_.range(0, 20))));
    if (rng_.chance(30)) requests(b, conn, static_cast<std::size_t>(rng_.range(1, 3)));
    end(b, conn);
    return b;
  }

  Block forgedAttach() {
    Block b;
    const std::uint8_t conn = newConn();
    b.push_back(open(conn, Port::kLine));
    const char* role = rng_.chance(45) ? "@push" : rng_.chance(80) ? "@request" : "@other";
    b.push_back(send(rng_, conn, "ATTACH@" + frames::forgedToken(rng_) + role + "\n"));
    b.push_back(read(conn, 10));
    if (rng_.chance(30)) requests(b, conn, 1);
    end(b, conn);
    return b;
  }

  Block lineNoise() {
    Block b;
    const std::uint8_t conn = newConn();
    b.push_back(open(conn, Port::kLine));
    for (std::size_t i = rng_.range(1, 4); i > 0; --i) {
      switch (rng_.below(4)) {
        case 0:
          b.push_back(send(rng_, conn, frames::lineNoise(rng_)));
          break;
        case 1:
          b.push_back(send(rng_, conn, frames::lineRequest(rng_) + "\n"));  // not connected
          break;
        case 2: {  // longer than --max-line, with or without a LF
          Piece fill;
          fill.kind = Piece::Kind::kFill;
          fill.count = static_cast<std::uint32_t>(rng_.range(4000, 70000));
          fill.fill = static_cast<std::uint8_t>('A' + rng_.below(26));
          b.push_back(send(rng_, conn, {fill, Piece::literal(rng_.chance(50) ? "\n" : "")}));
          break;
        }
        default: {
          Piece random;
          random.kind = Piece::Kind::kRandom;
          random.count = static_cast<std::uint32_t>(rng_.skewed(16));
          random.seed = rng_.next() >> 12;
          b.push_back(
              send(rng_, conn,
                   {random, Piece::literal("\nCONNECT@" + frames::lineClientId(rng_) + "\n")}));
          break;
        }
      }
      maybeRead(b, conn, 40);
      maybePause(b, 15);
    }
    end(b, conn);
    return b;
  }

  Block mqttClient() {
    Block b;
    const std::uint8_t conn = newConn();
    b.push_back(open(conn, Port::kMqtt));
    std::uint8_t level = 4;
    std::vector<std::string> packets{frames::mqttConnect(rng_, &level)};
    for (std::size_t i = rng_.skewed(3); i > 0; --i)
      packets.push_back(frames::mqttPacket(rng_, level));
    if (packets.size() > 1 && rng_.chance(15)) {  // drop one
      packets.erase(packets.begin() + static_cast<std::ptrdiff_t>(rng_.below(packets.size())));
    }
    if (rng_.chance(15)) {  // duplicate one
      const std::size_t at = rng_.below(packets.size());
      packets.insert(packets.begin() + static_cast<std::ptrdiff_t>(at), packets[at]);
    }
    if (packets.size() > 1 && rng_.chance(10)) {  // swap two neighbours
      const std::size_t at = rng_.below(packets.size() - 1);
      std::swap(packets[at], packets[at + 1]);
    }
    for (std::string& p : packets)
      if (rng_.chance(8)) frames::mutatePacket(rng_, p);
    if (rng_.chance(50)) {
      std::string all;
      for (const std::string& p : packets)
        all += p;
      b.push_back(send(rng_, conn, std::move(all)));
      maybeRead(b, conn, 60);
    } else {
      for (std::string& p : packets) {
        b.push_back(send(rng_, conn, std::move(p)));
        maybeRead(b, conn, 35);
        maybePause(b, 8);
      }
    }
    end(b, conn);
    return b;
  }

  Block mqttNoise() {
    Block b;
    const std::uint8_t conn = newConn();
    b.push_back(open(conn, Port::kMqtt));
    std::string bytes = rng_.chance(50) ? frames::mqttConnect(rng_) : frames::mqttPacket(rng_);
    for (std::size_t i = rng_.range(1, 3); i > 0; --i)
      frames::mutatePacket(rng_, bytes);
    b.push_back(send(rng_, conn, std::move(bytes)));
    maybeRead(b, conn, 50);
    end(b, conn);
    return b;
  }

  Block crossProtocol() {
    Block b;
    const std::uint8_t conn = newConn();
    if (rng_.chance(50)) {
      b.push_back(open(conn, Port::kMqtt));
      b.push_back(send(rng_, conn, "CONNECT@" + frames::lineClientId(rng_) + "\n"));
    } else {
      b.push_back(open(conn, Port::kLine));
      b.push_back(send(rng_, conn, frames::mqttConnect(rng_) + frames::mqttPacket(rng_)));
    }
    maybeRead(b, conn, 50);
    end(b, conn);
    return b;
  }

  // ---- WebSocket blocks ----

  Port anyWsPort() { return rng_.chance(35) ? Port::kMqttWss : Port::kMqttWs; }

  // An open on a WebSocket port with the WebSocket layer; `upgrade` or not (the case sends its
  // own request raw).
  Action wsOpen(std::uint8_t conn, Port port, bool upgrade) {
    Action a = open(conn, port);
    a.ws = upgrade ? WsLayer::kUpgrade : WsLayer::kNoUpgrade;
    if (port == Port::kMqttWss && rng_.chance(10)) a.transport = Transport::kTlsCert;
    return a;
  }

  Action rawSend(std::uint8_t conn, std::string bytes) {
    Action a = send(rng_, conn, std::move(bytes));
    a.raw = true;
    return a;
  }

  // A CONNECT, then packets whose frames arrive with it or in pieces around the hand-over to the
  // session's home worker: the CONNECT's frame and part of the next in one send, a pause, the
  // rest (the broker decodes what came with the CONNECT and carries the rest to the new worker).
  Block wsHandOver() {
    Block b;
    const std::uint8_t conn = newConn();
    b.push_back(wsOpen(conn, anyWsPort(), true));
    std::uint8_t level = 4;
    std::string connect = frames::mqttConnect(rng_, &level);
    std::string next;
    for (std::size_t i = rng_.range(1, 3); i > 0; --i)
      next += frames::mqttPacket(rng_, level);
    const std::string first = frames::wsDataFrames(rng_, connect);
    const std::string rest = frames::wsDataFrames(rng_, next);
    const std::size_t cut = rng_.below(rest.size() + 1);
    b.push_back(rawSend(conn, first + rest.substr(0, cut)));
    b.push_back(pause(static_cast<std::uint32_t>(rng_.range(0, 30))));
    if (cut < rest.size()) b.push_back(rawSend(conn, rest.substr(cut)));
    maybeRead(b, conn, 60);
    if (rng_.chance(50)) {
      Action more = wsSend(rng_, conn, frames::mqttPacket(rng_, level));
      b.push_back(std::move(more));
      maybeRead(b, conn, 40);
    }
    end(b, conn);
    return b;
  }

  // Upgrade requests the broker must refuse, or wait on until --handshake-timeout: hostile ones,
  // and valid or hostile ones sent in pieces with pauses (slowloris), then a CONNECT in a frame.
  Block wsHostileUpgrade() {
    Block b;
    const std::uint8_t conn = newConn();
    b.push_back(wsOpen(conn, anyWsPort(), false));
    const bool valid = rng_.chance(25);
    std::string request = valid ? frames::wsUpgrade(rng_) : frames::wsHostileUpgrade(rng_);
    if (rng_.chance(30) && request.size() > 2) {  // slowloris: a piece, a wait, the rest or not
      const std::size_t cut = rng_.range(1, request.size() - 1);
      b.push_back(rawSend(conn, request.substr(0, cut)));
      const std::size_t waits = rng_.chance(25) ? rng_.range(8, 14) : rng_.range(1, 3);
      for (std::size_t i = 0; i < waits; ++i)
        b.push_back(rng_.chance(70) ? read(conn, kMaxReadWaitMillis)
                                    : pause(static_cast<std::uint32_t>(rng_.range(5, 50))));
      if (rng_.chance(70)) b.push_back(rawSend(conn, request.substr(cut)));
    } else {
      b.push_back(rawSend(conn, std::move(request)));
    }
    if (rng_.chance(50)) {
      Action connect = wsSend(rng_, conn, frames::mqttConnect(rng_));
      b.push_back(std::move(connect));
    }
    maybeRead(b, conn, 60);
    end(b, conn);
    return b;
  }

  // Frames the broker refuses or answers (close codes 1002, 1003, 1007, 1009; pongs; echoed
  // closes), sometimes after a working CONNECT, sometimes cut into pieces (close frames split
  // across reads included), sometimes followed by more MQTT.
  Block wsHostileFrames() {
    Block b;
    const std::uint8_t conn = newConn();
    b.push_back(wsOpen(conn, anyWsPort(), true));
    std::uint8_t level = 4;
    if (rng_.chance(65)) {
      Action connect = wsSend(rng_, conn, frames::mqttConnect(rng_, &level));
      b.push_back(std::move(connect));
      maybeRead(b, conn, 50);
    }
    for (std::size_t i = rng_.range(1, 3); i > 0; --i) {
      std::string bytes = frames::wsHostileFrame(rng_);
      if (rng_.chance(15)) frames::mutateWsFrames(rng_, bytes);
      if (rng_.chance(20))
        bytes = frames::wsDataFrames(rng_, frames::mqttPacket(rng_, level)) + bytes;
      b.push_back(rawSend(conn, std::move(bytes)));
      maybeRead(b, conn, 40);
    }
    if (rng_.chance(30)) {
      Action more = wsSend(rng_, conn, frames::mqttPacket(rng_, level));
      more.closeFrame = rng_.chance(30);
      b.push_back(std::move(more));
    }
    maybeRead(b, conn, 50);
    end(b, conn);
    return b;
  }

  // A WebSocket client on a port without WebSockets: its upgrade request is what the MQTT, line
  // or TLS listener gets.
  Block wsOnOtherPort() {
    Block b;
    const std::uint8_t conn = newConn();
    static constexpr Port kPorts[] = {Port::kMqtt, Port::kMqtt, Port::kLine, Port::kMqttTls};
    Action o = open(conn, rng_.pick(kPorts));
    o.ws = WsLayer::kUpgrade;
    b.push_back(o);
    Action connect = wsSend(rng_, conn, frames::mqttConnect(rng_));
    b.push_back(std::move(connect));
    maybeRead(b, conn, 60);
    end(b, conn);
    return b;
  }

  // Bytes of other protocols on the WebSocket ports: MQTT without an upgrade (raw, or framed
  // without a request), a line CONNECT, a TLS ClientHello on the plain WebSocket port.
  Block otherOnWsPort() {
    Block b;
    const std::uint8_t conn = newConn();
    const Port port = anyWsPort();
    switch (rng_.below(4)) {
      case 0:
      case 1: {
        Action o = open(conn, port);
        o.ws = WsLayer::kNone;
        b.push_back(o);
        b.push_back(send(rng_, conn, frames::mqttConnect(rng_) + frames::mqttPacket(rng_)));
        break;
      }
      case 2: {
        b.push_back(wsOpen(conn, port, false));
        Action connect = wsSend(rng_, conn, frames::mqttConnect(rng_));
        b.push_back(std::move(connect));
        break;
      }
      default: {
        Action o = open(conn, Port::kMqttWs);
        o.transport = Transport::kTls;
        o.ws = rng_.chance(50) ? WsLayer::kUpgrade : WsLayer::kNone;
        b.push_back(o);
        b.push_back(send(rng_, conn, "CONNECT@" + frames::lineClientId(rng_) + "\n"));
        break;
      }
    }
    maybeRead(b, conn, 50);
    end(b, conn);
    return b;
  }

  Rng& rng_;
  bool tls_;
  bool ws_;
  unsigned nextConn_ = 0;
  unsigned nextSlot_ = 0;
};

// Merges blocks into one sequence, keeping each block's own order.
std::vector<Action> interleave(Rng& rng, std::vector<Block> blocks) {
  std::vector<Action> out;
  if (rng.chance(35)) {
    for (Block& b : blocks)
      for (Action& a : b)
        out.push_back(std::move(a));
    return out;
  }
  std::vector<std::size_t> next(blocks.size(), 0);
  for (;;) {
    std::vector<std::size_t> live;
    for (std::size_t i = 0; i < blocks.size(); ++i)
      if (next[i] < blocks[i].size()) live.push_back(i);
    if (live.empty()) return out;
    const std::size_t pick = live[rng.below(live.size())];
    // Take a short run from the chosen block, so its handshakes often stay together.
    for (std::size_t run = rng.range(1, 4); run > 0 && next[pick] < blocks[pick].size(); --run)
      out.push_back(std::move(blocks[pick][next[pick]++]));
  }
}

Action* randomSend(Rng& rng, Case& c) {
  std::vector<Action*> sends;
  for (Action& a : c.actions)
    if (a.kind == Action::Kind::kSend) sends.push_back(&a);
  return sends.empty() ? nullptr : sends[rng.below(sends.size())];
}

void mutateOnce(Rng& rng, Case& c, const Case& other) {
  auto& actions = c.actions;
  const auto at = [&rng](std::size_t n) { return static_cast<std::ptrdiff_t>(rng.below(n)); };
  switch (rng.below(15)) {
    case 0: {  // splice: a prefix of this case, a suffix of the other
      const std::size_t cut = rng.below(actions.size() + 1);
      const std::size_t from = rng.below(other.actions.size() + 1);
      actions.resize(cut);
      actions.insert(actions.end(), other.actions.begin() + static_cast<std::ptrdiff_t>(from),
                     other.actions.end());
      break;
    }
    case 1: {  // insert a freshly generated block
      CaseBuilder builder(rng, chooseMode(rng));
      Block b = builder.makeBlock();
      const std::uint8_t shift = static_cast<std::uint8_t>(rng.below(kMaxConnections));
      for (Action& a : b)
        a.conn = static_cast<std::uint8_t>((a.conn + shift) % kMaxConnections);
      actions.insert(actions.begin() + at(actions.size() + 1), b.begin(), b.end());
      break;
    }
    case 2:  // delete a run
      if (!actions.empty()) {
        const std::ptrdiff_t from = at(actions.size());
        const std::ptrdiff_t count =
            std::min<std::ptrdiff_t>(1 + at(4), static_cast<std::ptrdiff_t>(actions.size()) - from);
        actions.erase(actions.begin() + from, actions.begin() + from + count);
      }
      break;
    case 3:  // duplicate a run
      if (!actions.empty()) {
        const std::ptrdiff_t from = at(actions.size());
        const std::ptrdiff_t count =
            std::min<std::ptrdiff_t>(1 + at(3), static_cast<std::ptrdiff_t>(actions.size()) - from);
        const std::vector<Action> copy(actions.begin() + from, actions.begin() + from + count);
        actions.insert(actions.begin() + from + count, copy.begin(), copy.end());
      }
      break;
    case 4:  // new split points
      if (Action* s = randomSend(rng, c)) chooseSplits(rng, *s, resolvedSize(s->pieces));
      break;
    case 5:
    case 6:  // change bytes
      if (Action* s = randomSend(rng, c)) {
        const std::size_t index = static_cast<std::size_t>(s - actions.data());
        Piece& p = s->pieces[rng.below(s->pieces.size())];
        if (p.kind == Piece::Kind::kBytes) {
          const Port port = portAt(c, index, s->conn);
          if (isWsPort(port) && s->raw && rng.chance(50)) {
            frames::mutateWsFrames(rng, p.bytes);  // hostile frames or upgrade requests
          } else if (isTlsPort(port) && p.bytes.size() > 5 && p.bytes[0] >= 20 &&
                     p.bytes[0] <= 24 && rng.chance(60)) {
            frames::mutateTlsRecords(rng, p.bytes);  // raw TLS records
          } else if (!isLinePort(port) && rng.chance(50)) {
            frames::mutatePacket(rng, p.bytes);
          } else {
            for (std::size_t n = 1 + rng.skewed(2); n > 0; --n)
              frames::mutateBytes(rng, p.bytes);
          }
        } else if (p.kind == Piece::Kind::kToken) {
          p = Piece::literal(frames::forgedToken(rng));
        } else {
          p.count = static_cast<std::uint32_t>(rng.skewed(16));
          p.seed ^= rng.next();
        }
      }
      break;
    case 7:  // a pause somewhere
      actions.insert(actions.begin() + at(actions.size() + 1),
                     pause(static_cast<std::uint32_t>(rng.range(0, kMaxPauseMillis))));
      break;
    case 8:  // swap neighbours
      if (actions.size() > 1) {
        const std::ptrdiff_t i = at(actions.size() - 1);
        std::swap(actions[static_cast<std::size_t>(i)], actions[static_cast<std::size_t>(i) + 1]);
      }
      break;
    case 9:  // another connection
      if (!actions.empty()) {
        actions[rng.below(actions.size())].conn =
            static_cast<std::uint8_t>(rng.below(kMaxConnections));
      }
      break;
    case 10:  // an ending somewhere
      if (!actions.empty()) {
        static constexpr Action::Kind kEndings[] = {Action::Kind::kClose, Action::Kind::kReset,
                                                    Action::Kind::kShutdown};
        const std::uint8_t conn = actions[rng.below(actions.size())].conn;
        actions.insert(actions.begin() + at(actions.size() + 1), ending(conn, rng.pick(kEndings)));
      }
      break;
    case 12: {  // another transport for a connection: plain, TLS, raw bytes on a TLS port
      std::vector<Action*> opens;
      for (Action& a : actions)
        if (a.kind == Action::Kind::kOpen) opens.push_back(&a);
      if (opens.empty()) break;
      Action& o = *opens[rng.below(opens.size())];
      switch (rng.below(4)) {
        case 0:
          o.port = plainPortOf(o.port);
          o.transport = Transport::kPlain;
          break;
        case 1:
          o.port = tlsPortOf(o.port);
          o.transport = rng.chance(20) ? Transport::kTlsCert : Transport::kTls;
          break;
        case 2:
          o.port = tlsPortOf(o.port);
          o.transport = Transport::kPlain;
          break;
        default:
          o.port = plainPortOf(o.port);
          o.transport = Transport::kTls;
          break;
      }
      break;
    }
    case 13:  // a send that cuts the ciphertext (one frame), goes past the session (or the
              // WebSocket layer), is a fragmented message, or none of these; pings, a close
      if (Action* s = randomSend(rng, c)) {
        const std::uint64_t how = rng.below(5);
        s->wire = how == 0;
        s->raw = how == 1;
        s->frag = how == 2;
        if (rng.chance(20)) s->ping = !s->ping;
        if (rng.chance(8)) s->closeFrame = !s->closeFrame;
      }
      break;
    case 14: {  // a connection's WebSocket layer: on, off, without the upgrade; or to a WS port
      std::vector<Action*> opens;
      for (Action& a : actions)
        if (a.kind == Action::Kind::kOpen) opens.push_back(&a);
      if (opens.empty()) break;
      Action& o = *opens[rng.below(opens.size())];
      switch (rng.below(4)) {
        case 0:
          o.ws = WsLayer::kNone;
          break;
        case 1:
          o.ws = WsLayer::kUpgrade;
          break;
        case 2:
          o.ws = WsLayer::kNoUpgrade;
          break;
        default:
          o.port = rng.chance(35) ? Port::kMqttWss : Port::kMqttWs;
          o.transport = defaultTransport(o.port);
          o.ws = WsLayer::kUpgrade;
          break;
      }
      break;
    }
    default:  // a token where there was none, or a read that captures one
      if (Action* s = randomSend(rng, c)) {
        s->pieces.insert(s->pieces.begin() + at(s->pieces.size() + 1),
                         Piece::token(static_cast<std::uint8_t>(rng.below(kTokenSlots))));
      } else if (!actions.empty()) {
        Action& a = actions[rng.below(actions.size())];
        if (a.kind == Action::Kind::kRead) a.tokenSlot = static_cast<int>(rng.below(kTokenSlots));
      }
      break;
  }
}

}  // namespace

Case Generator::generate(std::string name) {
  CaseBuilder builder(rng_, chooseMode(rng_));
  std::vector<Block> blocks;
  for (std::size_t n = rng_.range(1, 4); n > 0; --n)
    blocks.push_back(builder.makeBlock());
  Case c{std::move(name), interleave(rng_, std::move(blocks))};
  normalize(c);
  return c;
}

Case Generator::mutate(const Case& base, const Case& other, std::string name) {
  Case c{std::move(name), base.actions};
  for (std::size_t n = 1 + rng_.skewed(2); n > 0; --n)
    mutateOnce(rng_, c, other);
  normalize(c);
  return c;
}

}  // namespace tern::fuzz
