// The two protocol handlers driven without sockets: bytes in through ProtocolHandler::onInput,
// bytes out read from a fake ConnectionIo's buffers, deliveries through WorkerCore. Checks that
// the seam works and what only a unit test sees (what is committed, what is handed over).
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "broker/broker_context.hpp"
#include "broker/connection_io.hpp"
#include "broker/line_protocol.hpp"
#include "broker/mqtt_protocol.hpp"
#include "broker/worker_core.hpp"
#include "tern/protocol/mqtt_decoder.hpp"
#include "tern/protocol/mqtt_encoder.hpp"
#include "tern/sync/qsbr.hpp"

namespace tern::broker {
namespace {

namespace mqtt = protocol::mqtt;

// Records what the handlers ask of the sockets; output stays in each connection's `carried`.
class FakeIo final : public ConnectionIo {
 public:
  // The test keeps each connection's output in its `carried` buffer (unused without a loop).
  net::ByteBuffer& output(Connection& c) noexcept override { return c.carried; }
  void send(Connection&) override { ++sends; }
  std::size_t unsent(const Connection& c) const noexcept override { return c.carried.size(); }
  void notifyWhenDrained(Connection&) override {}
  void closeAfterFlush(Connection& c) override { c.closing = true; }
  void closeNow(Connection& c) override {
    c.closed = true;
    closedNow.push_back(&c);
  }
  void handOver(Connection& c, unsigned worker) override { handedOver.push_back({&c, worker}); }
  void pauseInput(Connection& c) override { c.readPaused = true; }
  void releaseInput(Connection&) override {}
  void startKeepAlive(Connection& c, std::int64_t nanos) override { c.keepAliveNanos = nanos; }

  int sends = 0;
  std::vector<Connection*> closedNow;
  std::vector<std::pair<Connection*, unsigned>> handedOver;
};

Config oneWorker(unsigned workers = 1) {
  Config config;
  config.workers = workers;
  config.maxConnections = 100;
  config.maxConnectionsPerAddress = 100;
  config.memoryLimit = std::size_t{1} << 30;
  return config;
}

struct Harness {
  explicit Harness(unsigned workers = 1)
      : context(oneWorker(workers)), core(context, 0, workers, io), line(core), mqtt(core) {
    core.setHandlers(line, mqtt);
  }
  // Feeds `bytes` to `c` as one read; returns how many bytes the handler committed.
  std::size_t feed(Connection& c, std::string_view bytes, InputState* state = nullptr) {
    std::size_t committed = 0;
    const InputState s =
        core.handler(c.protocol).onInput(c, bytes, 0, [&](std::size_t n) { committed += n; });
    if (state != nullptr) *state = s;
    return committed;
  }
  // The output of `c` so far, taken.
  static std::string take(Connection& c) {
    std::string out(c.carried.view());
    c.carried.consume(c.carried.size());
    return out;
  }

