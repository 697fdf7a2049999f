// SessionSocket: one non-blocking TCP socket of a simulated client, with its pending output and
// the incomplete frame carried between reads. The socket work every protocol's session shares
// (line_session.cpp, mqtt_session.cpp): connect (optionally from a chosen source address), write
// what is queued, read after the carried bytes so that frames are always parsed in one piece.
//
// The functions report failures as text (empty on success) and leave the session to decide what
// the failure means; none of them calls back into the session. Owned by one session on one
// thread. Not thread-safe.
#pragma once

#include <cstddef>
#include <span>
#include <string>
#include <string_view>

#include "byte_queue.hpp"
#include "tern/loadgen/session.hpp"

namespace tern::loadgen {

struct SessionSocket {
  int fd = -1;
  bool connecting = false;     // connect() in progress: wait for writability
  bool watchingWrite = false;  // registered for EPOLLOUT
  ByteQueue out;
  std::string partial;  // an incomplete frame carried to the next read

  // Closes the socket and drops queued output. Never fails.
  void close() noexcept;
};

// Opens `socket` towards config.broker (bound to config.source when given), starts connecting and
// registers it with host.watch(config.client, slot, ...). Returns the reason it failed, or "".
std::string openSessionSocket(SessionSocket& socket, const SessionConfig& config, SessionHost& host,
                              unsigned slot);

// After an event on a socket still connecting: "" once connected (the caller flushes), the error
// text when the connection failed. `done` tells whether the connect finished either way.
std::string finishConnect(SessionSocket& socket, std::uint32_t events, bool& done);

// Writes queued output until the kernel stops taking it, and keeps the EPOLLOUT registration in
// step. Returns the reason the connection is gone, or "". `sent` is set when any byte left.
std::string flushSessionSocket(SessionSocket& socket, SessionHost& host, std::uint32_t client,
                               unsigned slot, bool* sent = nullptr);

enum class ReadStatus {
  kData,        // `data` holds the carried bytes followed by what was read
  kWouldBlock,  // nothing to read now
  kClosed,      // the peer closed the connection
  kError,       // recv failed; `error` holds errno
  kTooLong,     // the carried frame fills the whole buffer
};

// Copies the carried partial frame to the start of `buffer` and reads once after it. On kData the
// caller parses `data`, then keeps what it did not consume: socket.partial.assign(data.substr(n)).
ReadStatus readSessionSocket(SessionSocket& socket, std::span<char> buffer, std::string_view& data,
                             int& error) noexcept;

}  // namespace tern::loadgen
