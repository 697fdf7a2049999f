// MqttSession against a scripted broker: the test accepts the session's connection on loopback,
// plays the broker's bytes (whole, split at every offset, or one byte at a time), drives the
// session's events itself, and checks what the session reported to its host and what it wrote.
// Judged on reported values and decoded packets, never on timing.
#include "tern/loadgen/mqtt_session.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "tern/protocol/mqtt_decoder.hpp"
#include "tern/protocol/mqtt_encoder.hpp"

namespace tern::loadgen {
namespace {

namespace mqtt = protocol::mqtt;

constexpr int kWaitMs = 5000;

// Records every report of the session.
class RecordingHost final : public SessionHost {
 public:
  bool watch(std::uint32_t, unsigned slot, int fd, bool) override {
    EXPECT_EQ(slot, 0u);
    fd_ = fd;
    return true;
  }
  void rewatch(std::uint32_t, unsigned, int, bool) override {}
  void requestFlush(std::uint32_t) noexcept override { flushRequested_ = true; }
  std::span<char> readBuffer() noexcept override { return buffer_; }
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

  int fd() const { return fd_; }
  bool takeFlushRequest() {
    const bool requested = flushRequested_;
    flushRequested_ = false;
    return requested;
  }

  int connected = 0;
  int subscribed = 0;
  std::vector<std::int64_t> acks;
  std::vector<std::string> messages;
  std::vector<std::string> brokerErrors;
  std::vector<SessionFailure> failures;
  std::string failureText;

