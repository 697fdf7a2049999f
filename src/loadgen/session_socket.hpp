// SessionSocket: one TCP socket of a simulated client on the worker's net::EventLoop, with the
// incomplete frame carried between receives. The socket work every protocol's session shares
// (line_session.cpp, mqtt_session.cpp): connect through the loop (optionally from a chosen source
// address), append output and flush it, and hand received bytes to the protocol's parser so that
// frames are always parsed in one piece.
//
// TLS (SessionConfig::tls): each socket is its own net::TlsSession. Received bytes are decrypted
// into `plainIn` and parsed from there (the handshake records the engine answers with go to the
// loop's output at once); output() is then `plainOut`, which flush() does not hand to the loop but
// registers with the host (SessionHost::sealBeforeTurn), so that seal(), called once before the
// loop's next turn, encrypts all of the turn's frames in one TlsSession::write. Without TLS every
// call takes the plain path: output() is the loop's own buffer, no copy, no extra call.
//
// WebSocket (SessionConfig::websocket, MQTT only): the socket first carries the HTTP upgrade
// request (ws_client.hpp), queued at open in `ws.framed` so that it leaves in the same write as
// the first frames; output() is `plainOut` as with TLS, and seal() frames the turn's bytes as ONE
// masked binary frame behind whatever `ws.framed` holds (the request, pongs), straight into the
// loop's output, or with TLS into `ws.framed`, which is then encrypted in one TlsSession::write.
// Received bytes (decrypted first with TLS) go through the broker's 101 answer once, then the
// frame decoder, whose payload (`ws.in`) is parsed as without WebSocket.
//
// The functions report failures as values and leave the session to decide what the failure
// means; none of them calls back into the session except through the `parse` it passes. Owned by
// one session on the loop's thread. Not thread-safe.
#pragma once

#include <algorithm>
#include <cstddef>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "tern/loadgen/session.hpp"
#include "tern/loadgen/ws_client.hpp"
#include "tern/net/event_loop.hpp"
#include "tern/net/tls.hpp"

namespace tern::loadgen {

// The longest frame a session accepts from the broker (a longer one is a protocol failure), and
// so the most a socket ever carries between receives: an MQTT packet of the broker's default
// --max-packet-size (1 MiB) and its fixed header.
inline constexpr std::size_t kMaxFrameBytes = (1 << 20) + 8;

// A socket's WebSocket layer (SessionSocket::ws). Its buffers keep their capacity from one
// connection to the next.
struct WsLayer {
  bool on = false;        // SessionConfig::websocket
  bool upgraded = false;  // the broker's 101 was read and checked
  std::string key;        // Sec-WebSocket-Key of this connection
  std::string response;   // the 101 answer so far, until its end of headers
  ws::FrameDecoder decoder;
  ws::MaskKeys masks{1};   // reseeded from RAND_bytes at every open
  net::ByteBuffer framed;  // bytes to send ahead of the turn's frame (request, pongs); TLS:
                           // also that frame, until seal() encrypts it
  net::ByteBuffer in;      // binary payload decoded from the receive in progress
  std::string problem;     // why the layer failed (ReceiveStatus::kWs*)
};

struct SessionSocket {
  net::SocketId id = 0;  // 0: not open
  bool connecting = false;
  std::string partial;       // an incomplete frame carried to the next receive
  std::uint32_t client = 0;  // the host's index of the session (config.client)
  // TLS only (null: a plain socket).
  std::unique_ptr<net::TlsSession> tls;
  net::ByteBuffer plainIn;   // decrypted bytes of the receive in progress
  net::ByteBuffer plainOut;  // frames queued this turn, encrypted by seal()
  bool sealAsked = false;    // sealBeforeTurn() was called for plainOut
  WsLayer ws;                // WebSocket only (ws.on)

