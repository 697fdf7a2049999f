// MqttSession against a scripted broker: the test accepts the session's connection on loopback,
// plays the broker's bytes (whole, split at every offset, or one byte at a time), turns the
// session's event loop itself, and checks what the session reported to its host and what it
// wrote. Every test runs on both backends of net::EventLoop (io_uring, where the kernel allows it,
// and epoll). Judged on reported values and decoded packets, never on timing. The TLS tests play
// the broker's side of the TLS session too (a server net::TlsSession over the accepted socket).
#include "tern/loadgen/mqtt_session.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cstring>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "support/test_certificates.hpp"
#include "tern/common/clock.hpp"
#include "tern/net/event_loop.hpp"
#include "tern/net/tls.hpp"
#include "tern/protocol/mqtt_decoder.hpp"
#include "tern/protocol/mqtt_encoder.hpp"
#include "tern/protocol/ws_handshake.hpp"
#include "tern/protocol/ws_stream.hpp"

namespace tern::loadgen {
namespace {

namespace mqtt = protocol::mqtt;

constexpr int kWaitMs = 5000;

// Records every report of the session, and runs the loop its socket lives on (as the worker
// does: the loop's callbacks go to the session's slot).
class RecordingHost final : public SessionHost, private net::EventLoopHandler {
 public:
  explicit RecordingHost(net::IoChoice io) {
    net::EventLoopOptions options;
    options.io = io;
    loop_ = net::EventLoop::create(options, *this, &why_);
  }
  ~RecordingHost() {
    session_ = nullptr;
    loop_.reset();
  }

  bool usable() const { return loop_ != nullptr; }
  const std::string& why() const { return why_; }
  void attach(Session* session) { session_ = session; }
  std::uint64_t socketEvents() const { return socketEvents_; }

  net::EventLoop& loop() noexcept override { return *loop_; }
  void onConnected(std::uint32_t, std::int64_t) override { ++connected; }
  void onSubscribed(std::uint32_t, std::int64_t) override { ++subscribed; }
  void onPubAck(std::uint32_t, std::int64_t intendedNs, std::int64_t) noexcept override {
    acks.push_back(intendedNs);
  }
  void onMessage(std::uint32_t, std::string_view topic, std::string_view payload,
                 std::int64_t) noexcept override {
    messages.push_back(std::string(topic) + "=" + std::string(payload));
  }
  void onBrokerError(std::uint32_t, std::string_view frame) noexcept override {
    brokerErrors.emplace_back(frame);
  }
  void onFailed(std::uint32_t, SessionFailure failure, std::string_view detail) override {
    failures.push_back(failure);
    failureText.assign(detail);
  }
  void sealBeforeTurn(std::uint32_t) noexcept override { ++sealsAsked_; }
  // One turn of the loop, as the worker runs it: what TLS sessions queued is sealed first.
  void turn(std::int64_t timeoutNs) {
    if (sealsAsked_ != 0 && session_ != nullptr) session_->sealOutput();
    sealsAsked_ = 0;
    loop_->runOnce(timeoutNs);
  }
  int sealsAsked() const { return sealsAsked_; }

  int connected = 0;
  int subscribed = 0;
  std::vector<std::int64_t> acks;
  std::vector<std::string> messages;
  std::vector<std::string> brokerErrors;
  std::vector<SessionFailure> failures;
  std::string failureText;
  std::int64_t now = 0;

 private:
  void onReceive(net::SocketId, void* user, std::span<const char> bytes) override {
    ++socketEvents_;
    EXPECT_EQ(tagSlot(user), 0u);
    if (session_ != nullptr) session_->onReceive(tagSlot(user), bytes, ++now);
  }
  void onInputEnd(net::SocketId, void* user, int error) override {
    ++socketEvents_;
    if (session_ != nullptr) session_->onInputEnd(tagSlot(user), error, ++now);
  }
  void onConnected(net::SocketId, void* user, int error) override {
    ++socketEvents_;
    if (session_ != nullptr) session_->onConnected(tagSlot(user), error, ++now);
  }