 private:
  int fd_ = -1;
  bool flushRequested_ = false;
  std::vector<char> buffer_ = std::vector<char>(64 << 10);
};

// One session connected to a socket the test plays the broker on.
class ScriptedBroker {
 public:
  explicit ScriptedBroker(std::uint8_t qos, std::uint16_t keepAliveS = 60) {
    listener_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
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
    session_ = makeMqttSession(host, config);
    session_->start(0);
    peer_ = ::accept4(listener_, nullptr, nullptr, SOCK_CLOEXEC);
    EXPECT_GE(peer_, 0);
    const int one = 1;  // small writes go at once, as a broker's would
    ::setsockopt(peer_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    pump(POLLOUT);  // the connect completes and CONNECT leaves
  }
  ~ScriptedBroker() {
    session_.reset();
    if (peer_ >= 0) ::close(peer_);
    ::close(listener_);
  }

  Session& session() { return *session_; }

  // Waits until the session's socket has `events`, hands them to the session, then flushes.
  void pump(short events = POLLIN) {
    if (host.fd() < 0 || !host.failures.empty()) return;
    pollfd p{host.fd(), events, 0};
    ASSERT_EQ(::poll(&p, 1, kWaitMs), 1) << "the session's socket never became ready";
    std::uint32_t epollEvents = 0;
    if ((p.revents & POLLIN) != 0) epollEvents |= EPOLLIN;
    if ((p.revents & POLLOUT) != 0) epollEvents |= EPOLLOUT;
    if ((p.revents & POLLHUP) != 0) epollEvents |= EPOLLHUP;
    if ((p.revents & POLLERR) != 0) epollEvents |= EPOLLERR;
    session_->onEvent(0, epollEvents, ++now_);
    flush();
  }
  void flush() {
    if (host.takeFlushRequest() && host.failures.empty()) session_->flush(now_);
  }

  // The broker writes `bytes`; the session reads them (one read per `chunk` bytes).
  void play(std::string_view bytes, std::size_t chunk = 0) {
    if (chunk == 0) chunk = bytes.size();
    while (!bytes.empty()) {
      const std::size_t n = std::min(chunk, bytes.size());
      ASSERT_EQ(::send(peer_, bytes.data(), n, MSG_NOSIGNAL), static_cast<ssize_t>(n));
      bytes.remove_prefix(n);
      pump();
    }
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
      pollfd p{peer_, POLLIN, 0};
      if (::poll(&p, 1, kWaitMs) != 1) return std::nullopt;
      char chunk[4096];
      const ssize_t n = ::recv(peer_, chunk, sizeof chunk, 0);
      if (n <= 0) return std::nullopt;
      received_.append(chunk, static_cast<std::size_t>(n));
    }
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
    session_->subscribe(filters, now_);
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
  std::int64_t now_ = 0;
  const mqtt::Decoder decoder_{mqtt::DecoderConfig{.role = mqtt::Role::kServer}};
  std::string received_;
  std::string lastPacket_;
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
void runQos2Conversation(std::size_t chunk, std::size_t split = 0) {
  ScriptedBroker broker(2);
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

TEST(MqttSession, ConnectsWithCleanSessionKeepAliveAndItsClientId) {
  ScriptedBroker broker(1, 30);
  const auto packet = broker.nextPacket();
  ASSERT_TRUE(packet && mqtt::typeOf(*packet) == mqtt::PacketType::kConnect);
  const auto& connect = std::get<mqtt::Connect>(*packet);
  EXPECT_TRUE(connect.cleanSession);
  EXPECT_EQ(connect.keepAlive, 30);
  EXPECT_EQ(connect.clientId, "lg-test-0");
  EXPECT_EQ(connect.protocolLevel, mqtt::kProtocolLevel311);
}

TEST(MqttSession, QosTwoConversationInOneRead) {
  runQos2Conversation(0);
}

TEST(MqttSession, QosTwoConversationOneByteAtATime) {
  runQos2Conversation(1);
}

TEST(MqttSession, QosTwoConversationSplitAtEveryOffset) {
  const std::size_t size = qos2Conversation().size();
  for (std::size_t split = 1; split < size; ++split) {
    SCOPED_TRACE(split);
    runQos2Conversation(0, split);
    if (::testing::Test::HasFailure()) return;
  }
}

TEST(MqttSession, QosOnePublishesRetireOnPubackInAnyOrder) {
  ScriptedBroker broker(1);
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

TEST(MqttSession, QosZeroPublishesCarryNoPacketIdAndExpectNothing) {
  ScriptedBroker broker(0);
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

TEST(MqttSession, AcknowledgementsForIdsNotInFlightAreBrokerErrors) {
  ScriptedBroker broker(1);
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

TEST(MqttSession, ManyFiltersAreSentInSeveralSubscribesAndAllSubacksAreAwaited) {
  ScriptedBroker broker(1);
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

TEST(MqttSession, RefusedConnectionOrSubscriptionFailsTheHandshake) {
  {
    ScriptedBroker broker(0);
    ASSERT_EQ(broker.nextType(), mqtt::PacketType::kConnect);
    std::string bytes;
    mqtt::appendConnack(bytes, false, mqtt::ConnectReturnCode::kNotAuthorized);
    broker.play(bytes);
    EXPECT_EQ(broker.host.failures, (std::vector<SessionFailure>{SessionFailure::kHandshake}));
    EXPECT_EQ(broker.host.connected, 0);
  }
  {
    ScriptedBroker broker(0);
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

TEST(MqttSession, MalformedPacketOrClosedConnectionFailsTheSessionOnce) {
  {
    ScriptedBroker broker(1);
    ASSERT_NO_FATAL_FAILURE(broker.handshake({"lg/x/1"}, 1));
    broker.play(std::string("\x36\x00", 2));  // PUBLISH with QoS 3
    EXPECT_EQ(broker.host.failures, (std::vector<SessionFailure>{SessionFailure::kProtocol}));
  }
  {
    ScriptedBroker broker(1);
    ASSERT_NO_FATAL_FAILURE(broker.handshake({"lg/x/1"}, 1));
    broker.closePeer();
    broker.pump();
    EXPECT_EQ(broker.host.failures, (std::vector<SessionFailure>{SessionFailure::kDisconnected}));
    broker.session().publish("lg/x/0", "after", 1);  // ignored: the session is gone
    EXPECT_EQ(broker.session().queuedBytes(), 0u);
  }
}

TEST(MqttSession, PingsAfterHalfTheKeepAliveWithoutOutput) {
  constexpr std::int64_t kSecond = 1'000'000'000;
  ScriptedBroker broker(0, 10);
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

}  // namespace
}  // namespace tern::loadgen
