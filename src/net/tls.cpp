#include "tern/net/tls.hpp"

#include <arpa/inet.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <climits>
#include <cstring>

namespace tern::net {
namespace {

// The last OpenSSL error of this thread, as one line ("" when there is none); clears the queue.
std::string takeOpenSslError() {
  std::string text;
  unsigned long code = 0;
  while ((code = ERR_get_error()) != 0) {
    char buffer[256];
    ERR_error_string_n(code, buffer, sizeof buffer);
    text = buffer;  // the last one is the most specific
  }
  return text;
}

// The BIO between OpenSSL and the buffers of the call in progress (TlsSession::Io): reads take
// from the received bytes, writes append to the socket's output. Its data pointer is the
// session's Io, set once; the buffers in it change per call.
int bioWrite(BIO* bio, const char* data, int length) {
  auto* io = static_cast<TlsSession::Io*>(BIO_get_data(bio));
  BIO_clear_retry_flags(bio);
  if (io->out == nullptr) {  // cannot happen inside a TlsSession call; refuse rather than lose
    BIO_set_retry_write(bio);
    return -1;
  }
  io->out->append({data, static_cast<std::size_t>(length)});
  return length;
}

int bioRead(BIO* bio, char* data, int length) {
  auto* io = static_cast<TlsSession::Io*>(BIO_get_data(bio));
  BIO_clear_retry_flags(bio);
  const std::size_t left = io->in.size() - io->inUsed;
  if (left == 0) {
    BIO_set_retry_read(bio);  // not the end: more arrives with the next receive
    return -1;
  }
  const std::size_t n = std::min(left, static_cast<std::size_t>(length));
  std::memcpy(data, io->in.data() + io->inUsed, n);
  io->inUsed += n;
  return static_cast<int>(n);
}

long bioCtrl(BIO*, int command, long, void*) {
  return command == BIO_CTRL_FLUSH ? 1 : 0;  // nothing is buffered here to flush
}

int bioCreate(BIO* bio) {
  BIO_set_init(bio, 1);
  return 1;
}

BIO_METHOD* bioMethod() {
  // Made once, on first use; never freed (one per process). A function-local static is
  // thread-safe to initialize.
  static BIO_METHOD* const method = [] {
    BIO_METHOD* m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "tern-buffers");
    BIO_meth_set_write(m, bioWrite);
    BIO_meth_set_read(m, bioRead);
    BIO_meth_set_ctrl(m, bioCtrl);
    BIO_meth_set_create(m, bioCreate);
    return m;
  }();
  return method;
}

bool isIpAddress(const std::string& name) {
  unsigned char buffer[16];
  return inet_pton(AF_INET, name.c_str(), buffer) == 1 ||
         inet_pton(AF_INET6, name.c_str(), buffer) == 1;
}

}  // namespace

TlsContext::Made TlsContext::make(Side side, const TlsOptions& options) {
  ERR_clear_error();
  SSL_CTX* ctx = SSL_CTX_new(side == Side::kServer ? TLS_server_method() : TLS_client_method());
  if (ctx == nullptr) return {nullptr, "cannot make a TLS context: " + takeOpenSslError()};
  std::shared_ptr<TlsContext> made(new TlsContext(side, ctx));
  const auto failed = [](std::string what) {
    const std::string why = takeOpenSslError();
    return Made{nullptr, why.empty() ? what : what + ": " + why};
  };
  // TLS 1.2 and 1.3 only; no compression (CRIME), no renegotiation; OpenSSL's default ciphers
  // for those versions (forward-secret AEAD first). Idle sessions give their record buffers back
  // (about 34 KiB each), so an idle TLS connection costs little more than a plain one.
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  SSL_CTX_set_options(
      ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
  SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
  if (!options.certFile.empty() &&
      SSL_CTX_use_certificate_chain_file(ctx, options.certFile.c_str()) != 1) {
    return failed("cannot read the certificate " + options.certFile);
  }
  if (!options.keyFile.empty()) {
    if (SSL_CTX_use_PrivateKey_file(ctx, options.keyFile.c_str(), SSL_FILETYPE_PEM) != 1) {
      return failed("cannot use the private key " + options.keyFile + " with the certificate " +
                    options.certFile);
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
      return failed("the private key " + options.keyFile + " does not match the certificate " +
                    options.certFile);
    }
  }
  if (side == Side::kServer && options.certFile.empty()) {
    return {nullptr, "a TLS listener needs a certificate and its key (--tls-cert, --tls-key)"};
  }
  if (!options.caFile.empty()) {
    if (SSL_CTX_load_verify_locations(ctx, options.caFile.c_str(), nullptr) != 1) {
      return failed("cannot read the CA file " + options.caFile);
    }
  } else if (side == Side::kClient) {
    SSL_CTX_set_default_verify_paths(ctx);  // the system's CAs
  }
  if (side == Side::kServer) {
    if (!options.caFile.empty()) {
      // Ask for a client certificate and verify it; without --require-client-cert a client may
      // still come without one.
      STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(options.caFile.c_str());
      if (names != nullptr) SSL_CTX_set_client_CA_list(ctx, names);
      int mode = SSL_VERIFY_PEER;
      if (options.requireClientCert) mode |= SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
      SSL_CTX_set_verify(ctx, mode, nullptr);
    } else if (options.requireClientCert) {
      return {nullptr,
              "--require-client-cert needs --tls-ca (the CAs that sign client "
              "certificates)"};
    }
    // Resumed sessions keep their verified client certificate only with an id context.
    static const unsigned char kIdContext[] = "tern";
    SSL_CTX_set_session_id_context(ctx, kIdContext, sizeof kIdContext - 1);
  } else {
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
  }
  ERR_clear_error();
  return {std::move(made), {}};
}

TlsContext::~TlsContext() {
  SSL_CTX_free(ctx_);  // reference counted: lives on while sessions made from it do
}

TlsSession::TlsSession(const TlsContext& context, std::string_view serverName) {
  ssl_ = SSL_new(context.raw());
  if (ssl_ == nullptr) {
    failed_ = true;
    error_ = "cannot make a TLS session: " + takeOpenSslError();
    return;
  }
  BIO* bio = BIO_new(bioMethod());
  BIO_set_data(bio, &io_);
  SSL_set_bio(ssl_, bio, bio);  // one BIO both ways; the SSL owns it (one reference)
  if (context.side() == TlsContext::Side::kServer) {
    SSL_set_accept_state(ssl_);
  } else {
    SSL_set_connect_state(ssl_);
    const std::string name(serverName);
    if (!name.empty()) {
      if (isIpAddress(name)) {
        X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl_), name.c_str());
      } else {
        SSL_set_tlsext_host_name(ssl_, name.c_str());
        SSL_set1_host(ssl_, name.c_str());
      }
    }
  }
}

