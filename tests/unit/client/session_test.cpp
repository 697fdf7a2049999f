// Session against a scripted fake broker on 127.0.0.1: the broker side runs in a thread and speaks
// the wire protocol byte for byte, so each test fixes exactly what the session receives (frames
// split or batched, sockets closed in a chosen order) and checks what it makes of it.

#include "tern/client/session.hpp"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "support/test_certificates.hpp"
#include "tern/net/tls.hpp"

namespace tern::client {
namespace {

constexpr int kBrokerWaitMs = 10'000;  // bound on every blocking step of the fake broker

class FakeBroker {
 public:
  FakeBroker() {
    listener_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(::bind(listener_, reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
    EXPECT_EQ(::listen(listener_, 8), 0);
    socklen_t length = sizeof(address);
    ::getsockname(listener_, reinterpret_cast<sockaddr*>(&address), &length);
    port_ = ntohs(address.sin_port);
  }
  ~FakeBroker() {
    if (thread_.joinable()) thread_.join();
    ::close(listener_);
    for (int fd : fds_) {
      if (fd >= 0) ::close(fd);
    }
  }

  std::uint16_t port() const { return port_; }

  // Runs the broker's side of the test.
  void run(std::function<void(FakeBroker&)> script) {
    thread_ = std::thread([this, script = std::move(script)] { script(*this); });
  }
  void join() { thread_.join(); }

  int accept() {
    pollfd ready{listener_, POLLIN, 0};
    if (::poll(&ready, 1, kBrokerWaitMs) != 1) return -1;
    const int fd = ::accept4(listener_, nullptr, nullptr, SOCK_CLOEXEC);
    fds_.push_back(fd);
    return fd;
  }

  // The next line on `fd` without its LF; nullopt at EOF or after kBrokerWaitMs.
  static std::optional<std::string> readLine(int fd) {
    std::string line;
    for (;;) {
      pollfd ready{fd, POLLIN, 0};
      if (::poll(&ready, 1, kBrokerWaitMs) != 1) return std::nullopt;
      char c;
      if (::recv(fd, &c, 1, 0) != 1) return std::nullopt;
      if (c == '\n') return line;
      line += c;
    }
  }

  static void send(int fd, std::string_view bytes) {
    EXPECT_EQ(::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL),
              static_cast<ssize_t>(bytes.size()));
  }

  void close(int fd) {
    for (int& known : fds_) {
      if (known == fd) known = -1;
    }
    ::close(fd);
  }

  // Accepts the three sockets of a session and answers the handshake like the broker does.
  // `pushGreeting` is written on the push socket in place of "ATTACHACK@push\n".
  // Returns the sockets by role: first request socket, second request socket, push socket.
  std::array<int, 3> handshake(std::string_view pushGreeting = "ATTACHACK@push\n") {
    std::array<int, 3> fds{-1, -1, -1};
    fds[0] = accept();
    EXPECT_EQ(readLine(fds[0]), "CONNECT@alice");
    send(fds[0], "CONNACK@alice@00ff\n");
    for (int i = 0; i < 2; ++i) {
      const int fd = accept();
      const std::optional<std::string> attach = readLine(fd);
      if (attach == "ATTACH@00ff@request") {
        fds[1] = fd;
        send(fd, "ATTACHACK@request\n");
      } else {
        EXPECT_EQ(attach, "ATTACH@00ff@push");
        fds[2] = fd;
        send(fd, pushGreeting);
      }
    }
    return fds;
  }

 private:
  int listener_ = -1;
  std::uint16_t port_ = 0;
  std::vector<int> fds_;
  std::thread thread_;
};

// Records every frame the session hands over.
struct Recorder final : SessionListener {
  void onFrame(FrameKind kind, std::string_view frame) override {
    frames.emplace_back(kind, std::string(frame));
  }
  std::vector<std::string> of(FrameKind kind) const {
    std::vector<std::string> out;
    for (const auto& [k, frame] : frames) {
      if (k == kind) out.push_back(frame);
    }
    return out;
  }
  std::vector<std::pair<FrameKind, std::string>> frames;
};

SessionOptions optionsFor(const FakeBroker& broker) {
  SessionOptions options;
  options.port = broker.port();
  options.timeout = std::chrono::milliseconds(kBrokerWaitMs);
  return options;
}

// Polls until `done` or a failure; returns the last status.
SessionStatus pollUntil(Session& session, Recorder& recorder, const std::function<bool()>& done) {
  while (!done()) {
    if (SessionStatus s = session.poll(-1, {}, recorder); s != SessionStatus::kOk) return s;
  }
  return SessionStatus::kOk;
}

using Strings = std::vector<std::string>;

TEST(Session, RunsHandshakeRequestsPushesAndDisconnect) {
  FakeBroker broker;
  broker.run([](FakeBroker& b) {
    const std::array<int, 3> fds = b.handshake();
    EXPECT_EQ(FakeBroker::readLine(fds[0]), "PUBLISH@t@x");
    FakeBroker::send(fds[2], "MESSAGE@t@1\nMESSAGE@t@2\r\nRETAINED@t@a@b\n");  // one write
    FakeBroker::send(fds[0], "PUB");  // a reply in two writes
    FakeBroker::send(fds[0], "ACK\n");
    EXPECT_EQ(FakeBroker::readLine(fds[0]), "DISCONNECT");
    FakeBroker::send(fds[2], "MESSAGE@t@late\n");  // queued before the DISCONNECT: delivered
    FakeBroker::send(fds[0], "DISCONNACK\n");
    for (int fd : fds)
      b.close(fd);
  });

  Session session(optionsFor(broker));
  Recorder recorder;
  ASSERT_EQ(session.connect("CONNECT@alice", recorder), SessionStatus::kOk);
  EXPECT_EQ(session.state(), Session::State::kOpen);
  EXPECT_EQ(session.clientId(), "alice");
  EXPECT_EQ(recorder.of(FrameKind::kHandshake),
            (Strings{"CONNACK@alice@00ff", "ATTACHACK@request", "ATTACHACK@push"}));

  ASSERT_EQ(session.send("PUBLISH@t@x"), SessionStatus::kOk);
  EXPECT_EQ(session.pendingReplies(), 1u);
  ASSERT_EQ(pollUntil(session, recorder, [&] { return session.pendingReplies() == 0; }),
            SessionStatus::kOk);
  ASSERT_EQ(session.send("DISCONNECT"), SessionStatus::kOk);
  ASSERT_EQ(
      pollUntil(session, recorder, [&] { return session.state() == Session::State::kClosed; }),
      SessionStatus::kOk);
  broker.join();

  EXPECT_EQ(recorder.of(FrameKind::kReply), (Strings{"PUBACK", "DISCONNACK"}));
  EXPECT_EQ(recorder.of(FrameKind::kPush),
            (Strings{"MESSAGE@t@1", "MESSAGE@t@2", "RETAINED@t@a@b", "MESSAGE@t@late"}));
  EXPECT_TRUE(recorder.of(FrameKind::kUnsolicited).empty());
}

TEST(Session, DeliversPushesThatCameWithTheAttachReply) {
  FakeBroker broker;
  broker.run([](FakeBroker& b) {
    const std::array<int, 3> fds = b.handshake("ATTACHACK@push\nRETAINED@a@1\n");
    EXPECT_EQ(FakeBroker::readLine(fds[0]), std::nullopt);  // until the client closes
  });
  Session session(optionsFor(broker));
  Recorder recorder;
  ASSERT_EQ(session.connect("CONNECT@alice", recorder), SessionStatus::kOk);
  // The frame is already buffered: this poll hands it over without waiting.
  ASSERT_EQ(session.poll(-1, {}, recorder), SessionStatus::kOk);
  EXPECT_EQ(recorder.of(FrameKind::kPush), Strings{"RETAINED@a@1"});
  session.close();
}

TEST(Session, SendsRequestsOnTheSecondSocketWhenAsked) {
  FakeBroker broker;
  broker.run([](FakeBroker& b) {
    const std::array<int, 3> fds = b.handshake();
    EXPECT_EQ(FakeBroker::readLine(fds[1]), "PING");
    FakeBroker::send(fds[1], "PONG\n");
    FakeBroker::send(fds[0], "STRAY\n");  // nothing was asked on socket 1
    EXPECT_EQ(FakeBroker::readLine(fds[1]), std::nullopt);
  });
  SessionOptions options = optionsFor(broker);
  options.requestSocket = 2;
  Session session(options);
  Recorder recorder;
  ASSERT_EQ(session.connect("CONNECT@alice", recorder), SessionStatus::kOk);
  ASSERT_EQ(session.send("PING"), SessionStatus::kOk);
  ASSERT_EQ(pollUntil(session, recorder,
                      [&] {
                        return recorder.of(FrameKind::kUnsolicited).size() == 1 &&
                               session.pendingReplies() == 0;
                      }),
            SessionStatus::kOk);
  EXPECT_EQ(recorder.of(FrameKind::kReply), Strings{"PONG"});
  EXPECT_EQ(recorder.of(FrameKind::kUnsolicited), Strings{"STRAY"});
  session.close();
}

TEST(Session, BreaksWhenTheBrokerClosesThePushSocket) {
  FakeBroker broker;
  broker.run([](FakeBroker& b) {
    const std::array<int, 3> fds = b.handshake();
    FakeBroker::send(fds[2], "MESSAGE@t@last words\n");
    b.close(fds[2]);
  });
  Session session(optionsFor(broker));
  Recorder recorder;
  ASSERT_EQ(session.connect("CONNECT@alice", recorder), SessionStatus::kOk);
  EXPECT_EQ(pollUntil(session, recorder, [] { return false; }), SessionStatus::kClosed);
  EXPECT_EQ(session.state(), Session::State::kClosed);
  EXPECT_NE(session.lastError().find("closed the push socket"), std::string::npos)
      << session.lastError();
  EXPECT_EQ(recorder.of(FrameKind::kPush), Strings{"MESSAGE@t@last words"});  // read before EOF
}

TEST(Session, AcceptsSocketsClosedBeforeTheDisconnackArrives) {
  FakeBroker broker;
  broker.run([](FakeBroker& b) {
    const std::array<int, 3> fds = b.handshake();
    EXPECT_EQ(FakeBroker::readLine(fds[0]), "disconnect");
    b.close(fds[2]);  // other workers may close their sockets first
    b.close(fds[1]);
    FakeBroker::send(fds[0], "DISCONNACK\n");
    b.close(fds[0]);
  });
  Session session(optionsFor(broker));
  Recorder recorder;
  ASSERT_EQ(session.connect("CONNECT@alice", recorder), SessionStatus::kOk);
  ASSERT_EQ(session.send("disconnect"), SessionStatus::kOk);
  EXPECT_EQ(
      pollUntil(session, recorder, [&] { return session.state() == Session::State::kClosed; }),
      SessionStatus::kOk);
  EXPECT_EQ(recorder.of(FrameKind::kReply), Strings{"DISCONNACK"});
}

TEST(Session, BreaksWhenTheRequestSocketClosesWithoutDisconnack) {
  FakeBroker broker;
  broker.run([](FakeBroker& b) {
    const std::array<int, 3> fds = b.handshake();
    EXPECT_EQ(FakeBroker::readLine(fds[0]), "DISCONNECT");
    b.close(fds[0]);
  });
  Session session(optionsFor(broker));
  Recorder recorder;
  ASSERT_EQ(session.connect("CONNECT@alice", recorder), SessionStatus::kOk);
  ASSERT_EQ(session.send("DISCONNECT"), SessionStatus::kOk);
  EXPECT_EQ(pollUntil(session, recorder, [] { return false; }), SessionStatus::kClosed);
  EXPECT_NE(session.lastError().find("request socket 1"), std::string::npos);
}

TEST(Session, IsUnreachableWhenNothingListens) {
  std::uint16_t port;
  {
    FakeBroker closed;  // take a free port, then stop listening on it
    port = closed.port();
  }
  SessionOptions options;
  options.port = port;
  Session session(options);
  Recorder recorder;
  EXPECT_EQ(session.connect("CONNECT", recorder), SessionStatus::kUnreachable);
  EXPECT_EQ(session.state(), Session::State::kClosed);
  EXPECT_NE(session.lastError().find("cannot connect to 127.0.0.1:"), std::string::npos);
  EXPECT_TRUE(recorder.frames.empty());
}

TEST(Session, IsRejectedWhenTheBrokerRefusesConnect) {
  FakeBroker broker;
  broker.run([](FakeBroker& b) {
    const int fd = b.accept();
    EXPECT_EQ(FakeBroker::readLine(fd), "CONNECT@bad id");
    FakeBroker::send(fd, "ERROR@bad-request@bad client-id\n");
    EXPECT_EQ(FakeBroker::readLine(fd), std::nullopt);
  });
  Session session(optionsFor(broker));
  Recorder recorder;
  EXPECT_EQ(session.connect("CONNECT@bad id", recorder), SessionStatus::kRejected);
  EXPECT_EQ(session.state(), Session::State::kClosed);
  EXPECT_EQ(recorder.of(FrameKind::kHandshake), Strings{"ERROR@bad-request@bad client-id"});
}

TEST(Session, TimesOutWhenAHandshakeReplyNeverComes) {
  FakeBroker broker;
  broker.run([](FakeBroker& b) {
    const int fd = b.accept();
    EXPECT_EQ(FakeBroker::readLine(fd), "CONNECT");
    EXPECT_EQ(FakeBroker::readLine(fd), std::nullopt);  // silent until the client gives up
  });
  SessionOptions options = optionsFor(broker);
  options.timeout = std::chrono::milliseconds(100);
  Session session(options);
  Recorder recorder;
  EXPECT_EQ(session.connect("CONNECT", recorder), SessionStatus::kTimeout);
  EXPECT_EQ(session.state(), Session::State::kClosed);
}

TEST(Session, TimesOutWhenAReplyNeverComes) {
  FakeBroker broker;
  broker.run([](FakeBroker& b) {
    const std::array<int, 3> fds = b.handshake();
    EXPECT_EQ(FakeBroker::readLine(fds[0]), "PING");
    EXPECT_EQ(FakeBroker::readLine(fds[0]), std::nullopt);
  });
  SessionOptions options = optionsFor(broker);
  // Long enough for the handshake with a broker that answers at once, short for a test.
  options.timeout = std::chrono::milliseconds(1000);
  Session session(options);
  Recorder recorder;
  ASSERT_EQ(session.connect("CONNECT@alice", recorder), SessionStatus::kOk);
  ASSERT_EQ(session.send("PING"), SessionStatus::kOk);
  EXPECT_EQ(pollUntil(session, recorder, [] { return false; }), SessionStatus::kTimeout);
  EXPECT_NE(session.lastError().find("no reply"), std::string::npos);
  EXPECT_EQ(session.state(), Session::State::kClosed);
}

TEST(Session, BreaksOnAFrameOverTheLimit) {
  FakeBroker broker;
  broker.run([](FakeBroker& b) {
    const std::array<int, 3> fds = b.handshake();
    FakeBroker::send(fds[2], "MESSAGE@t@" + std::string(100, '\xff'));  // no LF ever
    EXPECT_EQ(FakeBroker::readLine(fds[2]), std::nullopt);
  });
  SessionOptions options = optionsFor(broker);
  options.maxFrameBytes = 64;
  Session session(options);
  Recorder recorder;
  ASSERT_EQ(session.connect("CONNECT@alice", recorder), SessionStatus::kOk);
  EXPECT_EQ(pollUntil(session, recorder, [] { return false; }), SessionStatus::kTooLong);
  EXPECT_NE(session.lastError().find("longer than 64 bytes on the push socket"), std::string::npos);
}

TEST(Session, PollWatchesTheCallersDescriptorsToo) {
  FakeBroker broker;
  broker.run([](FakeBroker& b) {
    const std::array<int, 3> fds = b.handshake();
    EXPECT_EQ(FakeBroker::readLine(fds[0]), std::nullopt);
  });
  Session session(optionsFor(broker));
  Recorder recorder;
  ASSERT_EQ(session.connect("CONNECT@alice", recorder), SessionStatus::kOk);
  int pipeFds[2];
  ASSERT_EQ(::pipe(pipeFds), 0);
  ASSERT_EQ(::write(pipeFds[1], "x", 1), 1);
  pollfd extra{pipeFds[0], POLLIN, 0};
  ASSERT_EQ(session.poll(-1, {&extra, 1}, recorder), SessionStatus::kOk);
  EXPECT_NE(extra.revents & POLLIN, 0);
  session.close();
  // Closed, it still polls the caller's descriptors.
  extra.revents = 0;
  ASSERT_EQ(session.poll(-1, {&extra, 1}, recorder), SessionStatus::kOk);
  EXPECT_NE(extra.revents & POLLIN, 0);
  ::close(pipeFds[0]);
  ::close(pipeFds[1]);
}

// The broker's side of one TLS session over an accepted (blocking) socket, for the TLS tests.
class TlsPeer {
 public:
  TlsPeer(int fd, const net::TlsContext& context) : fd_(fd), tls_(context) {}
  // The next plaintext line without its LF; nullopt at EOF, on a TLS failure or after the wait.
  std::optional<std::string> readLine() {
    for (;;) {
      const std::string_view buffered = plain_.view();
      if (const std::size_t lf = buffered.find('\n'); lf != std::string_view::npos) {
        std::string line(buffered.substr(0, lf));
        plain_.consume(lf + 1);
        return line;
      }
      pollfd ready{fd_, POLLIN, 0};
      if (::poll(&ready, 1, kBrokerWaitMs) != 1) return std::nullopt;
      char cipher[4096];
      const ssize_t n = ::recv(fd_, cipher, sizeof cipher, 0);
      if (n <= 0) return std::nullopt;
      net::ByteBuffer wire;
      const auto status =
          tls_.read(std::span<const char>(cipher, static_cast<std::size_t>(n)), plain_, wire);
      if (!wire.empty()) FakeBroker::send(fd_, wire.view());
      if (status != net::TlsSession::Status::kOk) return std::nullopt;
    }
  }
  void send(std::string_view text) {
    net::ByteBuffer wire;
    EXPECT_EQ(tls_.write(text, wire), net::TlsSession::Status::kOk);
    FakeBroker::send(fd_, wire.view());
  }
  bool failed() const { return tls_.failed(); }

