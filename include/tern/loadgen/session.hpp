// Session: one simulated client's connection(s) to the broker, behind a protocol-neutral interface.
//
// loadgen's event loop (the worker) drives sessions without knowing the protocol: it asks one to
// connect, to subscribe to a list of filters, and to publish; the session turns that into frames,
// parses what the broker sends and reports back through SessionHost. A protocol is one Session
// implementation plus a SessionFactory: the line protocol (three sockets, line_session.hpp) and
// MQTT 3.1.1 (one socket, mqtt_session.hpp).
//
// Rules every implementation follows:
//   - A session's sockets live on the host's net::EventLoop (SessionHost::loop()). Each is opened
//     with EventLoop::connect and the user pointer socketTag(config.client, slot); the host routes
//     that socket's callbacks to the session's onConnected/onReceive/onInputEnd with `slot`. The
//     session never blocks and never makes a system call per message.
//   - Output is appended to the loop's output(id) and followed by flush(id); the loop writes
//     every flushed socket once at the start of its next turn, so all the frames of one turn
//     leave in one send per socket (io_uring: all of them in the turn's one submission).
//   - TLS (SessionConfig::tls): the frames go to a plaintext buffer instead, the session asks the
//     host for sealBeforeTurn(), and the host calls its sealOutput() right before the loop's next
//     turn, which encrypts each socket's frames of that turn at once (one SSL_write per socket
//     per turn, not per frame) into output(id). Received bytes are decrypted before parsing.
//   - WebSocket (SessionConfig::websocket, MQTT): the same plaintext buffer and seal, which frames
//     a socket's turn as one masked binary frame (then TLS-encrypts it with TLS); received bytes
//     are decoded from their frames before parsing (session_socket.hpp, ws_client.hpp).
//   - Input arrives in whatever pieces the kernel made; the session parses complete frames in
//     place and carries an incomplete one to the next receive (session_socket.hpp).
//   - Acknowledgements of publishes are reported with the intended time given to publish(), so
//     the host can compute acknowledgement latency from the intended time. A protocol without
//     acknowledgements (MQTT QoS 0) reports none; Options::acknowledged() says which.
//   - A session that fails (refused, reset, timed out, protocol error) closes all its sockets,
//     reports onFailed() exactly once and ignores later calls. A closed socket gets no more
//     callbacks (EventLoop::close). A ready session with several sockets whose broker closes one
//     first stops publishing (canPublish) and lets the others drain before it fails, so that
//     nothing the broker sent before it went is counted lost (line_session.cpp).
//
// Ownership: a session is created, used and destroyed on one worker thread. Not thread-safe.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "tern/net/event_loop.hpp"
#include "tern/net/tls.hpp"

namespace tern::loadgen {

enum class SessionFailure {
  kConnect,       // a TCP connect failed
  kHandshake,     // the broker refused or garbled the handshake
  kTimeout,       // the handshake or subscriptions took too long
  kDisconnected,  // the broker closed a socket or it reset
  kProtocol,      // an unparsable frame from the broker
};
std::string_view describe(SessionFailure failure) noexcept;

// The user pointer of a session's socket on the host's loop: (client, slot), slot 0..3.
inline void* socketTag(std::uint32_t client, unsigned slot) noexcept {
  return reinterpret_cast<void*>((static_cast<std::uintptr_t>(client) << 2) | slot);
}
inline std::uint32_t tagClient(void* tag) noexcept {
  return static_cast<std::uint32_t>(reinterpret_cast<std::uintptr_t>(tag) >> 2);
}
inline unsigned tagSlot(void* tag) noexcept {
  return static_cast<unsigned>(reinterpret_cast<std::uintptr_t>(tag) & 3);
}

// What a session reports, and the loop its sockets live on. Implemented by the worker; every
// call is on the worker thread.
class SessionHost {
 public:
  // The event loop of this thread. Its handler (the host) passes the callbacks of every socket
  // tagged socketTag(client, slot) to that client's session.
  virtual net::EventLoop& loop() noexcept = 0;

  virtual void onConnected(std::uint32_t client, std::int64_t nowNs) = 0;
  virtual void onSubscribed(std::uint32_t client, std::int64_t nowNs) = 0;
  virtual void onPubAck(std::uint32_t client, std::int64_t intendedNs,
                        std::int64_t nowNs) noexcept = 0;
  virtual void onMessage(std::uint32_t client, std::string_view topic, std::string_view payload,
                         std::int64_t nowNs) noexcept = 0;
  // An error reply the session survived (e.g. ERROR@bad-topic@...). `frame` is the whole line.
  virtual void onBrokerError(std::uint32_t client, std::string_view frame) noexcept = 0;
  virtual void onFailed(std::uint32_t client, SessionFailure failure, std::string_view detail) = 0;
  // TLS sessions: asks for one call of that client's Session::sealOutput() before the loop's
  // next turn (runOnce). Asked at most once per socket per turn. Never allocates once the
  // host's list has grown.
  virtual void sealBeforeTurn(std::uint32_t client) noexcept = 0;

