// Executor: runs one Case against a live broker over loopback.
//
// It judges nothing: what the broker answers, closes or resets is the broker's business, and the
// liveness probe (probe.hpp) decides afterwards whether the broker survived. Its job is to play
// the actions faithfully and within bounds:
//   - at most kMaxConnections sockets, all closed when the case ends;
//   - pauses and split gaps capped at kMaxCasePauseMillis per case, every socket call bounded
//     by the case deadline (kCaseBudget times the timeout scale), after which the remaining
//     actions are skipped;
//   - token:K pieces replaced by the token the case captured in slot K (a CONNACK read by a
//     `read ... token K` action), or by a forged token while the slot is empty;
//   - TLS connections (client_stream.hpp): a send first completes the handshake (at most
//     kHandshakeWait, within the case deadline), then encrypts each chunk on its own, or (`wire`)
//     encrypts all and cuts the ciphertext at the split points, or (`raw`) sends the bytes past
//     the session; reads decrypt, so CONNACK tokens are captured through TLS too; `notify` sends
//     a close_notify;
//   - WebSocket connections (ws_client.hpp; a WsLayer at open): the upgrade request at open
//     (unless `noupgrade`), then each chunk of a send in one masked binary frame, or (`wire`) all
//     the bytes in one frame cut at the split points, or (`frag`) the chunks as the frames of one
//     fragmented message, each data frame followed by a ping with `ping`, a close frame (1000) at
//     the end with `close`; `raw` sends the chunks past the WebSocket layer (through TLS on
//     mqtt+wss). Frames below the layer go through TLS one frame piece per write, so records end
//     where frame pieces do. Masking keys and upgrade keys come from a SplitMix64 state reset at
//     each case, so a case's bytes depend on the case alone. Reads decode the broker's frames.
//
// Single-threaded; one Executor per broker.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>

#include "case.hpp"
#include "client_stream.hpp"
#include "socket_io.hpp"
#include "tern/net/tls.hpp"

namespace tern::fuzz {

struct Endpoints {
  std::uint16_t linePort = 0;
  std::uint16_t mqttPort = 0;
  std::uint16_t lineTlsPort = 0;  // 0: the broker has no TLS listeners (TLS opens fail)
  std::uint16_t mqttTlsPort = 0;
  std::uint16_t mqttWsPort = 0;   // 0: no --ws-port (opens fail)
  std::uint16_t mqttWssPort = 0;  // 0: no --wss-port
  // Client contexts that trust the broker's certificate: without and with a client certificate.
  std::shared_ptr<const net::TlsContext> tls;
  std::shared_ptr<const net::TlsContext> tlsCert;

  std::uint16_t port(Port p) const noexcept {
    switch (p) {
      case Port::kLine:
        return linePort;
      case Port::kMqtt:
        return mqttPort;
      case Port::kLineTls:
        return lineTlsPort;
      case Port::kMqttTls:
        return mqttTlsPort;
      case Port::kMqttWs:
        return mqttWsPort;
      case Port::kMqttWss:
        return mqttWssPort;
    }
    return 0;
  }
};

struct ExecutorStats {
  std::uint64_t cases = 0;
  std::uint64_t connections = 0;      // connections opened
  std::uint64_t connectFailures = 0;  // refused or timed out
  std::uint64_t bytesSent = 0;
  std::uint64_t actionsSkipped = 0;  // skipped because the case ran out of time
  std::uint64_t tlsConnections = 0;  // of `connections`, those with a client TLS session
  std::uint64_t tlsHandshakes = 0;   // client TLS sessions whose handshake completed
  std::uint64_t wsConnections = 0;   // of `connections`, those with the WebSocket layer
  std::uint64_t wsUpgrades = 0;      // of those, the ones the broker answered with 101
};

class Executor {
 public:
  // Upper bound on one case's running time, before the timeout scale.
  static constexpr Millis kCaseBudget{3000};
  // Upper bound on completing a TLS handshake before a send, before the timeout scale.
  static constexpr Millis kHandshakeWait{500};

  Executor(Endpoints endpoints, double timeoutScale) noexcept
      : endpoints_(std::move(endpoints)),
        budget_(static_cast<Millis::rep>(kCaseBudget.count() * timeoutScale)),
        handshakeWait_(static_cast<Millis::rep>(kHandshakeWait.count() * timeoutScale)) {}

  // Plays `c` and closes every socket it opened.
  void run(const Case& c);

  const ExecutorStats& stats() const noexcept { return stats_; }

 private:
  struct Connection {
    ClientStream stream;
    Port port = Port::kLine;
    bool handshakeCounted = false;
    bool upgradeCounted = false;
    bool writable = false;  // not half-closed, no send error
    bool readable = false;  // no EOF or error seen
    std::string partial;    // line connections: the bytes after the last LF read (bounded)
    std::string token;      // line connections: the token of the last CONNACK read
  };

  void open(Connection& conn, const Action& a, Clock::time_point deadline);
  // TLS: completes the handshake if it is not yet (bounded); counts it once.
  void handshake(Connection& conn, Clock::time_point deadline);
  void send(Connection& conn, const Action& a, Clock::time_point deadline);
  // send() on a WebSocket connection: the bytes framed as the action's flags say.
  void sendWs(Connection& conn, const Action& a, const std::string& bytes,
              Clock::time_point deadline);
  void read(Connection& conn, const Action& a, Clock::time_point deadline);
  // Reads once (waiting until `until`) and scans the line connection's input for CONNACK.
  void readOnce(Connection& conn, Clock::time_point until);
  void sleepFor(std::uint32_t millis, Clock::time_point deadline);

  Endpoints endpoints_;
  Millis budget_;
  Millis handshakeWait_;
  ExecutorStats stats_;
  std::array<Connection, kMaxConnections> connections_;
  std::string tokens_[kTokenSlots];
  std::uint32_t pausedMillis_ = 0;  // this case's pauses and gaps so far
  std::uint64_t maskState_ = 0;     // SplitMix64 state of this case's WebSocket keys
};

}  // namespace tern::fuzz