TlsSession::~TlsSession() {
  SSL_free(ssl_);
}

TlsSession::Status TlsSession::fail(int sslResult) {
  failed_ = true;
  const int code = SSL_get_error(ssl_, sslResult);
  std::string why = takeOpenSslError();
  if (code == SSL_ERROR_SYSCALL && why.empty()) why = "the peer ended the TLS stream";
  const long verify = SSL_get_verify_result(ssl_);
  if (verify != X509_V_OK && !handshakeDone_) {
    why += std::string(why.empty() ? "" : " (") + X509_verify_cert_error_string(verify) +
           (why.empty() ? "" : ")");
  }
  error_ = why.empty() ? "TLS error " + std::to_string(code) : why;
  return Status::kFailed;
}

TlsSession::Status TlsSession::afterHandshake(ByteBuffer& wire) {
  handshakeDone_ = true;
  if (X509* peer = SSL_get0_peer_certificate(ssl_);
      peer != nullptr && SSL_get_verify_result(ssl_) == X509_V_OK) {
    char name[256];
    const int n =
        X509_NAME_get_text_by_NID(X509_get_subject_name(peer), NID_commonName, name, sizeof name);
    if (n > 0) peerIdentity_.assign(name, static_cast<std::size_t>(n));
  }
  if (pending_.empty()) return Status::kOk;
  std::string pending;
  pending.swap(pending_);
  return write(pending, wire);
}

TlsSession::Status TlsSession::read(std::span<const char> ciphertext, ByteBuffer& plain,
                                    ByteBuffer& wire) {
  if (failed_) return Status::kFailed;
  io_ = Io{ciphertext, 0, &wire};
  ERR_clear_error();
  Status status = Status::kOk;
  for (;;) {
    if (!handshakeDone_) {
      const int r = SSL_do_handshake(ssl_);
      if (r != 1) {
        if (SSL_get_error(ssl_, r) == SSL_ERROR_WANT_READ) break;
        status = fail(r);
        break;
      }
      status = afterHandshake(wire);
      if (status != Status::kOk) break;
    }
    const std::span<char> room = plain.writable(16 * 1024);
    const int n =
        SSL_read(ssl_, room.data(), static_cast<int>(std::min<std::size_t>(room.size(), INT_MAX)));
    if (n > 0) {
      plain.commit(static_cast<std::size_t>(n));
      continue;
    }
    const int code = SSL_get_error(ssl_, n);
    if (code == SSL_ERROR_WANT_READ) break;
    status = code == SSL_ERROR_ZERO_RETURN ? Status::kClosed : fail(n);
    break;
  }
  io_ = Io{};
  return status;
}

TlsSession::Status TlsSession::write(std::string_view plain, ByteBuffer& wire) {
  if (failed_) return Status::kFailed;
  if (!handshakeDone_) {
    pending_.append(plain);
    return Status::kOk;
  }
  io_ = Io{{}, 0, &wire};
  ERR_clear_error();
  Status status = Status::kOk;
  while (!plain.empty()) {
    const int chunk = static_cast<int>(std::min<std::size_t>(plain.size(), 1 << 30));
    const int n = SSL_write(ssl_, plain.data(), chunk);
    if (n <= 0) {
      status = fail(n);
      break;
    }
    plain.remove_prefix(static_cast<std::size_t>(n));
  }
  io_ = Io{};
  return status;
}

void TlsSession::shutdown(ByteBuffer& wire) {
  if (ssl_ == nullptr || failed_ || !handshakeDone_) return;
  io_ = Io{{}, 0, &wire};
  ERR_clear_error();
  SSL_shutdown(ssl_);
  ERR_clear_error();
  io_ = Io{};
}

std::string TlsSession::describe() const {
  if (ssl_ == nullptr || !handshakeDone_) return "no TLS session";
  return std::string(SSL_get_version(ssl_)) + " " + SSL_get_cipher_name(ssl_);
}

}  // namespace tern::net
