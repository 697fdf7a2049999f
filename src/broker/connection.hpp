// Connection: one accepted TCP socket and its buffers.
//
// Ownership: owned by exactly one Worker at a time, which is the only thread that touches it. A
// connection moves to another worker only while unbound (CONNECT or ATTACH naming a session homed
// there): the old owner detaches its socket from its event loop (which hands back the descriptor,
// the unsent output and what arrived meanwhile), removes it from its tables, then pushes the
// pointer through the new owner's inbox; after that push the old owner never touches it again.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

#include "job.hpp"
#include "tern/net/byte_buffer.hpp"
#include "tern/net/connection_limiter.hpp"
#include "tern/net/event_loop.hpp"
#include "tern/net/tls.hpp"
#include "tern/protocol/ws_stream.hpp"
#include "tern/sync/thread_owner.hpp"

namespace tern::broker {

struct Session;

enum class Protocol : std::uint8_t { kLine = 0, kMqtt = 1 };

// The part a socket plays in its session: a line-protocol request or push socket, or an MQTT
// client connection (after its CONNECT). Unbound until the handshake.
enum class SocketRole : std::uint8_t { kUnbound, kRequest, kPush, kMqtt };

struct Connection {
  Protocol protocol = Protocol::kLine;
  SocketRole role = SocketRole::kUnbound;
  Session* session = nullptr;  // the session this socket is bound to (same worker), or null

  // The socket in the owning worker's event loop (its output lives there: ConnectionIo::output).
  net::SocketId socket = 0;
  std::uint32_t index = 0;  // position in the owning worker's list of connections
  // Only while the connection moves between workers (or before its first loop takes it): the
  // descriptor, and in `carried` the output not sent yet.
  int fd = -1;
  net::ByteBuffer carried;
  unsigned moveTo = 0;  // the worker a hand-over in progress goes to
  bool moving = false;  // detached from the old loop, not yet in the new one

  // TLS listeners only (null on plain ones): the connection's TLS session. Input is decrypted
  // before anything else sees it; the protocols write plaintext to `tlsOut`, which the worker
  // encrypts into the socket's output once per turn (Worker::sealPending). Both move with the
  // connection between workers.
  std::unique_ptr<net::TlsSession> tls;
  net::ByteBuffer tlsOut;

  // WebSocket listeners only (null on the others): MQTT over WebSockets. Input (after TLS) is
  // the HTTP upgrade until it is decided, then frames, decoded before the protocol sees them;
  // the protocol writes MQTT bytes to `wsOut`, which the worker puts in one binary frame per
  // turn (Worker::sealPending) into the TLS or socket output. Both move with the connection.
  struct WebSocket {
    explicit WebSocket(std::size_t maxFramePayload) : stream(maxFramePayload) {}
    std::string request;  // the upgrade request so far (bounded), until `open`
    bool open = false;    // the handshake was accepted: frames follow
    protocol::WsStream stream;
  };
  std::unique_ptr<WebSocket> ws;
  net::ByteBuffer wsOut;

  bool sealQueued = false;  // TLS or WebSocket: listed for this turn's framing and encryption
  // The verified client certificate's common name (empty: none, or a plain connection).
  const std::string& identity() const noexcept {
    static const std::string kNone;
    return tls != nullptr ? tls->peerIdentity() : kNone;
  }

  net::ByteBuffer in;     // input not handled yet: an incomplete frame, or what arrived held
  net::PeerAddress peer;  // counted against --max-connections-per-address until closed
  // Counted against --max-unauthenticated-per-address: until the socket binds (Worker notes it
  // after the input that bound it) or closes.
  bool unauthenticated = true;

  // Monotonic ns when the incomplete frame at the end of `in` started to arrive (0: none); the
  // connection is closed once it is older than --frame-timeout.
  std::int64_t frameStarted = 0;

  // Monotonic ns: the handshake deadline while unbound, the linger deadline while closing.
  std::int64_t deadline = 0;

  // MQTT keep-alive: the connection is closed when no control packet arrives for this long (1.5
  // times the client's keep-alive; 0 = never) [MQTT-3.1.2-24]. lastActivity is when the last
  // complete packet arrived: bytes trickling in do not keep a connection alive.
  std::int64_t keepAliveNanos = 0;
  std::int64_t lastActivity = 0;
  bool gracefulDisconnect = false;  // MQTT DISCONNECT received: the will is discarded

  // Work this socket's requests started and that is not finished (retained replay, LIST), oldest
  // first; null when there is none (never empty), as on most sockets.
  std::unique_ptr<JobQueue> jobs;
  // Input is not handled until the jobs are done: a line request socket always waits for its
  // job (one request at a time, as the reply order requires); an MQTT connection only once it
  // has kMaxJobs, since its jobs may wait for acknowledgements that follow in its input.
  bool heldByJobs = false;

  // Authentication of the CONNECT at the front of `in` (--password-file): kPending while the
  // Authenticator checks it (input held), then its verdict, which the CONNECT, handled again,
  // takes. An accepted verdict stays for a hand-over to the session's home worker; a refused one
  // is used once (the socket may CONNECT again).
  enum class Auth : std::uint8_t { kNone, kPending, kAccepted, kRefused };
  Auth auth = Auth::kNone;
  std::uint32_t authAttempt = 0;  // numbers the verdicts, so a stale one is recognized
  bool heldByAuth = false;
  // --data-dir (StoreLink): not read while the store's queue is full (its publishes wait in the
  // worker's backlog), and the acknowledgements held until their writes are durable. A line
  // request socket also stops while it has one (its replies keep the order of its requests).
  bool heldByStore = false;
  std::uint32_t heldAcks = 0;

  bool closing = false;  // input is ignored; close once the output is sent (or at `deadline`)
  bool closed = false;   // descriptor closed; the object waits to be freed at the end of the turn
  bool readPaused = false;     // too many replies pending: not reading until the client catches up
  bool receivePaused = false;  // the loop was told to stop receiving on the socket
  bool throttled = false;      // listed as held back while another worker is overloaded

  // Whether input is left unhandled for now (it stays in the socket and in `in`).
  bool inputHeld() const noexcept {
    return readPaused || heldByJobs || heldByAuth || heldByStore ||
           (protocol == Protocol::kLine && heldAcks != 0);
  }

  sync::ThreadOwner owner;
};

}  // namespace tern::broker