 protected:
  ~SessionHost() = default;
};

// Where and as whom a session connects.
struct SessionConfig {
  sockaddr_storage broker{};
  socklen_t brokerLength = 0;
  // Source address to bind before connecting (loopback runs with more sockets than one source
  // address has ephemeral ports); family AF_UNSPEC: let the kernel choose.
  sockaddr_storage source{};
  socklen_t sourceLength = 0;
  std::string clientId;
  std::uint32_t client = 0;  // the host's index for this session, passed back in every report
  // MQTT only: QoS of publishes and subscriptions, and the keep-alive announced in CONNECT.
  std::uint8_t qos = 0;
  std::uint16_t keepAliveS = 60;
  std::uint8_t mqttLevel = 4;  // MQTT only: protocol level 4 (3.1.1) or 5 (5.0)
  // MQTT only: a session the broker keeps (clean session 0 / Clean Start 0) with 5.0 Session
  // Expiry Interval `sessionExpiryS`; otherwise clean session 1 and no expiry property.
  bool persistent = false;
  std::uint32_t sessionExpiryS = 0;
  // TLS on every socket of the session when set (shared by all sessions; thread-safe to use).
  std::shared_ptr<const net::TlsContext> tls;
  std::string tlsServerName;  // the name the broker's certificate must carry (empty: none)
  // MQTT only: MQTT over WebSockets (RFC 6455; inside TLS with `tls`): the upgrade request asks
  // for `wsPath` with the Host header `wsHost` (host:port).
  bool websocket = false;
  std::string wsPath = "/mqtt";
  std::string wsHost;
  // Credentials of CONNECT: line protocol CONNECT@<id>@<user>@<password> when `username` is set
  // (an absent password is sent empty); MQTT the user name and password fields, each when set.
  std::string username;
  std::optional<std::string> password;
};

class Session {
 public:
  virtual ~Session() = default;

  // Starts connecting; onConnected() or onFailed() follows.
  virtual void start(std::int64_t nowNs) = 0;
  // REQUIRES: connected. Sends every filter; onSubscribed() follows once all are acknowledged
  // (immediately when `filters` is empty).
  virtual void subscribe(std::span<const std::string> filters, std::int64_t nowNs) = 0;
  // REQUIRES: connected. Queues one publish; its acknowledgement reports `intendedNs`. Appends to
  // an output buffer (allocates only when the buffer grows).
  virtual void publish(std::string_view topic, std::string_view payload,
                       std::int64_t intendedNs) noexcept = 0;
  // The EventLoop's callbacks for the socket opened as `slot` (see socketTag). `bytes` are valid
  // only during the call.
  virtual void onConnected(unsigned slot, int error, std::int64_t nowNs) = 0;
  virtual void onReceive(unsigned slot, std::span<const char> bytes, std::int64_t nowNs) = 0;
  virtual void onInputEnd(unsigned slot, int error, std::int64_t nowNs) = 0;
  // Output bytes not yet handed to the kernel (EventLoop::unsentBytes of the sockets publishes
  // and requests go on): the host stops publishing above a limit.
  virtual std::size_t queuedBytes() const noexcept = 0;
  // False while the session cannot take another publish for a reason of its protocol (MQTT: every
  // packet id is in flight); the host holds the client's schedule until it is true again.
  virtual bool canPublish() const noexcept { return true; }
  // Called about once a second in every phase, for protocol timers (MQTT keep-alive pings).
  virtual void tick(std::int64_t /*nowNs*/) {}
  // Publishes not yet acknowledged.
  virtual std::uint64_t unacknowledged() const noexcept = 0;
  // TLS: encrypts what the session's sockets queued since the last call into the loop's output
  // (after SessionHost::sealBeforeTurn). A TLS failure fails the session. No-op without TLS.
  virtual void sealOutput() noexcept {}
  // Closes every socket without reporting anything (end of run).
  virtual void close() noexcept = 0;
};

using SessionFactory = std::unique_ptr<Session> (*)(SessionHost& host, const SessionConfig& config);

}  // namespace tern::loadgen
