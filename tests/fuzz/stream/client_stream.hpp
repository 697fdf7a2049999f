// ClientStream: one client connection of the fuzzer, plain or TLS, over a non-blocking loopback
// socket, with every call bounded by a deadline.
//
// A TLS stream runs a client tern::net::TlsSession (the engine the broker uses, over memory):
// the ClientHello goes out when the stream is made, handshake records the session produces while
// reading are sent at once, and plaintext sent before the handshake completes is kept by the
// session and goes out after it. send() encrypts what it is given as one write (records of up to
// 16 KiB that end where the given bytes end); encrypt() returns the ciphertext instead, for a
// caller that cuts it itself; sendRaw() bypasses the session. A failed session (bad records, an
// alert, a plain-text peer) reads as closed.
//
// startWs() puts the WebSocket client layer (ws_client.hpp) over either: the upgrade request
// goes out (through TLS on a TLS stream, after its handshake), send() wraps each call's bytes in
// one masked binary frame, sendBelowWs() takes bytes already framed (or hostile ones), and read()
// returns the MQTT bytes the broker's frames carry (the HTTP answer dropped), waiting until some
// arrive; a close frame or a refused upgrade reads as closed.
//
// Single-threaded; movable, not copyable.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "socket_io.hpp"
#include "tern/net/tls.hpp"
#include "ws_client.hpp"

namespace tern::fuzz {

class ClientStream {
 public:
  ClientStream() = default;
  // A plain stream over `socket`.
  explicit ClientStream(Socket socket) noexcept : socket_(std::move(socket)) {}
  // A TLS stream: starts the handshake and sends the ClientHello (bounded by `deadline`).
  ClientStream(Socket socket, const net::TlsContext& context, Clock::time_point deadline);

  bool valid() const noexcept { return socket_.valid(); }
  int fd() const noexcept { return socket_.fd(); }
  Socket& socket() noexcept { return socket_; }
  bool tls() const noexcept { return session_ != nullptr; }
  bool handshakeDone() const noexcept { return session_ != nullptr && session_->handshakeDone(); }
  // The session failed or the peer sent close_notify: nothing more can be read.
  bool sessionOver() const noexcept { return over_; }
  // Why the TLS session failed (empty if it did not).
  std::string error() const { return session_ != nullptr ? session_->error() : std::string(); }

  // TLS: reads and answers until the handshake is done, has failed, the peer closed, or
  // `deadline`. True when done. A plain stream is always done.
  bool handshake(Clock::time_point deadline);

  // The WebSocket layer: with `upgrade`, the upgrade request for 127.0.0.1:`port` is sent now
  // (its key, and the masking keys of send(), drawn from `maskSeed`). False when sending failed.
  bool startWs(bool upgrade, std::uint16_t port, std::uint64_t maskSeed, Clock::time_point deadline,
               std::uint64_t& wireBytes);
  bool ws() const noexcept { return ws_ != nullptr; }
  // The WebSocket decoder's state (null without the layer): upgraded(), over(), why().
  const ws::Decoder* wsDecoder() const noexcept { return ws_.get(); }

  // Sends `plain` (WebSocket: in one masked binary frame; TLS: encrypted as one write). Returns
  // false when the connection failed or not everything went out by `deadline`.
  bool send(std::string_view plain, Clock::time_point deadline, std::uint64_t& wireBytes);
  // Sends `bytes` below the WebSocket layer: encrypted as one write on a TLS stream, else as
  // they are (without a WebSocket layer this is send()).
  bool sendBelowWs(std::string_view bytes, Clock::time_point deadline, std::uint64_t& wireBytes);
  // TLS: the ciphertext of `plain` (empty before the handshake completes: the session keeps the
  // bytes and sends them with the next ciphertext). Plain: `plain` itself.
  std::string encrypt(std::string_view plain);
  // Sends `bytes` on the socket as they are.
  bool sendRaw(std::string_view bytes, Clock::time_point deadline, std::uint64_t& wireBytes);
  // TLS: a close_notify alert (after it the session writes nothing more).
  void notify(Clock::time_point deadline, std::uint64_t& wireBytes);

  // Waits until `deadline` for input and appends the plaintext it carries (at most about `cap`
  // bytes of ciphertext read) to `into`. kClosed on EOF, a connection error, a failed TLS session
  // or close_notify. WebSocket: the frames' MQTT bytes, waiting (until `deadline`) past input
  // that carries none; kClosed also after a close frame or a refused upgrade.
  ReadStatus read(std::string& into, Clock::time_point deadline, std::size_t cap);

 private:
  // read() below the WebSocket layer.
  ReadStatus readBelowWs(std::string& into, Clock::time_point deadline, std::size_t cap);

  // Feeds ciphertext to the session, keeps the plaintext, sends what the session produced.
  void feed(std::string_view ciphertext, Clock::time_point deadline);

  Socket socket_;
  std::unique_ptr<net::TlsSession> session_;
  std::string plain_;  // decrypted but not yet returned by read()
  std::unique_ptr<ws::Decoder> ws_;
  std::uint64_t maskState_ = 0;  // SplitMix64 state of send()'s masking keys
  bool over_ = false;
  bool notified_ = false;
};

// Reads LF-terminated lines from a ClientStream, like LineReader does from a descriptor.
class StreamLineReader {
 public:
  explicit StreamLineReader(ClientStream& stream) noexcept : stream_(stream) {}
  bool next(std::string& line, Clock::time_point deadline);
  bool closed() const noexcept { return closed_; }

 private:
  ClientStream& stream_;
  std::string buffer_;
  bool closed_ = false;
};

}  // namespace tern::fuzz
