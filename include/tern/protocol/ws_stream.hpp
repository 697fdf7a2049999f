// WsStream: one MQTT-over-WebSocket connection after its handshake (RFC 6455 section 5, MQTT 5.0
// section 6): the frames a client sends, decoded into the MQTT byte stream they carry, and the
// frames the broker answers with.
//
// Decoding is libwslay's (Debian libwslay-dev), in its event API without message buffering: the
// payload of each binary frame and of its continuations is handed on as it arrives, whatever
// its size, so a frame never waits to be whole and MQTT's own packet limit bounds what is held.
// libwslay enforces the RFC's rules: client frames must be masked, reserved bits and opcodes
// must be known, control frames are at most 125 bytes and never fragmented, continuations
// follow a start, a close carries a valid code; it answers a ping with a pong and a close with a
// close; a frame larger than `maxFramePayload` closes with 1009. This class adds MQTT's rule: a
// text frame closes with 1003 [MQTT-6.0.0-1], and reads a client's close frame that arrives in
// pieces itself (libwslay would check each piece's UTF-8 from its third byte, so where reads
// split a close would decide its answer; here it is the same however the input is split). The broker's own data frames are written here (one
// unmasked binary frame per flush; writeHeader), not through libwslay's queue, which would copy
// each message into an allocation of its own.
//
// Ownership: one per WebSocket connection, owned by it. Threads: one at a time (the worker that
// owns the connection).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

struct wslay_event_context;

namespace tern::protocol {

class WsStream {
 public:
  enum class State {
    kOpen,     // frames go on
    kClosing,  // a close frame is in the output: send it, read nothing more, then close
  };

  explicit WsStream(std::size_t maxFramePayload);
  ~WsStream();
  WsStream(const WsStream&) = delete;
  WsStream& operator=(const WsStream&) = delete;

  // Decodes `bytes` from the client: the payload of binary frames is appended to `payload`, the
  // frames to answer with (pong, close) to `output`. After kClosing, input is ignored.
  State receive(std::string_view bytes, std::string& payload, std::string& output);
  // Starts the close handshake from the broker's side with `code` (1000 normal, 1001 going
  // away, 1002 protocol error, ...): the close frame is appended to `output`.
  void close(std::uint16_t code, std::string& output);

  State state() const noexcept { return state_; }
  // The close code this side sent (0 while none was).
  std::uint16_t closeSent() const noexcept { return closeSent_; }

  // The header of an unmasked, final binary frame of `length` payload bytes: written to `out`,
  // returns its size (2, 4 or 10). noexcept, never allocates.
  static std::size_t writeHeader(std::uint64_t length, char (&out)[10]) noexcept;

 private:
  void flush(std::string& output);
  void fail(std::uint16_t code);

  wslay_event_context* ctx_ = nullptr;
  State state_ = State::kOpen;
  std::uint16_t closeSent_ = 0;
  // For libwslay's callbacks, during receive() and flush() only.
  std::string_view input_;
  std::string* payload_ = nullptr;
  std::string* output_ = nullptr;
  std::uint8_t frameOpcode_ = 0;  // opcode of the frame being received
  std::uint8_t dataOpcode_ = 0;   // opcode of the data message being received (continuations)
  std::uint16_t failure_ = 0;     // a close code this class decided on while decoding
  bool frameError_ = false;       // libwslay's frame layer refused a frame
  // A client's close frame whose payload did not arrive in one piece is read here, not by
  // libwslay: libwslay checks a close reason's UTF-8 from the third byte of *each* piece, so
  // where reads split the frame would decide whether a bad reason is caught. The first piece
  // (which libwslay checks from the frame's third byte, correctly) starts this; then libwslay
  // reads nothing more and finishClose() answers once closeLength_ bytes are here.
  std::string closeBody_;        // the close frame's payload so far (<= 125 bytes)
  std::size_t closeLength_ = 0;  // its announced length
  bool closeTakeover_ = false;   // reading the rest of a close frame here
  char closeMask_[4] = {};       // that frame's masking key
  // The last bytes handed to libwslay (at most a close frame's header and payload): where the
  // masking key of a close frame taken over is read from.
  std::string tail_;
  void finishClose();
  void takeCloseBytes(std::string_view raw);

  friend struct WsStreamCallbacks;
};

}  // namespace tern::protocol
