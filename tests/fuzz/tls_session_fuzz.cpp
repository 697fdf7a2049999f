// libFuzzer target for the server side of net::TlsSession (src/net/tls.cpp): what a hostile
// client sends on a TLS port before and during the handshake. The input is cut into receives at
// offsets taken from its first byte (so records arrive split as TCP may deliver them); each is
// fed to one session as the broker's worker does. Invariants checked, besides ASan/UBSan finding
// no fault and LeakSanitizer no leak:
//   - no plaintext comes out before the handshake completed;
//   - once a read fails, every later read and write fails too and decrypts or encrypts nothing;
//   - a failed session says why (error() not empty).
// The server certificate is made once at start-up (tests/support/test_certificates.hpp).
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <span>

#include "support/test_certificates.hpp"
#include "tern/net/tls.hpp"

namespace {

using tern::net::ByteBuffer;
using tern::net::TlsContext;
using tern::net::TlsSession;

void check(bool condition, const char* what) {
  if (condition) return;
  std::fprintf(stderr, "tls_session_fuzz: invariant violated: %s\n", what);
  std::abort();
}

std::shared_ptr<TlsContext> gServer;

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  static tern::testing::TestCertificates certs;  // removed at exit
  tern::net::TlsOptions options;
  options.certFile = certs.serverCert();
  options.keyFile = certs.serverKey();
  options.caFile = certs.caFile();  // asks for a client certificate: more of the handshake
  TlsContext::Made made = TlsContext::make(TlsContext::Side::kServer, options);
  if (!made.context) {
    std::fprintf(stderr, "tls_session_fuzz: %s\n", made.error.c_str());
    std::abort();
  }
  gServer = made.context;
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::size_t chunk = 1 + data[0] * 7u;  // 1..1786 bytes per receive
  std::span<const char> rest(reinterpret_cast<const char*>(data) + 1, size - 1);
  TlsSession session(*gServer);
  ByteBuffer plain, wire;
  bool failed = false;
  while (!rest.empty()) {
    const std::span<const char> now = rest.first(std::min(chunk, rest.size()));
    rest = rest.subspan(now.size());
    const TlsSession::Status status = session.read(now, plain, wire);
    if (failed) check(status == TlsSession::Status::kFailed, "a failed session recovered");
    if (status == TlsSession::Status::kFailed) {
      failed = true;
      check(!session.error().empty(), "a failure without a reason");
    }
    check(plain.empty() || session.handshakeDone(), "plaintext before the handshake");
    wire.consume(wire.size());
  }
  if (failed) {
    const std::size_t before = wire.size();
    check(session.write("x", wire) == TlsSession::Status::kFailed, "a failed session wrote");
    check(wire.size() == before, "a failed session encrypted");
  } else {
    session.write("reply", wire);  // kept until the handshake completes, or encrypted
    session.shutdown(wire);
  }
  return 0;
}
