// Session: one client session of the line protocol over its three TCP sockets (docs/protocol.md,
// "Sessions: three sockets bound by a token").
//
// Blocking by design, for command-line tools and tests: connect() runs the handshake within a
// deadline, and poll() runs one round of I/O (wait, read, dispatch, write) for the caller's loop,
// which may add its own descriptors (a terminal, stdin, a signal pipe) to the same poll(2). The
// sockets themselves are non-blocking, so a partial frame never stalls the caller and a request is
// never stuck behind a flood of pushes.
//
// Sockets: socket 1 sends CONNECT and gets CONNACK@<id>@<token>; socket 2 is attached as the second
// request socket and socket 3 as the push socket, as the protocol requires. Requests go on socket 1
// unless SessionOptions::requestSocket is 2.
//
// Replies: the broker answers each request on its socket in request order, so the session keeps a
// FIFO of the requests in flight and each frame on the request socket is the reply of the oldest.
// A request not answered within `timeout` breaks the session (kTimeout).
//
// Ending: once a DISCONNECT request is answered DISCONNACK the session is draining: it keeps
// delivering pushes until the broker has closed all three sockets (or `timeout` passes), so no
// message queued before the DISCONNECT is lost, then it is closed. While a DISCONNECT is in flight
// the broker may close sockets in any order; that is expected. Any other close, a reset or an
// over-long frame breaks the session. After a break the sockets are closed, state() is kClosed,
// lastError() says what happened, and connect() may start a new session.
//
// TLS (SessionOptions::tls): each of the three sockets is its own net::TlsSession over the same
// non-blocking socket; frames are queued as plaintext and encrypted when written, received bytes
// are decrypted into the frame reader. The handshake runs inside connect(): the CONNECT (or
// ATTACH) frame is kept by the engine and leaves with the client's Finished.
//
// One thread. The listener is called only from inside connect() and poll(); it may call send(),
// never connect() or close().
#pragma once

#include <poll.h>

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "tern/client/line_reader.hpp"
#include "tern/net/byte_buffer.hpp"
#include "tern/net/tls.hpp"

namespace tern::client {

enum class SocketRole : std::uint8_t { kFirst = 0, kSecond = 1, kPush = 2 };

// "request socket 1", "request socket 2" or "the push socket", to go into messages.
std::string_view describe(SocketRole role) noexcept;

enum class SessionStatus {
  kOk,
  kUnreachable,  // no TCP connection: the host does not resolve, refused, or no answer in time;
                 // or the TLS handshake failed (the broker's certificate did not verify, ...)
  kRejected,     // the broker answered the handshake with ERROR or something unexpected
  kTimeout,      // a handshake reply or a request's reply did not come within the timeout
  kClosed,       // the broker closed or reset a socket (outside a DISCONNECT)
  kTooLong,      // the broker sent a frame longer than SessionOptions::maxFrameBytes
};

enum class FrameKind {
  kHandshake,    // CONNACK, ATTACHACK or the ERROR that refused the handshake
  kReply,        // the reply to the oldest request in flight
  kPush,         // a frame on the push socket: MESSAGE, RETAINED (or PONG/ERROR, never asked for)
  kUnsolicited,  // a frame on a request socket with no request in flight there
};

class SessionListener {
 public:
  virtual ~SessionListener() = default;
  // One frame from the broker, without its line end. `frame` is valid during the call only.
  virtual void onFrame(FrameKind kind, std::string_view frame) = 0;
};

struct SessionOptions {
  std::string host = "127.0.0.1";
  std::uint16_t port = 8000;
  // Bounds each TCP connect, each handshake reply, each request's reply and the drain after
  // DISCONNACK.
  std::chrono::milliseconds timeout{5000};
  int requestSocket = 1;  // 1 or 2: the socket send() writes to
  std::size_t maxFrameBytes = kDefaultMaxFrameBytes;
  // TLS on every socket when set (a client context, TlsContext::Side::kClient), checking
  // `tlsServerName` in the broker's certificate (empty: the certificate is verified, no name).
  std::shared_ptr<const net::TlsContext> tls;
  std::string tlsServerName;
};

class Session {
 public:
  enum class State {
    kClosed,    // no sockets
    kOpen,      // handshake done: send() and poll()
    kDraining,  // DISCONNACK received: poll() until the broker has closed every socket
  };

