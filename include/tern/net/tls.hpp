// TLS over memory: OpenSSL 3 sessions that never touch a socket, so that both event-loop backends
// (io_uring's provided buffers, epoll's reads) carry ciphertext exactly as they carry plain bytes,
// and a connection's TLS state moves between workers with the connection.
//
//   - TlsContext: one SSL_CTX (certificate, key, CA, verification mode, TLS 1.2 and 1.3 only, no
//     compression, no renegotiation, OpenSSL's default cipher list for that range). Made at
//     start-up or on reload (SIGHUP); errors are values (a one-line message).
//   - TlsSession: one connection's SSL object over a BIO of tern's own that reads from the bytes
//     the socket received and appends what OpenSSL writes to the socket's output buffer (no copy
//     in between, no hidden buffer per connection: what it holds is charged like any output).
//
// Threads: a TlsContext is immutable once made and may be shared by any threads (OpenSSL makes
// SSL_new on one context thread-safe; each session holds a reference, so a replaced context
// lives as long as its last session). A TlsSession belongs to the thread that owns its
// connection; it moves with the connection (the inbox hand-over orders the two threads' uses).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "tern/net/byte_buffer.hpp"

struct ssl_ctx_st;
struct ssl_st;

namespace tern::net {

struct TlsOptions {
  std::string certFile;  // PEM certificate chain (server: required; client: optional)
  std::string keyFile;   // PEM private key of certFile
  std::string caFile;    // PEM CAs that verify the peer (server: client certificates)
  // Server: a client without a certificate that caFile verifies fails the handshake. Without it,
  // a client certificate is still asked for when caFile is given, and verified if sent.
  bool requireClientCert = false;
  // Client: the name the server's certificate must carry (empty: the certificate is verified
  // against caFile but its name is not checked); also sent as SNI.
  std::string serverName;
};

class TlsContext {
 public:
  enum class Side : std::uint8_t { kServer, kClient };
  struct Made {
    std::shared_ptr<TlsContext> context;  // null on failure
    std::string error;                    // one line: which file, what OpenSSL said
  };
  static Made make(Side side, const TlsOptions& options);
  ~TlsContext();
  TlsContext(const TlsContext&) = delete;
  TlsContext& operator=(const TlsContext&) = delete;

  Side side() const noexcept { return side_; }
  ssl_ctx_st* raw() const noexcept { return ctx_; }

 private:
  TlsContext(Side side, ssl_ctx_st* ctx) noexcept : side_(side), ctx_(ctx) {}
  Side side_;
  ssl_ctx_st* ctx_;
};

class TlsSession {
 public:
  // A session of `context`'s side; a client one sends its ClientHello at the first call.
  // `serverName` (client): the name the server's certificate must carry, also sent as SNI; an
  // IP address is checked against the certificate's IP entries; empty checks no name.
  explicit TlsSession(const TlsContext& context, std::string_view serverName = {});
  ~TlsSession();
  TlsSession(const TlsSession&) = delete;
  TlsSession& operator=(const TlsSession&) = delete;

  enum class Status : std::uint8_t {
    kOk,      // progress, or nothing to do until more ciphertext arrives
    kClosed,  // the peer sent close_notify: no more plaintext will come
    kFailed,  // handshake or record failure (error() says why); send `wire`, then close
  };

  // Every call below appends the ciphertext it produces (handshake records, alerts, data) to
  // `wire`, straight from OpenSSL's record layer: no buffer of its own between the two.

  // Takes all of `ciphertext` (a partial record stays inside OpenSSL), advances the handshake and
  // appends every byte it decrypts to `plain`. An empty `ciphertext` starts a client's handshake.
  Status read(std::span<const char> ciphertext, ByteBuffer& plain, ByteBuffer& wire);
  // Encrypts all of `plain` (records of up to 16 KiB). Before the handshake completes the bytes
  // are kept and encrypted once it has.
  Status write(std::string_view plain, ByteBuffer& wire);
  // Sends close_notify.
  void shutdown(ByteBuffer& wire);

  bool handshakeDone() const noexcept { return handshakeDone_; }
  bool failed() const noexcept { return failed_; }
  // After the handshake: the peer certificate's subject common name when the peer presented a
  // certificate that verified (empty otherwise).
  const std::string& peerIdentity() const noexcept { return peerIdentity_; }
  const std::string& error() const noexcept { return error_; }
  // TLS version and cipher negotiated ("TLSv1.3 TLS_AES_256_GCM_SHA384"), for logs.
  std::string describe() const;
  // Plaintext kept until the handshake completes.
  std::size_t pendingBytes() const noexcept { return pending_.size(); }

  // The glue between OpenSSL's BIO calls and the buffers of the call in progress (tls.cpp).
  struct Io {
    std::span<const char> in;
    std::size_t inUsed = 0;
    ByteBuffer* out = nullptr;
  };

 private:
  Status fail(int sslResult);
  Status afterHandshake(ByteBuffer& wire);

  ssl_st* ssl_ = nullptr;
  Io io_;
  bool handshakeDone_ = false;
  bool failed_ = false;
  std::string pending_;  // plaintext written before the handshake completed
  std::string peerIdentity_;
  std::string error_;
};

}  // namespace tern::net