  std::string why_;
  std::unique_ptr<net::EventLoop> loop_;
  Session* session_ = nullptr;
  std::uint64_t socketEvents_ = 0;
  int sealsAsked_ = 0;
};

// The broker's and the sessions' TLS contexts over a throw-away CA (server certificate for
// 127.0.0.1).
struct TlsSetup {
  tern::testing::TestCertificates certs;
  std::shared_ptr<net::TlsContext> server;
  std::shared_ptr<net::TlsContext> client;
  TlsSetup() {
    net::TlsOptions serverOptions;
    serverOptions.certFile = certs.serverCert();
    serverOptions.keyFile = certs.serverKey();
    server = net::TlsContext::make(net::TlsContext::Side::kServer, serverOptions).context;
    net::TlsOptions clientOptions;
    clientOptions.caFile = certs.caFile();
    client = net::TlsContext::make(net::TlsContext::Side::kClient, clientOptions).context;
  }
};

std::string ioName(const ::testing::TestParamInfo<net::IoChoice>& info) {
  return info.param == net::IoChoice::kUring ? "uring" : "epoll";
}

// One session connected to a socket the test plays the broker on.
class ScriptedBroker {
 public:
  // `configure` may change the session's configuration before it starts; with `tls` the session
  // connects with TLS (server name 127.0.0.1 unless configure sets another) and the broker side
  // runs the handshake in the constructor.
  explicit ScriptedBroker(net::IoChoice io, std::uint8_t qos, std::uint16_t keepAliveS = 60,
                          const std::function<void(SessionConfig&)>& configure = {},
                          TlsSetup* tls = nullptr)
      : host(io) {
    if (!host.usable()) return;
    listener_ = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t length = sizeof address;
    EXPECT_EQ(::bind(listener_, reinterpret_cast<sockaddr*>(&address), length), 0);
    EXPECT_EQ(::listen(listener_, 4), 0);
    EXPECT_EQ(::getsockname(listener_, reinterpret_cast<sockaddr*>(&address), &length), 0);
    SessionConfig config;
    std::memcpy(&config.broker, &address, sizeof address);
    config.brokerLength = sizeof address;
    config.clientId = "lg-test-0";
    config.qos = qos;
    config.keepAliveS = keepAliveS;
    if (tls != nullptr) {
      config.tls = tls->client;
      config.tlsServerName = "127.0.0.1";
      tls_ = std::make_unique<net::TlsSession>(*tls->server);
    }
    if (configure) configure(config);
    session_ = makeMqttSession(host, config);
    host.attach(session_.get());
    session_->start(0);
    // The connect leaves with the loop's next turn (io_uring: its submission).
    const std::int64_t deadline = common::monotonicNanos() + std::int64_t{kWaitMs} * 1'000'000;
    while (peer_ < 0 && common::monotonicNanos() < deadline) {
      host.turn(1'000'000);
      peer_ = ::accept4(listener_, nullptr, nullptr, SOCK_CLOEXEC);
    }
    EXPECT_GE(peer_, 0);
    const int one = 1;  // small writes go at once, as a broker's would
    ::setsockopt(peer_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    while (host.socketEvents() == 0 && common::monotonicNanos() < deadline)
      host.turn(1'000'000);  // until the connect completed
    flush();                 // CONNECT (plain) or the ClientHello leaves
    // TLS: both sides' handshake, until the broker's side is done (the CONNECT kept meanwhile
    // follows the client's Finished) or the session failed.
    while (tls_ && !tls_->handshakeDone() && !tls_->failed() && host.failures.empty() &&
           common::monotonicNanos() < deadline) {
      host.turn(1'000'000);
      receiveCiphertext(0);
    }
  }
  ~ScriptedBroker() {
    session_.reset();
    if (peer_ >= 0) ::close(peer_);
    if (listener_ >= 0) ::close(listener_);
  }

  Session& session() { return *session_; }

  // Turns the loop until the session's socket had an event (bytes or the end of input), then
  // once more, so that what the session queued in reply leaves.
  void pump() {
    if (!host.failures.empty()) return;
    const std::uint64_t before = host.socketEvents();
    const std::int64_t deadline = common::monotonicNanos() + std::int64_t{kWaitMs} * 1'000'000;
    while (host.socketEvents() == before && common::monotonicNanos() < deadline)
      host.turn(10'000'000);
    ASSERT_NE(host.socketEvents(), before) << "the session's socket never became ready";
    flush();
  }
  // One turn that blocks for nothing: sends whatever the session flushed.
  void flush() { host.turn(0); }
  net::TlsSession* tls() { return tls_.get(); }

  // The broker writes `bytes`; the session receives them (one receive per `chunk` bytes).
  void play(std::string_view bytes, std::size_t chunk = 0) {
    if (chunk == 0) chunk = bytes.size();
    while (!bytes.empty()) {
      const std::size_t n = std::min(chunk, bytes.size());
      if (tls_) {
        net::ByteBuffer wire;
        ASSERT_EQ(tls_->write(bytes.substr(0, n), wire), net::TlsSession::Status::kOk);
        sendRaw(wire.view());
      } else {
        sendRaw(bytes.substr(0, n));
      }
      bytes.remove_prefix(n);
      pump();
    }
  }
  void sendRaw(std::string_view bytes) {
    ASSERT_EQ(::send(peer_, bytes.data(), bytes.size(), MSG_NOSIGNAL),
              static_cast<ssize_t>(bytes.size()));
  }
  // Receives what the session sent within `waitMs` into received_ (decrypted with TLS; the
  // server's answers sent back). False when nothing came or the connection ended.
  bool receiveCiphertext(int waitMs) {
    pollfd p{peer_, POLLIN, 0};
    if (::poll(&p, 1, waitMs) != 1) return false;
    char chunk[4096];
    const ssize_t n = ::recv(peer_, chunk, sizeof chunk, 0);
    if (n <= 0) return false;
    if (!tls_) {
      received_.append(chunk, static_cast<std::size_t>(n));
      return true;
    }
    net::ByteBuffer plain;
    net::ByteBuffer wire;
    tls_->read(std::span<const char>(chunk, static_cast<std::size_t>(n)), plain, wire);
    if (!wire.empty()) sendRaw(wire.view());
    received_.append(plain.view());
    return true;
  }
  // The next packet the session wrote, decoded as a broker would.
  std::optional<mqtt::Packet> nextPacket() {
    for (;;) {
      const mqtt::DecodeResult result = decoder_.decode(received_);
      if (result.status == mqtt::DecodeStatus::kPacket) {
        // Copy the packet's bytes out of the way before the views are invalidated.
        lastPacket_ = received_.substr(0, result.consumed);
        received_.erase(0, result.consumed);
        return decoder_.decode(lastPacket_).packet;
      }
      if (result.status != mqtt::DecodeStatus::kNeedMore) {
        ADD_FAILURE() << "the session wrote an invalid packet: " << mqtt::describe(result.status);
        return std::nullopt;
      }
      if (!receiveCiphertext(kWaitMs)) return std::nullopt;
    }
  }
  // Every raw byte the session sent (no TLS) within `waitMs`, and what follows at once.
  std::string takeRaw(int waitMs = kWaitMs) {
    receiveCiphertext(waitMs);
    while (receiveCiphertext(50)) {
    }
    std::string out;
    out.swap(received_);
    return out;
  }
  mqtt::PacketType nextType() {
    const auto packet = nextPacket();
    return packet ? mqtt::typeOf(*packet) : mqtt::PacketType{};
  }
  // True when the session has written nothing more (within a short wait).
  bool quiet() {
    pollfd p{peer_, POLLIN, 0};
    return received_.empty() && ::poll(&p, 1, 50) == 0;
  }
  void closePeer() {
    ::close(peer_);
    peer_ = -1;
  }

  // CONNECT -> CONNACK, SUBSCRIBE(filters) -> SUBACK granting `qos`.
  void handshake(const std::vector<std::string>& filters, std::uint8_t qos) {
    ASSERT_EQ(nextType(), mqtt::PacketType::kConnect);
    std::string bytes;
    mqtt::appendConnack(bytes, false, mqtt::ConnectReturnCode::kAccepted);
    play(bytes);
    ASSERT_EQ(host.connected, 1);
    session_->subscribe(filters, host.now);
    flush();
    const auto subscribe = nextPacket();
    ASSERT_TRUE(subscribe && mqtt::typeOf(*subscribe) == mqtt::PacketType::kSubscribe);
    const auto& request = std::get<mqtt::Subscribe>(*subscribe);
    ASSERT_EQ(request.subscriptions.size(), filters.size());
    const std::vector<std::uint8_t> codes(filters.size(), qos);
    bytes.clear();
    mqtt::appendSuback(bytes, request.packetId, codes);
    play(bytes);
    ASSERT_EQ(host.subscribed, 1);
  }

  RecordingHost host;

 private:
  int listener_ = -1;
  int peer_ = -1;
  std::unique_ptr<Session> session_;
  std::unique_ptr<net::TlsSession> tls_;  // the broker's side, with TLS
  const mqtt::Decoder decoder_{mqtt::DecoderConfig{.role = mqtt::Role::kServer}};
  std::string received_;
  std::string lastPacket_;
};

// Each test on each backend; skipped on io_uring where the kernel refuses it.
class MqttSession : public ::testing::TestWithParam<net::IoChoice> {
 protected:
  void SetUp() override {
    RecordingHost probe(GetParam());
    if (!probe.usable()) GTEST_SKIP() << probe.why();
  }
};

std::string publishBytes(std::string_view topic, std::string_view payload, std::uint8_t qos,
                         std::uint16_t id) {
  std::string bytes;
  mqtt::Publish publish;
  publish.topic = topic;
  publish.payload = payload;
  publish.qos = qos;
  publish.packetId = id;
  EXPECT_TRUE(mqtt::appendPublish(bytes, publish));
  return bytes;
}

// What the broker sends after a QoS 2 session published twice (ids 1 and 2): the publisher's
// flow for both, interleaved with deliveries at every QoS.
std::string qos2Conversation() {
  std::string bytes;
  mqtt::appendPubrec(bytes, 1);
  bytes += publishBytes("lg/x/1", "delivery-qos2", 2, 9);
  mqtt::appendPubcomp(bytes, 1);
  mqtt::appendPubrel(bytes, 9);
  mqtt::appendPubrec(bytes, 2);
  bytes += publishBytes("lg/x/1", "delivery-qos1", 1, 10);
  bytes += publishBytes("lg/x/1", std::string(300, 'p'), 0, 0);  // a two-byte remaining length
  mqtt::appendPubcomp(bytes, 2);
  mqtt::appendPingresp(bytes);
  return bytes;
}

// Plays qos2Conversation() in reads of `chunk` bytes (0: one read; `split`: two reads, the
// first `split` bytes long) and checks every report and every acknowledgement the session sent.
void runQos2Conversation(net::IoChoice io, std::size_t chunk, std::size_t split = 0) {
  ScriptedBroker broker(io, 2);
  ASSERT_NO_FATAL_FAILURE(broker.handshake({"lg/x/1"}, 2));
  broker.session().publish("lg/x/0", "first", 1000);
  broker.session().publish("lg/x/0", "second", 2000);
  broker.flush();
  for (const std::string_view expected : {"first", "second"}) {
    const auto packet = broker.nextPacket();
    ASSERT_TRUE(packet && mqtt::typeOf(*packet) == mqtt::PacketType::kPublish);
    const auto& publish = std::get<mqtt::Publish>(*packet);
    EXPECT_EQ(publish.qos, 2);
    EXPECT_EQ(publish.topic, "lg/x/0");
    EXPECT_EQ(publish.payload, expected);
    EXPECT_EQ(publish.packetId, expected == "first" ? 1 : 2);
  }
  EXPECT_EQ(broker.session().unacknowledged(), 2u);

  const std::string conversation = qos2Conversation();
  if (split != 0) {
    broker.play(std::string_view(conversation).substr(0, split));
    broker.play(std::string_view(conversation).substr(split));
  } else {
    broker.play(conversation, chunk);
  }
  ASSERT_TRUE(broker.host.failures.empty()) << broker.host.failureText;
  EXPECT_EQ(broker.host.acks, (std::vector<std::int64_t>{1000, 2000}));
  EXPECT_EQ(broker.host.messages,
            (std::vector<std::string>{"lg/x/1=delivery-qos2", "lg/x/1=delivery-qos1",
                                      "lg/x/1=" + std::string(300, 'p')}));
  EXPECT_TRUE(broker.host.brokerErrors.empty());
  EXPECT_EQ(broker.session().unacknowledged(), 0u);

  // PUBREL 1, PUBREC 9, PUBCOMP 9, PUBREL 2, PUBACK 10, in the order their causes arrived.
  const auto expectAck = [&](mqtt::PacketType type, std::uint16_t id) {
    const auto packet = broker.nextPacket();
    ASSERT_TRUE(packet.has_value());
    ASSERT_EQ(mqtt::typeOf(*packet), type) << mqtt::packetTypeName(mqtt::typeOf(*packet));
    std::uint16_t got = 0;
    std::visit(
        [&](const auto& p) {
          if constexpr (requires { p.packetId; }) got = p.packetId;
        },
        *packet);
    EXPECT_EQ(got, id);
  };
  expectAck(mqtt::PacketType::kPubrel, 1);
  expectAck(mqtt::PacketType::kPubrec, 9);
  expectAck(mqtt::PacketType::kPubcomp, 9);
  expectAck(mqtt::PacketType::kPubrel, 2);
  expectAck(mqtt::PacketType::kPuback, 10);
  if (split == 0) {
    EXPECT_TRUE(broker.quiet());  // once is enough: each check waits 50 ms
  }
}

TEST_P(MqttSession, ConnectsWithCleanSessionKeepAliveAndItsClientId) {
  ScriptedBroker broker(GetParam(), 1, 30);
  const auto packet = broker.nextPacket();
  ASSERT_TRUE(packet && mqtt::typeOf(*packet) == mqtt::PacketType::kConnect);
  const auto& connect = std::get<mqtt::Connect>(*packet);
  EXPECT_TRUE(connect.cleanSession);
  EXPECT_EQ(connect.keepAlive, 30);
  EXPECT_EQ(connect.clientId, "lg-test-0");
  EXPECT_EQ(connect.protocolLevel, mqtt::kProtocolLevel311);
}

TEST_P(MqttSession, PersistentSessionsConnectWithoutCleanSessionAndWithAnExpiry) {
  for (const std::uint8_t level : {mqtt::kProtocolLevel311, mqtt::kProtocolLevel5}) {
    ScriptedBroker broker(GetParam(), 1, 60, [&](SessionConfig& config) {
      config.mqttLevel = level;
      config.persistent = true;
      config.sessionExpiryS = 3600;
    });
    const auto packet = broker.nextPacket();
    ASSERT_TRUE(packet && mqtt::typeOf(*packet) == mqtt::PacketType::kConnect);
    const auto& connect = std::get<mqtt::Connect>(*packet);
    EXPECT_EQ(connect.protocolLevel, level);
    EXPECT_FALSE(connect.cleanSession);  // 3.1.1 clean session 0, 5.0 Clean Start 0
    EXPECT_EQ(connect.clientId, "lg-test-0");
    EXPECT_EQ(connect.keepAlive, 60);
    if (level == mqtt::kProtocolLevel5) {
      EXPECT_TRUE(connect.properties.has(mqtt::PropertyId::kSessionExpiryInterval));
      EXPECT_EQ(connect.properties.sessionExpiryInterval, 3600u);
    } else {
      EXPECT_TRUE(connect.properties.empty());  // 3.1.1 has no properties
    }
    if (level != mqtt::kProtocolLevel311) continue;  // the script below plays 3.1.1 packets
    // The rest of the conversation is unchanged: CONNACK, SUBSCRIBE -> SUBACK, then a QoS 1
    // publish and its PUBACK.
    std::string bytes;
    mqtt::appendConnack(bytes, false, mqtt::ConnectReturnCode::kAccepted);
    broker.play(bytes);
    ASSERT_EQ(broker.host.connected, 1);
    const std::vector<std::string> filters = {"lg/x/1"};
    broker.session().subscribe(filters, broker.host.now);
    broker.flush();
    const auto subscribe = broker.nextPacket();
    ASSERT_TRUE(subscribe && mqtt::typeOf(*subscribe) == mqtt::PacketType::kSubscribe);
    bytes.clear();
    mqtt::appendSuback(bytes, std::get<mqtt::Subscribe>(*subscribe).packetId,
                       std::vector<std::uint8_t>{1});
    broker.play(bytes);
    ASSERT_EQ(broker.host.subscribed, 1);
    broker.session().publish("lg/x/0", "kept", 1000);
    broker.flush();
    const auto publish = broker.nextPacket();
    ASSERT_TRUE(publish && mqtt::typeOf(*publish) == mqtt::PacketType::kPublish);
    EXPECT_EQ(std::get<mqtt::Publish>(*publish).qos, 1);
    bytes.clear();
    mqtt::appendPuback(bytes, std::get<mqtt::Publish>(*publish).packetId);
    broker.play(bytes);
    EXPECT_EQ(broker.host.acks, (std::vector<std::int64_t>{1000}));
    EXPECT_TRUE(broker.host.failures.empty()) << broker.host.failureText;
  }
  // Without it: clean session 1 and, in 5.0, no Session Expiry Interval.
  ScriptedBroker clean(GetParam(), 1, 60,
                       [](SessionConfig& config) { config.mqttLevel = mqtt::kProtocolLevel5; });
  const auto packet = clean.nextPacket();
  ASSERT_TRUE(packet && mqtt::typeOf(*packet) == mqtt::PacketType::kConnect);
  EXPECT_TRUE(std::get<mqtt::Connect>(*packet).cleanSession);
  EXPECT_FALSE(
      std::get<mqtt::Connect>(*packet).properties.has(mqtt::PropertyId::kSessionExpiryInterval));
}

TEST_P(MqttSession, QosTwoConversationInOneRead) {
  runQos2Conversation(GetParam(), 0);
}

TEST_P(MqttSession, QosTwoConversationOneByteAtATime) {
  runQos2Conversation(GetParam(), 1);
}

TEST_P(MqttSession, QosTwoConversationSplitAtEveryOffset) {
  const std::size_t size = qos2Conversation().size();
  for (std::size_t split = 1; split < size; ++split) {
    SCOPED_TRACE(split);
    runQos2Conversation(GetParam(), 0, split);
    if (::testing::Test::HasFailure()) return;
  }
}

TEST_P(MqttSession, QosOnePublishesRetireOnPubackInAnyOrder) {
  ScriptedBroker broker(GetParam(), 1);
  ASSERT_NO_FATAL_FAILURE(broker.handshake({"lg/x/1", "lg/x/2"}, 1));
  for (int i = 1; i <= 3; ++i)
    broker.session().publish("lg/x/0", "m", i * 100);
  broker.flush();
  for (int i = 1; i <= 3; ++i)
    ASSERT_EQ(broker.nextType(), mqtt::PacketType::kPublish);
  std::string bytes;
  mqtt::appendPuback(bytes, 2);
  mqtt::appendPuback(bytes, 1);
  mqtt::appendPuback(bytes, 3);
  broker.play(bytes, 3);
  EXPECT_EQ(broker.host.acks, (std::vector<std::int64_t>{200, 100, 300}));
  EXPECT_EQ(broker.session().unacknowledged(), 0u);
  EXPECT_TRUE(broker.host.brokerErrors.empty());
}

TEST_P(MqttSession, QosZeroPublishesCarryNoPacketIdAndExpectNothing) {
  ScriptedBroker broker(GetParam(), 0);
  ASSERT_NO_FATAL_FAILURE(broker.handshake({"lg/x/1"}, 0));
  broker.session().publish("lg/x/0", "zero", 5);
  broker.flush();
  const auto packet = broker.nextPacket();
  ASSERT_TRUE(packet && mqtt::typeOf(*packet) == mqtt::PacketType::kPublish);
  EXPECT_EQ(std::get<mqtt::Publish>(*packet).qos, 0);
  EXPECT_EQ(std::get<mqtt::Publish>(*packet).payload, "zero");
  EXPECT_EQ(broker.session().unacknowledged(), 0u);
  EXPECT_TRUE(broker.session().canPublish());
}

TEST_P(MqttSession, AcknowledgementsForIdsNotInFlightAreBrokerErrors) {
  ScriptedBroker broker(GetParam(), 1);
  ASSERT_NO_FATAL_FAILURE(broker.handshake({"lg/x/1"}, 1));
  broker.session().publish("lg/x/0", "m", 1);
  broker.flush();
  ASSERT_EQ(broker.nextType(), mqtt::PacketType::kPublish);
  std::string bytes;
  mqtt::appendPuback(bytes, 1);
  mqtt::appendPuback(bytes, 1);  // twice
  mqtt::appendPubcomp(bytes, 1);
  mqtt::appendPuback(bytes, 77);  // never used
  broker.play(bytes);
  EXPECT_EQ(broker.host.acks.size(), 1u);
  EXPECT_EQ(broker.host.brokerErrors.size(), 3u);
  EXPECT_TRUE(broker.host.failures.empty());  // the session goes on
}

TEST_P(MqttSession, ManyFiltersAreSentInSeveralSubscribesAndAllSubacksAreAwaited) {
  ScriptedBroker broker(GetParam(), 1);
  ASSERT_EQ(broker.nextType(), mqtt::PacketType::kConnect);
  std::string bytes;
  mqtt::appendConnack(bytes, false, mqtt::ConnectReturnCode::kAccepted);
  broker.play(bytes);
  std::vector<std::string> filters;
  for (std::size_t i = 0; i < kFiltersPerSubscribe + 5; ++i)
    filters.push_back("lg/x/" + std::to_string(i));
  broker.session().subscribe(filters, 0);
  broker.flush();
  std::vector<std::uint16_t> ids;
  std::vector<std::size_t> sizes;
  for (int i = 0; i < 2; ++i) {
    const auto packet = broker.nextPacket();
    ASSERT_TRUE(packet && mqtt::typeOf(*packet) == mqtt::PacketType::kSubscribe);
    ids.push_back(std::get<mqtt::Subscribe>(*packet).packetId);
    sizes.push_back(std::get<mqtt::Subscribe>(*packet).subscriptions.size());
    for (const mqtt::Subscription entry : std::get<mqtt::Subscribe>(*packet).subscriptions)
      EXPECT_EQ(entry.qos, 1);
  }
  EXPECT_EQ(sizes, (std::vector<std::size_t>{kFiltersPerSubscribe, 5}));
  EXPECT_NE(ids[0], ids[1]);
  bytes.clear();
  mqtt::appendSuback(bytes, ids[1], std::vector<std::uint8_t>(5, 1));
  broker.play(bytes);
  EXPECT_EQ(broker.host.subscribed, 0);  // one SUBACK still missing
  bytes.clear();
  mqtt::appendSuback(bytes, ids[0], std::vector<std::uint8_t>(kFiltersPerSubscribe, 1));
  broker.play(bytes);
  EXPECT_EQ(broker.host.subscribed, 1);
}

TEST_P(MqttSession, RefusedConnectionOrSubscriptionFailsTheHandshake) {
  {
    ScriptedBroker broker(GetParam(), 0);
    ASSERT_EQ(broker.nextType(), mqtt::PacketType::kConnect);
    std::string bytes;
    mqtt::appendConnack(bytes, false, mqtt::ConnectReturnCode::kNotAuthorized);
    broker.play(bytes);
    EXPECT_EQ(broker.host.failures, (std::vector<SessionFailure>{SessionFailure::kHandshake}));
    EXPECT_EQ(broker.host.connected, 0);
  }
  {
    ScriptedBroker broker(GetParam(), 0);
    ASSERT_EQ(broker.nextType(), mqtt::PacketType::kConnect);
    std::string bytes;
    mqtt::appendConnack(bytes, false, mqtt::ConnectReturnCode::kAccepted);
    broker.play(bytes);
    broker.session().subscribe(std::vector<std::string>{"lg/x/1"}, 0);
    broker.flush();
    ASSERT_EQ(broker.nextType(), mqtt::PacketType::kSubscribe);
    bytes.clear();
    mqtt::appendSuback(bytes, 1, std::vector<std::uint8_t>{mqtt::kSubackFailure});
    broker.play(bytes);
    EXPECT_EQ(broker.host.failures, (std::vector<SessionFailure>{SessionFailure::kHandshake}));
    EXPECT_EQ(broker.host.subscribed, 0);
  }
}

TEST_P(MqttSession, MalformedPacketOrClosedConnectionFailsTheSessionOnce) {
  {
    ScriptedBroker broker(GetParam(), 1);
    ASSERT_NO_FATAL_FAILURE(broker.handshake({"lg/x/1"}, 1));
    broker.play(std::string("\x36\x00", 2));  // PUBLISH with QoS 3
    EXPECT_EQ(broker.host.failures, (std::vector<SessionFailure>{SessionFailure::kProtocol}));
  }
  {
    ScriptedBroker broker(GetParam(), 1);
    ASSERT_NO_FATAL_FAILURE(broker.handshake({"lg/x/1"}, 1));
    broker.closePeer();
    broker.pump();
    EXPECT_EQ(broker.host.failures, (std::vector<SessionFailure>{SessionFailure::kDisconnected}));
    broker.session().publish("lg/x/0", "after", 1);  // ignored: the session is gone
    EXPECT_EQ(broker.session().queuedBytes(), 0u);
  }
}

TEST_P(MqttSession, PingsAfterHalfTheKeepAliveWithoutOutput) {
  constexpr std::int64_t kSecond = 1'000'000'000;
  ScriptedBroker broker(GetParam(), 0, 10);
  ASSERT_NO_FATAL_FAILURE(broker.handshake({"lg/x/1"}, 0));
  // The handshake's writes count as output at the first tick.
  broker.session().tick(1 * kSecond);
  broker.session().tick(5 * kSecond);  // 4 s silent: less than half of 10 s
  broker.flush();
  EXPECT_TRUE(broker.quiet());
  broker.session().tick(6 * kSecond);  // 5 s silent
  broker.flush();
  EXPECT_EQ(broker.nextType(), mqtt::PacketType::kPingreq);
  // A publish resets the clock.
  broker.session().tick(8 * kSecond);  // the PINGREQ was output
  broker.session().publish("lg/x/0", "m", 0);
  broker.flush();
  EXPECT_EQ(broker.nextType(), mqtt::PacketType::kPublish);
  broker.session().tick(12 * kSecond);  // output since the last tick
  broker.session().tick(16 * kSecond);  // 4 s silent
  broker.flush();
  EXPECT_TRUE(broker.quiet());
}

TEST_P(MqttSession, ConnectCarriesUserNameAndPasswordInBothVersions) {
  for (const std::uint8_t level : {mqtt::kProtocolLevel311, mqtt::kProtocolLevel5}) {
    ScriptedBroker broker(GetParam(), 0, 60, [&](SessionConfig& config) {
      config.mqttLevel = level;
      config.username = "alice";
      config.password = "pa@ss word";
    });
    const auto packet = broker.nextPacket();
    ASSERT_TRUE(packet && mqtt::typeOf(*packet) == mqtt::PacketType::kConnect);
    const auto& connect = std::get<mqtt::Connect>(*packet);
    EXPECT_EQ(connect.protocolLevel, level);
    EXPECT_TRUE(connect.usernameFlag);
    EXPECT_EQ(connect.username, "alice");
    EXPECT_TRUE(connect.passwordFlag);
    EXPECT_EQ(connect.password, "pa@ss word");
  }
  // A user name alone sends no password field; no credentials, neither flag.
  {
    ScriptedBroker broker(GetParam(), 0, 60,
                          [](SessionConfig& config) { config.username = "bob"; });
    const auto packet = broker.nextPacket();
    ASSERT_TRUE(packet && mqtt::typeOf(*packet) == mqtt::PacketType::kConnect);
    EXPECT_TRUE(std::get<mqtt::Connect>(*packet).usernameFlag);
    EXPECT_FALSE(std::get<mqtt::Connect>(*packet).passwordFlag);
  }
  {
    ScriptedBroker broker(GetParam(), 0);
    const auto packet = broker.nextPacket();
    ASSERT_TRUE(packet && mqtt::typeOf(*packet) == mqtt::PacketType::kConnect);
    EXPECT_FALSE(std::get<mqtt::Connect>(*packet).usernameFlag);
    EXPECT_FALSE(std::get<mqtt::Connect>(*packet).passwordFlag);
  }
}

TEST_P(MqttSession, RefusedCredentialsFailTheHandshakeWithTheReason) {
  {
    ScriptedBroker broker(GetParam(), 0, 60, [](SessionConfig& config) {
      config.username = "alice";
      config.password = "wrong";
    });
    ASSERT_EQ(broker.nextType(), mqtt::PacketType::kConnect);
    std::string bytes;
    mqtt::appendConnack(bytes, false, mqtt::ConnectReturnCode::kNotAuthorized);
    broker.play(bytes);
    EXPECT_EQ(broker.host.failures, (std::vector<SessionFailure>{SessionFailure::kHandshake}));
    EXPECT_EQ(broker.host.failureText,
              "CONNACK return code 5 (not authorized): check --username and --password");
  }
  for (const auto reason :
       {mqtt::ReasonCode::kBadUserNameOrPassword, mqtt::ReasonCode::kNotAuthorized}) {
    ScriptedBroker broker(GetParam(), 0, 60,
                          [](SessionConfig& config) { config.mqttLevel = mqtt::kProtocolLevel5; });
    ASSERT_EQ(broker.nextType(), mqtt::PacketType::kConnect);
    std::string bytes;
    mqtt::appendConnack5(bytes, false, reason, {});
    broker.play(bytes);
    EXPECT_EQ(broker.host.failures, (std::vector<SessionFailure>{SessionFailure::kHandshake}));
    EXPECT_EQ(broker.host.failureText,
              fmt::format("CONNACK reason code {:#04x} ({}): the broker wants credentials "
                          "(--username, --password)",
                          static_cast<unsigned>(reason), mqtt::describe(reason)));
  }
}

TEST_P(MqttSession, TlsCarriesTheWholeConversationAndSealsOncePerTurn) {
  TlsSetup tls;
  ASSERT_TRUE(tls.server && tls.client);
  ScriptedBroker broker(
      GetParam(), 1, 60,
      [](SessionConfig& config) {
        config.username = "alice";
        config.password = "secret";
      },
      &tls);
  ASSERT_TRUE(broker.host.failures.empty()) << broker.host.failureText;
  ASSERT_TRUE(broker.tls()->handshakeDone()) << broker.tls()->error();
  const auto packet = broker.nextPacket();
  ASSERT_TRUE(packet && mqtt::typeOf(*packet) == mqtt::PacketType::kConnect);
  EXPECT_EQ(std::get<mqtt::Connect>(*packet).username, "alice");
  EXPECT_EQ(std::get<mqtt::Connect>(*packet).password, "secret");
  std::string bytes;
  mqtt::appendConnack(bytes, false, mqtt::ConnectReturnCode::kAccepted);
  broker.play(bytes);
  ASSERT_EQ(broker.host.connected, 1);
  broker.session().subscribe(std::vector<std::string>{"lg/x/1"}, broker.host.now);
  broker.flush();
  const auto subscribe = broker.nextPacket();
  ASSERT_TRUE(subscribe && mqtt::typeOf(*subscribe) == mqtt::PacketType::kSubscribe);
  bytes.clear();
  mqtt::appendSuback(bytes, std::get<mqtt::Subscribe>(*subscribe).packetId,
                     std::vector<std::uint8_t>{1});
  broker.play(bytes);
  ASSERT_EQ(broker.host.subscribed, 1);

  // Three publishes in one turn: queued as plaintext, one seal asked for, counted as queued.
  broker.session().publish("lg/x/0", "one", 100);
  broker.session().publish("lg/x/0", "two", 200);
  broker.session().publish("lg/x/0", "three", 300);
  EXPECT_EQ(broker.host.sealsAsked(), 1);
  EXPECT_GT(broker.session().queuedBytes(), 0u);
  broker.flush();
  for (const std::string_view expected : {"one", "two", "three"}) {
    const auto publish = broker.nextPacket();
    ASSERT_TRUE(publish && mqtt::typeOf(*publish) == mqtt::PacketType::kPublish);
    EXPECT_EQ(std::get<mqtt::Publish>(*publish).payload, expected);
  }
  // Acknowledgements and a delivery from the broker, one byte per receive.
  bytes.clear();
  mqtt::appendPuback(bytes, 1);
  mqtt::appendPuback(bytes, 2);
  mqtt::appendPuback(bytes, 3);
  bytes += publishBytes("lg/x/1", "delivered", 1, 7);
  broker.play(bytes, 1);
  ASSERT_TRUE(broker.host.failures.empty()) << broker.host.failureText;
  EXPECT_EQ(broker.host.acks, (std::vector<std::int64_t>{100, 200, 300}));
  EXPECT_EQ(broker.host.messages, (std::vector<std::string>{"lg/x/1=delivered"}));
  EXPECT_EQ(broker.nextType(), mqtt::PacketType::kPuback);  // for the delivery, encrypted too
}

TEST_P(MqttSession, TlsCertificateForAnotherNameIsAConnectFailure) {
  TlsSetup tls;
  ScriptedBroker broker(
      GetParam(), 0, 60, [](SessionConfig& config) { config.tlsServerName = "other.example"; },
      &tls);
  for (int i = 0; i < 100 && broker.host.failures.empty(); ++i) {
    broker.flush();
    broker.host.turn(10'000'000);
  }
  EXPECT_EQ(broker.host.failures, (std::vector<SessionFailure>{SessionFailure::kConnect}));
  EXPECT_TRUE(broker.host.failureText.starts_with("TLS: ")) << broker.host.failureText;
  EXPECT_EQ(broker.host.connected, 0);
}

// A server frame (unmasked, FIN) of `opcode` carrying `payload`.
std::string wsServerFrame(unsigned opcode, std::string_view payload) {
  char header[10];
  const std::size_t n = protocol::WsStream::writeHeader(payload.size(), header);
  header[0] = static_cast<char>(0x80 | opcode);
  return std::string(header, n) + std::string(payload);
}

// The client frames in `raw`: (first byte, unmasked payload) each; fails on a truncated frame.
std::vector<std::pair<unsigned, std::string>> wsClientFrames(std::string_view raw) {
  std::vector<std::pair<unsigned, std::string>> frames;
  const auto byte = [&](std::size_t i) { return static_cast<unsigned char>(raw[i]); };
  while (!raw.empty()) {
    EXPECT_GE(raw.size(), 6u);
    EXPECT_EQ(byte(1) & 0x80, 0x80u) << "a client frame must be masked";
    std::uint64_t length = byte(1) & 0x7f;
    std::size_t at = 2;
    if (length >= 126) {
      const std::size_t bytes = length == 126 ? 2 : 8;
      length = 0;
      for (std::size_t i = 0; i < bytes; ++i)
        length = (length << 8) | byte(2 + i);
      at += bytes;
    }
    const unsigned char key[4] = {byte(at), byte(at + 1), byte(at + 2), byte(at + 3)};
    at += 4;
    if (raw.size() < at + length) {
      ADD_FAILURE() << "a truncated frame";
      break;
    }
    std::string payload(raw.substr(at, length));
    for (std::size_t i = 0; i < payload.size(); ++i)
      payload[i] = static_cast<char>(payload[i] ^ key[i % 4]);
    frames.emplace_back(byte(0), std::move(payload));
    raw.remove_prefix(at + length);
  }
  return frames;
}

TEST_P(MqttSession, WebSocketUpgradesFramesEachTurnOnceAnswersPingsAndReportsAClose) {
  ScriptedBroker broker(GetParam(), 1, 60, [](SessionConfig& config) {
    config.websocket = true;
    config.wsPath = "/mqtt";
    config.wsHost = "127.0.0.1:9001";
  });
  ASSERT_TRUE(broker.host.failures.empty()) << broker.host.failureText;
  // The upgrade request and the framed CONNECT, without waiting for the 101; the broker's own
  // parser accepts the request and its libwslay decoder the frame.
  std::string raw = broker.takeRaw();
  const protocol::WsHandshake upgrade = protocol::parseWsHandshake(raw, {});
  ASSERT_EQ(upgrade.status, protocol::WsHandshake::Status::kAccepted) << upgrade.problem;
  EXPECT_TRUE(raw.starts_with("GET /mqtt HTTP/1.1\r\nHost: 127.0.0.1:9001\r\n")) << raw;
  protocol::WsStream server(1 << 20);
  std::string payload;
  std::string answers;
  EXPECT_EQ(server.receive(std::string_view(raw).substr(upgrade.consumed), payload, answers),
            protocol::WsStream::State::kOpen);
  const mqtt::Decoder decoder{mqtt::DecoderConfig{.role = mqtt::Role::kServer}};
  const mqtt::DecodeResult connect = decoder.decode(payload);
  ASSERT_EQ(connect.status, mqtt::DecodeStatus::kPacket);
  EXPECT_EQ(mqtt::typeOf(connect.packet), mqtt::PacketType::kConnect);
  EXPECT_EQ(connect.consumed, payload.size());

  // The 101, a CONNACK frame and a ping in one write, cut inside the 101: connected, pong sent.
  std::string connack;
  mqtt::appendConnack(connack, false, mqtt::ConnectReturnCode::kAccepted);
  const std::string reply =
      upgrade.response + wsServerFrame(0x2, connack) + wsServerFrame(0x9, "are you there");
  broker.sendRaw(std::string_view(reply).substr(0, 20));
  broker.pump();
  broker.sendRaw(std::string_view(reply).substr(20));
  broker.pump();
  ASSERT_TRUE(broker.host.failures.empty()) << broker.host.failureText;
  ASSERT_EQ(broker.host.connected, 1);
  auto frames = wsClientFrames(broker.takeRaw());
  ASSERT_EQ(frames.size(), 1u);
  EXPECT_EQ(frames[0].first, 0x8au);
  EXPECT_EQ(frames[0].second, "are you there");

  // Subscribe, then three publishes in one turn: one seal, one binary frame carrying all three.
  broker.session().subscribe(std::vector<std::string>{"lg/x/1"}, broker.host.now);
  broker.flush();
  frames = wsClientFrames(broker.takeRaw());
  ASSERT_EQ(frames.size(), 1u);
  const mqtt::DecodeResult subscribe = decoder.decode(frames[0].second);
  ASSERT_EQ(subscribe.status, mqtt::DecodeStatus::kPacket);
  std::string suback;
  mqtt::appendSuback(suback, std::get<mqtt::Subscribe>(subscribe.packet).packetId,
                     std::vector<std::uint8_t>{1});
  broker.sendRaw(wsServerFrame(0x2, suback));
  broker.pump();
  ASSERT_EQ(broker.host.subscribed, 1);
  broker.flush();
  broker.session().publish("lg/x/0", "one", 100);
  broker.session().publish("lg/x/0", "two", 200);
  broker.session().publish("lg/x/0", "three", 300);
  EXPECT_EQ(broker.host.sealsAsked(), 1);
  EXPECT_GT(broker.session().queuedBytes(), 0u);
  broker.flush();
  frames = wsClientFrames(broker.takeRaw());
  ASSERT_EQ(frames.size(), 1u);
  EXPECT_EQ(frames[0].first, 0x82u);
  std::string_view packets = frames[0].second;
  for (const std::string_view expected : {"one", "two", "three"}) {
    const mqtt::DecodeResult publish = decoder.decode(packets);
    ASSERT_EQ(publish.status, mqtt::DecodeStatus::kPacket);
    EXPECT_EQ(std::get<mqtt::Publish>(publish.packet).payload, expected);
    packets.remove_prefix(publish.consumed);
  }
  EXPECT_TRUE(packets.empty());

  // PUBACKs split across two frames (a message in fragments), then a close with code 1001.
  std::string acks;
  mqtt::appendPuback(acks, 1);
  mqtt::appendPuback(acks, 2);
  mqtt::appendPuback(acks, 3);
  std::string fragments = wsServerFrame(0x2, acks.substr(0, 5));
  fragments[0] = 0x02;  // FIN clear
  fragments += wsServerFrame(0x0, acks.substr(5));
  broker.sendRaw(fragments);
  broker.pump();
  ASSERT_TRUE(broker.host.failures.empty()) << broker.host.failureText;
  EXPECT_EQ(broker.host.acks, (std::vector<std::int64_t>{100, 200, 300}));
  broker.sendRaw(wsServerFrame(0x8, std::string("\x03\xe9", 2) + "going away"));
  broker.pump();
  EXPECT_EQ(broker.host.failures, (std::vector<SessionFailure>{SessionFailure::kDisconnected}));
  EXPECT_EQ(broker.host.failureText, "the broker closed the WebSocket with code 1001 (going away)");
}

TEST_P(MqttSession, WebSocketRefusalOrTextFrameFailsTheSession) {
  {
    ScriptedBroker broker(GetParam(), 0, 60,
                          [](SessionConfig& config) { config.websocket = true; });
    broker.takeRaw();
    broker.sendRaw("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
    broker.pump();
    EXPECT_EQ(broker.host.failures, (std::vector<SessionFailure>{SessionFailure::kHandshake}));
    EXPECT_NE(broker.host.failureText.find("404 Not Found"), std::string::npos)
        << broker.host.failureText;
  }
  ScriptedBroker broker(GetParam(), 0, 60, [](SessionConfig& config) { config.websocket = true; });
  const std::string raw = broker.takeRaw();
  const protocol::WsHandshake upgrade = protocol::parseWsHandshake(raw, {});
  ASSERT_EQ(upgrade.status, protocol::WsHandshake::Status::kAccepted) << upgrade.problem;
  broker.sendRaw(upgrade.response + wsServerFrame(0x1, "text"));
  broker.pump();
  EXPECT_EQ(broker.host.failures, (std::vector<SessionFailure>{SessionFailure::kProtocol}));
  EXPECT_NE(broker.host.failureText.find("text frame"), std::string::npos)
      << broker.host.failureText;
}

INSTANTIATE_TEST_SUITE_P(Backends, MqttSession,
                         ::testing::Values(net::IoChoice::kUring, net::IoChoice::kEpoll), ioName);

}  // namespace
}  // namespace tern::loadgen