 private:
  int fd_;
  net::TlsSession tls_;
  net::ByteBuffer plain_;
};

struct TlsContexts {
  tern::testing::TestCertificates certs;
  std::shared_ptr<net::TlsContext> server;
  std::shared_ptr<net::TlsContext> client;
  TlsContexts() {
    net::TlsOptions serverOptions;
    serverOptions.certFile = certs.serverCert();
    serverOptions.keyFile = certs.serverKey();
    server = net::TlsContext::make(net::TlsContext::Side::kServer, serverOptions).context;
    net::TlsOptions clientOptions;
    clientOptions.caFile = certs.caFile();
    client = net::TlsContext::make(net::TlsContext::Side::kClient, clientOptions).context;
  }
};

TEST(Session, RunsEachSocketOverItsOwnTlsSession) {
  TlsContexts tls;
  ASSERT_TRUE(tls.server && tls.client);
  FakeBroker broker;
  broker.run([&](FakeBroker& b) {
    TlsPeer first(b.accept(), *tls.server);
    EXPECT_EQ(first.readLine(), "CONNECT@alice@bob@pa@ss");
    first.send("CONNACK@alice@00ff\n");
    // The attach sockets' handshakes run at once (the session waits on one, then the other).
    const int a = b.accept();
    const int c = b.accept();
    std::vector<std::thread> attaches;
    std::array<std::optional<std::string>, 2> got;
    std::array<std::unique_ptr<TlsPeer>, 2> peers{std::make_unique<TlsPeer>(a, *tls.server),
                                                  std::make_unique<TlsPeer>(c, *tls.server)};
    for (int i = 0; i < 2; ++i) {
      attaches.emplace_back([&, i] {
        got[i] = peers[i]->readLine();
        peers[i]->send(got[i] == "ATTACH@00ff@push" ? "ATTACHACK@push\n" : "ATTACHACK@request\n");
      });
    }
    for (std::thread& t : attaches)
      t.join();
    TlsPeer& pushPeer = *peers[got[0] == "ATTACH@00ff@push" ? 0 : 1];
    EXPECT_EQ(first.readLine(), "PUBLISH@t@x");
    pushPeer.send("MESSAGE@t@x\n");
    first.send("PUBACK\n");
    EXPECT_EQ(first.readLine(), "DISCONNECT");
    first.send("DISCONNACK\n");
    b.close(a);
    b.close(c);
  });
  SessionOptions options = optionsFor(broker);
  options.tls = tls.client;
  options.tlsServerName = "127.0.0.1";
  Session session(options);
  Recorder recorder;
  ASSERT_EQ(session.connect("CONNECT@alice@bob@pa@ss", recorder), SessionStatus::kOk)
      << session.lastError();
  ASSERT_EQ(session.send("PUBLISH@t@x"), SessionStatus::kOk);
  ASSERT_EQ(
      pollUntil(
          session, recorder,
          [&] { return session.pendingReplies() == 0 && !recorder.of(FrameKind::kPush).empty(); }),
      SessionStatus::kOk);
  ASSERT_EQ(session.send("DISCONNECT"), SessionStatus::kOk);
  ASSERT_EQ(pollUntil(session, recorder, [&] { return session.pendingReplies() == 0; }),
            SessionStatus::kOk);
  session.close();
  broker.join();
  EXPECT_EQ(recorder.of(FrameKind::kReply), (Strings{"PUBACK", "DISCONNACK"}));
  EXPECT_EQ(recorder.of(FrameKind::kPush), Strings{"MESSAGE@t@x"});
}

TEST(Session, IsUnreachableWhenTheBrokersCertificateDoesNotVerify) {
  TlsContexts tls;
  FakeBroker broker;
  broker.run([&](FakeBroker& b) {
    TlsPeer first(b.accept(), *tls.server);
    EXPECT_EQ(first.readLine(), std::nullopt);  // the client gives up in the handshake
  });
  SessionOptions options = optionsFor(broker);
  options.tls = tls.client;
  options.tlsServerName = "other.example";
  Session session(options);
  Recorder recorder;
  EXPECT_EQ(session.connect("CONNECT@alice", recorder), SessionStatus::kUnreachable);
  EXPECT_EQ(session.lastError().find("TLS handshake with 127.0.0.1:"), 0u) << session.lastError();
  EXPECT_NE(session.lastError().find("request socket 1"), std::string::npos);
  broker.join();
}

}  // namespace
}  // namespace tern::client