  sync::QsbrDomain::Reader reader{sync::QsbrDomain::global()};
  FakeIo io;
  BrokerContext context;
  WorkerCore core;
  LineProtocol line;
  MqttProtocol mqtt;
};

TEST(LineProtocolHandler, SessionSubscribePublishWithoutSockets) {
  Harness h;
  Connection request;
  Connection push;
  EXPECT_EQ(h.feed(request, "CONNECT@alice\n"), 14u);
  const std::string connack = Harness::take(request);
  ASSERT_EQ(connack.rfind("CONNACK@alice@", 0), 0u) << connack;
  const std::string token = connack.substr(14, connack.size() - 15);
  EXPECT_EQ(request.role, SocketRole::kRequest);
  h.feed(push, "ATTACH@" + token + "@push\n");
  EXPECT_EQ(Harness::take(push), "ATTACHACK@push\n");
  // Two requests in one read: both answered, in order, both committed.
  const std::string pipelined = "SUBSCRIBE@news/#\nPUBLISH@news/x@hello\n";
  EXPECT_EQ(h.feed(request, pipelined), pipelined.size());
  EXPECT_EQ(Harness::take(request), "SUBACK\nPUBACK\n");
  EXPECT_EQ(Harness::take(push), "MESSAGE@news/x@hello\n");
  // An incomplete frame is not committed: the worker keeps it for the next read.
  InputState state;
  EXPECT_EQ(h.feed(request, "PING\nPUBL", &state), 5u);
  EXPECT_EQ(state, InputState::kMore);
  EXPECT_EQ(Harness::take(request), "PONG\n");
  h.core.sessions.reap();
}

TEST(LineProtocolHandler, ConnectHomedElsewhereIsHandedOverUncommitted) {
  Harness h(4);
  int handedOver = 0;
  for (int i = 0; i < 16; ++i) {
    Connection c;
    const std::string id = "id" + std::to_string(i);
    InputState state;
    const std::size_t committed = h.feed(c, "CONNECT@" + id + "\nPING\n", &state);
    if (h.core.sessions.homeWorker(id) == 0) {
      EXPECT_EQ(state, InputState::kMore);
      EXPECT_EQ(Harness::take(c).rfind("CONNACK@" + id + "@", 0), 0u);
      continue;
    }
    // The frame that caused the hand-over stays in the input: the new owner handles it.
    EXPECT_EQ(state, InputState::kGone);
    EXPECT_EQ(committed, 0u);
    EXPECT_TRUE(c.carried.empty());
    ASSERT_FALSE(h.io.handedOver.empty());
    EXPECT_EQ(h.io.handedOver.back().first, &c);
    EXPECT_EQ(h.io.handedOver.back().second, h.core.sessions.homeWorker(id));
    ++handedOver;
  }
  EXPECT_GT(handedOver, 0);
}

std::string connectPacket(std::string_view clientId) {
  mqtt::Connect connect;
  connect.clientId = clientId;
  connect.cleanSession = true;
  connect.keepAlive = 30;
  std::string out;
  mqtt::appendConnect(out, connect);
  return out;
}

TEST(MqttProtocolHandler, ConnectSubscribePublishWithoutSockets) {
  Harness h;
  Connection c;
  c.protocol = Protocol::kMqtt;
  const std::string connect = connectPacket("m1");
  EXPECT_EQ(h.feed(c, connect), connect.size());
  EXPECT_EQ(c.keepAliveNanos, 45'000'000'000);  // 1.5 times the keep-alive
  std::string out = Harness::take(c);
  mqtt::Decoder client(mqtt::DecoderConfig{1 << 20, mqtt::Role::kClient});
  mqtt::DecodeResult r = client.decode(out);
  ASSERT_EQ(r.status, mqtt::DecodeStatus::kPacket);
  EXPECT_EQ(std::get<mqtt::Connack>(r.packet).returnCode, mqtt::ConnectReturnCode::kAccepted);

  std::string packets;
  const mqtt::Subscription entries[] = {{"t/#", 1}};
  mqtt::appendSubscribe(packets, 5, entries);
  mqtt::Publish publish;
  publish.topic = "t/a";
  publish.payload = "v";
  publish.qos = 1;
  publish.packetId = 6;
  mqtt::appendPublish(packets, publish);
  EXPECT_EQ(h.feed(c, packets), packets.size());
  out = Harness::take(c);
  std::vector<mqtt::PacketType> types;
  for (std::string_view rest = out; !rest.empty();) {
    r = client.decode(rest);
    ASSERT_EQ(r.status, mqtt::DecodeStatus::kPacket);
    types.push_back(mqtt::typeOf(r.packet));
    rest.remove_prefix(r.consumed);
  }
  // SUBACK, then the publish delivered back (at QoS 1), and its PUBACK.
  EXPECT_EQ(types,
            (std::vector<mqtt::PacketType>{mqtt::PacketType::kSuback, mqtt::PacketType::kPublish,
                                           mqtt::PacketType::kPuback}));
  h.core.sessions.reap();
}

}  // namespace
}  // namespace tern::broker
