#include "tern/net/tls.hpp"

#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "support/test_certificates.hpp"

namespace tern::net {
namespace {

using Status = TlsSession::Status;

struct Pair {
  std::shared_ptr<TlsContext> serverContext;
  std::shared_ptr<TlsContext> clientContext;
  std::unique_ptr<TlsSession> server;
  std::unique_ptr<TlsSession> client;
  ByteBuffer toServer, toClient;        // ciphertext in flight
  ByteBuffer serverPlain, clientPlain;  // what each side decrypted
  Status serverStatus = Status::kOk;
  Status clientStatus = Status::kOk;

  // Moves ciphertext both ways until neither side has anything to send; `chunk` bytes at a time.
  void pump(std::size_t chunk = ~std::size_t{0}) {
    for (int rounds = 0; rounds < 10'000 && (!toServer.empty() || !toClient.empty()); ++rounds) {
      if (!toServer.empty()) {
        const std::string bytes(toServer.view().substr(0, chunk));
        toServer.consume(bytes.size());
        serverStatus = server->read(bytes, serverPlain, toClient);
      }
      if (!toClient.empty()) {
        const std::string bytes(toClient.view().substr(0, chunk));
        toClient.consume(bytes.size());
        clientStatus = client->read(bytes, clientPlain, toServer);
      }
    }
  }
};

std::unique_ptr<Pair> makePair(testing::TestCertificates& certs, TlsOptions server,
                               TlsOptions client, std::string serverName = "127.0.0.1") {
  auto p = std::make_unique<Pair>();
  server.certFile = certs.serverCert();
  server.keyFile = certs.serverKey();
  TlsContext::Made s = TlsContext::make(TlsContext::Side::kServer, server);
  EXPECT_TRUE(s.context) << s.error;
  client.caFile = certs.caFile();
  TlsContext::Made c = TlsContext::make(TlsContext::Side::kClient, client);
  EXPECT_TRUE(c.context) << c.error;
  p->serverContext = s.context;
  p->clientContext = c.context;
  p->server = std::make_unique<TlsSession>(*p->serverContext);
  p->client = std::make_unique<TlsSession>(*p->clientContext, serverName);
  p->clientStatus = p->client->read({}, p->clientPlain, p->toServer);  // the ClientHello
  return p;
}

TEST(Tls, HandshakeAndDataBothWays) {
  testing::TestCertificates certs;
  auto p = makePair(certs, {}, {});
  // Written before the handshake finished: kept, then sent.
  ASSERT_EQ(p->server->write("hello client", p->toClient), Status::kOk);
  p->pump();
  ASSERT_TRUE(p->server->handshakeDone());
  ASSERT_TRUE(p->client->handshakeDone());
  EXPECT_EQ(p->clientPlain.view(), "hello client");
  ASSERT_EQ(p->client->write("hello server", p->toServer), Status::kOk);
  p->pump();
  EXPECT_EQ(p->serverPlain.view(), "hello server");
  EXPECT_EQ(p->server->peerIdentity(), "");  // no client certificate
  EXPECT_NE(p->server->describe().find("TLSv1."), std::string::npos);
}

TEST(Tls, OneByteAtATimeAndLargeWrites) {
  testing::TestCertificates certs;
  auto p = makePair(certs, {}, {});
  p->pump(1);
  ASSERT_TRUE(p->server->handshakeDone());
  std::string big(1 << 20, 'x');
  for (std::size_t i = 0; i < big.size(); i += 997)
    big[i] = static_cast<char>('a' + i % 26);
  ASSERT_EQ(p->client->write(big, p->toServer), Status::kOk);
  p->pump(4093);  // records split across receives
  EXPECT_EQ(p->serverPlain.view(), big);
}

TEST(Tls, ClientCertificateGivesTheIdentity) {
  testing::TestCertificates certs;
  const std::string alice = certs.makeClient("alice");
  TlsOptions server;
  server.caFile = certs.caFile();
  server.requireClientCert = true;
  TlsOptions client;
  client.certFile = alice + ".crt";
  client.keyFile = alice + ".key";
  auto p = makePair(certs, server, client);
  p->pump();
  ASSERT_TRUE(p->server->handshakeDone()) << p->server->error();
  EXPECT_EQ(p->server->peerIdentity(), "alice");
}

TEST(Tls, RequiredClientCertificateMissingOrUntrustedFails) {
  testing::TestCertificates certs;
  TlsOptions server;
  server.caFile = certs.caFile();
  server.requireClientCert = true;
  {
    auto p = makePair(certs, server, {});
    p->pump();
    EXPECT_EQ(p->serverStatus, Status::kFailed);
    EXPECT_FALSE(p->server->error().empty());
  }
  const std::string mallory = certs.makeClient("mallory", /*trusted=*/false);
  TlsOptions client;
  client.certFile = mallory + ".crt";
  client.keyFile = mallory + ".key";
  auto p = makePair(certs, server, client);
  p->pump();
  EXPECT_EQ(p->serverStatus, Status::kFailed);
  EXPECT_EQ(p->server->peerIdentity(), "");
}

TEST(Tls, ClientChecksTheServerName) {
  testing::TestCertificates certs;
  auto p = makePair(certs, {}, {}, "broker.example");
  p->pump();
  EXPECT_EQ(p->clientStatus, Status::kFailed);
  EXPECT_NE(p->client->error().find("hostname"), std::string::npos) << p->client->error();
  auto ok = makePair(certs, {}, {}, "localhost");
  ok->pump();
  EXPECT_TRUE(ok->client->handshakeDone()) << ok->client->error();
}

TEST(Tls, GarbageAndPlainTextFailWithAnAlert) {
  testing::TestCertificates certs;
  TlsOptions options;
  options.certFile = certs.serverCert();
  options.keyFile = certs.serverKey();
  TlsContext::Made made = TlsContext::make(TlsContext::Side::kServer, options);
  ASSERT_TRUE(made.context) << made.error;
  for (const std::string& input :
       {std::string("CONNECT@alice\n"), std::string("\x10\x0c\x00\x04MQTT\x04\x02\x00\x3c", 12),
        std::string(5000, '\x16')}) {
    TlsSession session(*made.context);
    ByteBuffer plain, wire;
    EXPECT_EQ(session.read(input, plain, wire), Status::kFailed);
    EXPECT_TRUE(plain.empty());
    EXPECT_FALSE(session.error().empty());
    // Once failed, always failed; nothing more is decrypted or encrypted.
    EXPECT_EQ(session.read("more", plain, wire), Status::kFailed);
    EXPECT_EQ(session.write("x", wire), Status::kFailed);
  }
}

TEST(Tls, CloseNotifyEndsTheStream) {
  testing::TestCertificates certs;
  auto p = makePair(certs, {}, {});
  p->pump();
  ASSERT_EQ(p->client->write("last words", p->toServer), Status::kOk);
  p->client->shutdown(p->toServer);
  p->pump();
  EXPECT_EQ(p->serverPlain.view(), "last words");
  EXPECT_EQ(p->serverStatus, Status::kClosed);
}

TEST(Tls, ContextErrorsNameTheFile) {
  TlsOptions options;
  options.certFile = "/nonexistent/cert.pem";
  options.keyFile = "/nonexistent/key.pem";
  TlsContext::Made made = TlsContext::make(TlsContext::Side::kServer, options);
  EXPECT_FALSE(made.context);
  EXPECT_NE(made.error.find("/nonexistent/cert.pem"), std::string::npos) << made.error;
  testing::TestCertificates certs;
  const std::string other = certs.makeClient("other");
  options.certFile = certs.serverCert();
  options.keyFile = other + ".key";
  made = TlsContext::make(TlsContext::Side::kServer, options);
  EXPECT_FALSE(made.context);
  EXPECT_NE(made.error.find("with the certificate"), std::string::npos) << made.error;
  options.keyFile = certs.serverKey();
  options.requireClientCert = true;
  made = TlsContext::make(TlsContext::Side::kServer, options);
  EXPECT_FALSE(made.context);
  EXPECT_NE(made.error.find("--tls-ca"), std::string::npos) << made.error;
}

}  // namespace
}  // namespace tern::net