  explicit Session(SessionOptions options);
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  // Opens the three sockets and runs the handshake. `connectFrame` is "CONNECT" or
  // "CONNECT@<client-id>" in any case, sent as given. Every handshake frame goes to the listener
  // as kHandshake. Returns kOk with state() kOpen, or the failure with state() kClosed.
  // REQUIRES: state() == kClosed.
  SessionStatus connect(std::string_view connectFrame, SessionListener& listener);

  // Queues `request` and a LF on the request socket; it is written now if the socket takes it,
  // otherwise by poll(). A DISCONNECT (any case, no fields) is tracked to end the session on its
  // DISCONNACK. Returns kOk, or kClosed when the socket is already gone (the session is then
  // closed). REQUIRES: state() == kOpen; `request` holds no LF.
  SessionStatus send(std::string_view request);

  // One round of I/O: hands frames already buffered to the listener, otherwise waits up to
  // `waitMs` milliseconds (-1: no limit but the session's own deadlines) for the sockets or any of
  // `extra` (whose revents are set as by poll(2)), then reads, dispatches and writes what is ready.
  // Returns kOk (also on EINTR, a timeout of `waitMs`, and the end of draining), or why the session
  // broke. With state() kClosed it only polls `extra`. REQUIRES: extra.size() <= kMaxExtraFds.
  static constexpr std::size_t kMaxExtraFds = 8;
  SessionStatus poll(int waitMs, std::span<pollfd> extra, SessionListener& listener);

  // Closes the sockets at once, without DISCONNECT (the broker ends the session when they close).
  void close() noexcept;

  State state() const noexcept { return state_; }
  // Requests sent and not yet answered.
  std::size_t pendingReplies() const noexcept { return pending_.size(); }
  // The client-id of the CONNACK (valid while not kClosed).
  const std::string& clientId() const noexcept { return clientId_; }
  // What the last non-kOk status was about, for a human: "cannot connect to 127.0.0.1:8000:
  // Connection refused", "the broker closed the push socket", ...
  const std::string& lastError() const noexcept { return lastError_; }
  const SessionOptions& options() const noexcept { return options_; }

 private:
  using Clock = std::chrono::steady_clock;

  struct Socket {
    int fd = -1;
    LineReader reader;
    std::string out;          // bytes queued for the socket (plaintext)
    std::size_t written = 0;  // prefix of `out` already written (without TLS)
    // TLS only: the session, the ciphertext not yet written, decrypted bytes on their way to
    // `reader`.
    std::unique_ptr<net::TlsSession> tls;
    net::ByteBuffer wire;
    net::ByteBuffer plain;
    bool open() const noexcept { return fd >= 0; }
    bool hasOutput() const noexcept { return !out.empty() || !wire.empty(); }
  };
  struct InFlight {
    Clock::time_point deadline;
    bool disconnect = false;
  };
  enum class ReadResult { kOk, kEof, kError, kTlsFailed };

  SessionStatus fail(SessionStatus status, std::string text);
  SessionStatus openSocket(SocketRole role, const void* addressList);
  SessionStatus awaitHandshakeFrame(SocketRole role, std::string& frame);
  ReadResult readSocket(SocketRole role, std::string& error);
  ReadResult readTlsSocket(Socket& s, std::string& error);
  SessionStatus dispatch(SocketRole role, SessionListener& listener, bool& any);
  void deliver(SocketRole role, std::string_view frame, SessionListener& listener);
  SessionStatus flush(SocketRole role);
  SessionStatus flushTls(SocketRole role);
  SessionStatus closedByBroker(SocketRole role, const std::string& error);
  Socket& socket(SocketRole role) noexcept { return sockets_[static_cast<std::size_t>(role)]; }
  SocketRole requestRole() const noexcept {
    return options_.requestSocket == 2 ? SocketRole::kSecond : SocketRole::kFirst;
  }
  void queue(SocketRole role, std::string_view frame);

  SessionOptions options_;
  std::array<Socket, 3> sockets_;
  std::deque<InFlight> pending_;
  State state_ = State::kClosed;
  Clock::time_point drainDeadline_;
  std::string clientId_;
  std::string token_;
  std::string lastError_;
};

}  // namespace tern::client