  bool open() const noexcept { return id != 0; }
  // Whether frames go through plainOut and seal() (TLS, WebSocket) rather than straight to the
  // loop.
  bool layered() const noexcept { return tls || ws.on; }
  // Closes the socket (its unsent output is dropped; no more callbacks). Never fails.
  void close(net::EventLoop& loop) noexcept;
  // Where frames are written: the loop's output(id), or with TLS or WebSocket the plaintext
  // buffer. Follow the writes with flush(). REQUIRES: open().
  net::ByteBuffer& output(net::EventLoop& loop) noexcept {
    return layered() ? plainOut : loop.output(id);
  }
  // Makes what output() holds leave with the loop's next turn: loop.flush(id), or with TLS or
  // WebSocket asks the host to seal() the socket before that turn (once per turn). Never
  // allocates.
  void flush(SessionHost& host) noexcept {
    if (!layered()) {
      host.loop().flush(id);
    } else if (!sealAsked) {
      sealAsked = true;
      host.sealBeforeTurn(client);
    }
  }
  // Appends `bytes` to output() and flushes. REQUIRES: open(). Allocates only when the output
  // buffer grows.
  void send(SessionHost& host, std::string_view bytes) {
    output(host.loop()).append(bytes);
    flush(host);
  }
  // WebSocket: frames plainOut as one binary frame behind ws.framed; TLS: encrypts the result
  // (or plainOut) into the loop's output. Flushes the loop's output. Returns false when the TLS
  // session failed (tls->error() says why). True and nothing done on a plain or closed socket.
  // Allocates only when a buffer grows.
  bool seal(net::EventLoop& loop) noexcept;
  // Output not yet handed to the kernel, plaintext waiting for seal() or for the handshake
  // included.
  std::size_t unsentBytes(const net::EventLoop& loop) const noexcept {
    if (!layered()) return loop.unsentBytes(id);
    return loop.unsentBytes(id) + plainOut.size() + ws.framed.size() +
           (tls ? tls->pendingBytes() : 0);
  }
};

// Makes a non-blocking socket towards config.broker (bound to config.source when given) and
// starts connecting it through loop.connect with the user pointer socketTag(config.client, slot);
// the session's onConnected(slot, ...) follows. With config.tls it also makes the socket's
// TlsSession, whose ClientHello leaves once the connection is made; with config.websocket it
// queues the upgrade request, which leaves with the first frames. Returns the reason it failed,
// or "".
std::string openSessionSocket(SessionSocket& socket, const SessionConfig& config, SessionHost& host,
                              unsigned slot);

// What parse() returns when it stopped because the session failed.
inline constexpr std::size_t kParseStopped = ~std::size_t{0};

enum class ReceiveStatus {
  kOk,         // every complete frame was parsed; an incomplete rest is carried
  kStopped,    // parse() returned kParseStopped (the session failed: stop touching it)
  kTooLong,    // the carried frame grew past kMaxFrameBytes
  kTlsFailed,  // the TLS session failed (socket.tls->error() says why)
  // WebSocket only; socket.ws.problem says why:
  kWsRefused,   // the broker refused or garbled the upgrade
  kWsClosed,    // the broker sent a close frame (its code and reason)
  kWsProtocol,  // a frame a server must not send
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

// The WebSocket layer's part of a receive: `bytes` (plaintext) through the 101 answer, then
// the frame decoder into socket.ws.in; pongs are queued to ws.framed and flushed through
// `host`. kOk or a kWs* status.
ReceiveStatus receiveWebSocket(SessionSocket& socket, SessionHost& host, std::string_view bytes);

// What a session calls with the bytes the loop received on `socket`: receiveFrames() on them, or
// with TLS on what they decrypt to (the engine's answers, handshake records and alerts, are
// flushed to the broker), and with WebSocket on the payload of the frames they carry. A
// close_notify is not an error: the end of input follows.
template <typename Parse>
ReceiveStatus receiveSessionBytes(SessionSocket& socket, SessionHost& host, std::string_view bytes,
                                  Parse&& parse) {
  if (!socket.layered()) return receiveFrames(socket, bytes, parse);
  net::EventLoop& loop = host.loop();
  if (socket.tls) {
    net::ByteBuffer& wire = loop.output(socket.id);
    const std::size_t wireBefore = wire.size();
    const net::TlsSession::Status status =
        socket.tls->read(std::span<const char>(bytes.data(), bytes.size()), socket.plainIn, wire);
    if (wire.size() != wireBefore) loop.flush(socket.id);
    if (status == net::TlsSession::Status::kFailed) return ReceiveStatus::kTlsFailed;
    if (socket.plainIn.empty()) return ReceiveStatus::kOk;
    bytes = socket.plainIn.view();
  }
  // The bytes to parse: the decrypted ones, or the WebSocket payload they carry.
  net::ByteBuffer* plain = socket.tls ? &socket.plainIn : nullptr;
  if (socket.ws.on) {
    const ReceiveStatus status = receiveWebSocket(socket, host, bytes);
    if (socket.tls) socket.plainIn.consume(socket.plainIn.size());
    if (status != ReceiveStatus::kOk) return status;
    plain = &socket.ws.in;
  }
  if (plain->empty()) return ReceiveStatus::kOk;
  const ReceiveStatus result = receiveFrames(socket, plain->view(), parse);
  // The carried rest, if any, was copied to `partial`; after kStopped the session is closed and
  // its buffers are no longer read.
  if (result != ReceiveStatus::kStopped) plain->consume(plain->size());
  return result;
}

}  // namespace tern::loadgen
