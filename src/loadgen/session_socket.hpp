// SessionSocket: one TCP socket of a simulated client on the worker's net::EventLoop, with the
// incomplete frame carried between receives. The socket work every protocol's session shares
// (line_session.cpp, mqtt_session.cpp): connect through the loop (optionally from a chosen source
// address), append output and flush it, and hand received bytes to the protocol's parser so that
// frames are always parsed in one piece.
//
// The functions report failures as values and leave the session to decide what the failure
// means; none of them calls back into the session except through the `parse` it passes. Owned by
// one session on the loop's thread. Not thread-safe.
#pragma once

#include <algorithm>
#include <cstddef>
#include <span>
#include <string>
#include <string_view>

#include "tern/loadgen/session.hpp"
#include "tern/net/event_loop.hpp"

namespace tern::loadgen {

// The longest frame a session accepts from the broker (a longer one is a protocol failure), and
// so the most a socket ever carries between receives.
inline constexpr std::size_t kMaxFrameBytes = 256 << 10;

struct SessionSocket {
  net::SocketId id = 0;  // 0: not open
  bool connecting = false;
  std::string partial;  // an incomplete frame carried to the next receive

  bool open() const noexcept { return id != 0; }
  // Closes the socket (its unsent output is dropped; no more callbacks). Never fails.
  void close(net::EventLoop& loop) noexcept;
  // Appends `bytes` to the socket's output and asks the loop to send it in its next turn.
  // REQUIRES: open(). Allocates only when the output buffer grows.
  void send(net::EventLoop& loop, std::string_view bytes);
};

// Makes a non-blocking socket towards config.broker (bound to config.source when given) and
// starts connecting it through loop.connect with the user pointer socketTag(config.client, slot);
// the session's onConnected(slot, ...) follows. Returns the reason it failed, or "".
std::string openSessionSocket(SessionSocket& socket, const SessionConfig& config,
                              net::EventLoop& loop, unsigned slot);

// What parse() returns when it stopped because the session failed.
inline constexpr std::size_t kParseStopped = ~std::size_t{0};

enum class ReceiveStatus {
  kOk,       // every complete frame was parsed; an incomplete rest is carried
  kStopped,  // parse() returned kParseStopped (the session failed: stop touching it)
  kTooLong,  // the carried frame grew past kMaxFrameBytes
};

// Hands received `bytes` to `parse` as whole frames: parse(data) parses every complete frame at
// the start of `data` and returns how many bytes they took (or kParseStopped). Without a carried
// frame, `bytes` are parsed in place and only an incomplete tail is copied. With one, the new
// bytes are appended to it in growing steps (512 bytes first: a frame's rest is usually short)
// until it completes, and the rest is again parsed in place; so each byte is copied at most once
// and a receive copies little more than the frames that straddle its ends. Never allocates once
// `partial` has reached its working size.
template <typename Parse>
ReceiveStatus receiveFrames(SessionSocket& socket, std::string_view bytes, Parse&& parse) {
  std::string& partial = socket.partial;
  if (!partial.empty()) {
    std::size_t carried = partial.size();
    std::size_t taken = 0;
    // Steps at least as long as what is carried, so that parsing a long frame's pieces again
    // costs no more than copying them.
    std::size_t step = std::max<std::size_t>(512, carried);
    for (;;) {
      const std::size_t n = std::min(step, bytes.size() - taken);
      partial.append(bytes.data() + taken, n);
      taken += n;
      step *= 2;
      const std::size_t consumed = parse(std::string_view(partial));
      if (consumed == kParseStopped) return ReceiveStatus::kStopped;
      if (consumed >= carried) {
        // The carried frame is complete: what follows is parsed where it lies.
        bytes.remove_prefix(consumed - carried);
        partial.clear();
        break;
      }
      partial.erase(0, consumed);
      carried -= consumed;
      if (taken == bytes.size()) {
        return partial.size() > kMaxFrameBytes ? ReceiveStatus::kTooLong : ReceiveStatus::kOk;
      }
    }
  }
  const std::size_t consumed = parse(bytes);
  if (consumed == kParseStopped) return ReceiveStatus::kStopped;
  if (bytes.size() - consumed > kMaxFrameBytes) return ReceiveStatus::kTooLong;
  partial.assign(bytes.substr(consumed));
  return ReceiveStatus::kOk;
}

}  // namespace tern::loadgen
