// ConnectionIo: what the protocol handlers may do to a connection's socket: write to it, close it,
// hand it to another worker, hold its input. Implemented by the Worker over its event loop, and by
// a fake in the unit tests, which drive the handlers without sockets.
//
// Threads: the worker's own thread only, like the connections themselves.
#pragma once

#include <cstddef>
#include <cstdint>

#include "connection.hpp"
#include "tern/net/byte_buffer.hpp"

namespace tern::broker {

class ConnectionIo {
 public:
  virtual ~ConnectionIo() = default;

  // The queue of bytes to send on `c`; after appending, call send(c). REQUIRES: c is open.
  virtual net::ByteBuffer& output(Connection& c) noexcept = 0;
  // Writes what output(c) holds at the end of the turn.
  virtual void send(Connection& c) = 0;
  // Bytes not yet handed to the kernel on `c` (queued and in flight): what the output bounds
  // (--max-queued-bytes) are measured against.
  virtual std::size_t unsent(const Connection& c) const noexcept = 0;

  // Stops reading `c`; what it sent is flushed (for at most the close linger), then it closes.
  virtual void closeAfterFlush(Connection& c) = 0;
  // Closes `c` at once (its session learns it through WorkerCore::connectionGone).
  virtual void closeNow(Connection& c) = 0;
  // Moves unbound `c`, with its unhandled input, to `worker`; `c` must not be touched afterwards.
  virtual void handOver(Connection& c, unsigned worker) = 0;
  // The client does not read its replies: stop reading `c` until its output drains (the worker
  // resumes it by itself).
  virtual void pauseInput(Connection& c) = 0;
  // Asks for JobRunner::wakeIfRoom() once everything queued on `c` is sent (a job waits for room).
  virtual void notifyWhenDrained(Connection& c) = 0;
  // c.heldByJobs went from true to false: handle its buffered input and read it again.
  virtual void releaseInput(Connection& c) = 0;
  // MQTT keep-alive: `c` is closed once no complete packet arrived for `nanos` (checked lazily).
  virtual void startKeepAlive(Connection& c, std::int64_t nanos) = 0;
};

}  // namespace tern::broker
