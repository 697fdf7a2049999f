// Connection: one accepted TCP socket and its buffers.
//
// Ownership: owned by exactly one Worker at a time, which is the only thread that touches it. A
// connection moves to another worker only while unbound (CONNECT or ATTACH naming a session homed
// there): the old owner removes it from its epoll set and tables, then pushes the pointer through
// the new owner's inbox; after that push the old owner never touches it again.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

#include "job.hpp"
#include "tern/net/byte_buffer.hpp"
#include "tern/net/connection_limiter.hpp"
#include "tern/sync/thread_owner.hpp"

namespace tern::broker {

struct Session;

enum class Protocol : std::uint8_t { kLine = 0, kMqtt = 1 };

// The part a socket plays in its session: a line-protocol request or push socket, or an MQTT
// client connection (after its CONNECT). Unbound until the handshake.
enum class SocketRole : std::uint8_t { kUnbound, kRequest, kPush, kMqtt };

struct Connection {
  int fd = -1;
  Protocol protocol = Protocol::kLine;
  SocketRole role = SocketRole::kUnbound;
  Session* session = nullptr;  // the session this socket is bound to (same worker), or null

  std::uint32_t slot = 0;        // index in the owning worker's connection table
  std::uint32_t generation = 0;  // the slot's generation when this connection took it
  std::uint32_t interest = 0;    // epoll events currently registered
  bool registered = false;       // in the owning worker's epoll set

  net::ByteBuffer in;
  net::ByteBuffer out;
  net::PeerAddress peer;  // counted against --max-connections-per-address until closed

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

  bool closing = false;  // input is ignored; close once `out` is flushed (or at `deadline`)
  bool closed = false;   // descriptor closed; the object waits to be freed at the end of the turn
  bool readPaused = false;  // too many replies pending: not reading until the client catches up
  bool dirty = false;       // listed for a flush at the end of this turn

  // Whether input is left unhandled for now (it stays in the socket and in `in`).
  bool inputHeld() const noexcept { return readPaused || heldByJobs; }

  sync::ThreadOwner owner;
};

}  // namespace tern::broker
