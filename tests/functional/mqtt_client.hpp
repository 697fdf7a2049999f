// A minimal, synchronous MQTT 3.1.1 test client over loopback, built on tern's own codec, so that
// functional tests can send exact bytes (including malformed ones) and check exact packets.
//
// Single-threaded use by one test. Every wait is bounded.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "harness.hpp"
#include "tern/protocol/mqtt_decoder.hpp"
#include "tern/protocol/mqtt_encoder.hpp"

namespace tern::test {

namespace mqtt = protocol::mqtt;

// One received packet: its bytes, decoded on demand (the views point into `bytes`).
struct MqttReceived {
  std::string bytes;
  mqtt::PacketType type = mqtt::PacketType::kPingresp;
  std::uint8_t level = mqtt::kProtocolLevel311;  // the layout the packet has

  mqtt::Packet decode() const {
    return mqtt::Decoder({mqtt::kMaxPacketSize, mqtt::Role::kClient}).decode(bytes, level).packet;
  }
  mqtt::Publish publish() const { return std::get<mqtt::Publish>(decode()); }
  mqtt::Connack connack() const { return std::get<mqtt::Connack>(decode()); }
  std::vector<std::uint8_t> subackCodes() const {
    const auto suback = std::get<mqtt::Suback>(decode());
    return {suback.returnCodes.begin(), suback.returnCodes.end()};
  }
  std::uint16_t packetId() const {
    const mqtt::Packet p = decode();
    if (auto* a = std::get_if<mqtt::Puback>(&p)) return a->packetId;
    if (auto* a = std::get_if<mqtt::Pubrec>(&p)) return a->packetId;
    if (auto* a = std::get_if<mqtt::Pubrel>(&p)) return a->packetId;
    if (auto* a = std::get_if<mqtt::Pubcomp>(&p)) return a->packetId;
    if (auto* a = std::get_if<mqtt::Suback>(&p)) return a->packetId;
    if (auto* a = std::get_if<mqtt::Unsuback>(&p)) return a->packetId;
    if (auto* a = std::get_if<mqtt::Publish>(&p)) return a->packetId;
    return 0;
  }
};

// A PUBLISH with its strings copied out of the receive buffer.
struct OwnedPublish {
  std::string topic;
  std::string payload;
  std::uint8_t qos = 0;
  bool retain = false;
  bool dup = false;
  std::uint16_t packetId = 0;
};

class MqttTestClient {
 public:
  explicit MqttTestClient(std::uint16_t port) : socket_(port) {}

  bool sendRaw(std::string_view bytes) { return socket_.sendRaw(bytes); }

  // Sends CONNECT and returns the CONNACK (nullopt if the connection closed or timed out).
  std::optional<mqtt::Connack> connect(std::string_view clientId, bool cleanSession = true,
                                       std::uint16_t keepAlive = 60,
                                       const mqtt::Connect* extra = nullptr) {
    mqtt::Connect c = extra != nullptr ? *extra : mqtt::Connect{};
    c.clientId = clientId;
    c.cleanSession = cleanSession;
    c.keepAlive = keepAlive;
    level_ = c.protocolLevel;
    std::string out;
    mqtt::appendConnect(out, c);
    sendRaw(out);
    auto p = receive();
    if (!p || p->type != mqtt::PacketType::kConnack) return std::nullopt;
    return p->connack();
  }

  void publish(std::string_view topic, std::string_view payload, std::uint8_t qos = 0,
               bool retain = false, std::uint16_t packetId = 0, bool dup = false) {
    mqtt::Publish p;
    p.topic = topic;
    p.payload = payload;
    p.qos = qos;
    p.retain = retain;
    p.dup = dup;
    p.packetId = qos == 0 ? 0 : (packetId != 0 ? packetId : nextId());
    std::string out;
    mqtt::appendPublish(out, p);
    sendRaw(out);
  }

  // Publishes and completes the QoS handshake (PUBACK, or PUBREC/PUBREL/PUBCOMP). True on success.
  bool publishAcked(std::string_view topic, std::string_view payload, std::uint8_t qos,
                    bool retain = false) {
    const std::uint16_t id = nextId();
    publish(topic, payload, qos, retain, id);
    if (qos == 0) return true;
    auto ack = receiveType(qos == 1 ? mqtt::PacketType::kPuback : mqtt::PacketType::kPubrec);
    if (!ack || ack->packetId() != id) return false;
    if (qos == 1) return true;
    std::string out;
    mqtt::appendPubrel(out, id);
    sendRaw(out);
    auto comp = receiveType(mqtt::PacketType::kPubcomp);
    return comp && comp->packetId() == id;
  }

  // Subscribes and returns the SUBACK return codes (empty on failure).
  std::vector<std::uint8_t> subscribe(std::vector<mqtt::Subscription> entries) {
    std::string out;
    const std::uint16_t id = nextId();
    mqtt::appendSubscribe(out, id, entries);
    sendRaw(out);
    auto p = receiveType(mqtt::PacketType::kSuback);
    if (!p || p->packetId() != id) return {};
    return p->subackCodes();
  }
  std::vector<std::uint8_t> subscribe(std::string_view filter, std::uint8_t qos) {
    return subscribe({mqtt::Subscription{filter, qos}});
  }
  bool unsubscribe(std::vector<std::string_view> filters) {
    std::string out;
    const std::uint16_t id = nextId();
    mqtt::appendUnsubscribe(out, id, filters);
    sendRaw(out);
    auto p = receiveType(mqtt::PacketType::kUnsuback);
    return p && p->packetId() == id;
  }

  void ack(mqtt::PacketType type, std::uint16_t id) {
    std::string out;
    if (type == mqtt::PacketType::kPuback) mqtt::appendPuback(out, id);
    if (type == mqtt::PacketType::kPubrec) mqtt::appendPubrec(out, id);
    if (type == mqtt::PacketType::kPubrel) mqtt::appendPubrel(out, id);
    if (type == mqtt::PacketType::kPubcomp) mqtt::appendPubcomp(out, id);
    sendRaw(out);
  }
  // Receives one PUBLISH; with `acknowledge`, completes its QoS flow (QoS 1: PUBACK; QoS 2:
  // PUBREC, then PUBCOMP for the broker's PUBREL).
  std::optional<OwnedPublish> receivePublish(bool acknowledge = true,
                                             Millis timeout = kDefaultTimeout) {
    auto p = receiveType(mqtt::PacketType::kPublish, timeout);
    if (!p) return std::nullopt;
    const mqtt::Publish pub = p->publish();
    OwnedPublish out{std::string(pub.topic),
                     std::string(pub.payload),
                     pub.qos,
                     pub.retain,
                     pub.dup,
                     pub.packetId};
    if (acknowledge && pub.qos == 1) ack(mqtt::PacketType::kPuback, pub.packetId);
    if (acknowledge && pub.qos == 2) {
      ack(mqtt::PacketType::kPubrec, pub.packetId);
      auto rel = receiveType(mqtt::PacketType::kPubrel, timeout);
      if (!rel || rel->packetId() != pub.packetId) return std::nullopt;
      ack(mqtt::PacketType::kPubcomp, pub.packetId);
    }
    return out;
  }

  void disconnect() {
    std::string out;
    mqtt::appendDisconnect(out);
    sendRaw(out);
  }
  void ping() {
    std::string out;
    mqtt::appendPingreq(out);
    sendRaw(out);
  }

  // The next packet, whatever it is.
  std::optional<MqttReceived> receive(Millis timeout = kDefaultTimeout) {
    const std::int64_t deadline = nowMillis() + timeout.count();
    const mqtt::Decoder decoder({mqtt::kMaxPacketSize, mqtt::Role::kClient});
    for (;;) {
      const mqtt::DecodeResult r = decoder.decode(buffer_, level_);
      if (r.status == mqtt::DecodeStatus::kPacket) {
        MqttReceived out{buffer_.substr(0, r.consumed), mqtt::typeOf(r.packet), level_};
        buffer_.erase(0, r.consumed);
        return out;
      }
      if (r.status != mqtt::DecodeStatus::kNeedMore) {
        ADD_FAILURE() << "broker sent a malformed packet: " << mqtt::describe(r.status);
        return std::nullopt;
      }
      const std::int64_t left = deadline - nowMillis();
      if (left <= 0) return std::nullopt;
      pollfd p{socket_.fd(), POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left)) <= 0) return std::nullopt;
      char chunk[65536];
      const ssize_t n = ::read(socket_.fd(), chunk, sizeof chunk);
      if (n <= 0) {
        closed_ = true;
        return std::nullopt;
      }
      buffer_.append(chunk, static_cast<std::size_t>(n));
    }
  }
  // The next packet of `type`; fails the test on any other packet in between.
  std::optional<MqttReceived> receiveType(mqtt::PacketType type, Millis timeout = kDefaultTimeout) {
    auto p = receive(timeout);
    if (p && p->type != type) {
      ADD_FAILURE() << "expected " << mqtt::packetTypeName(type) << ", got "
                    << mqtt::packetTypeName(p->type);
      return std::nullopt;
    }
    return p;
  }
  // True when the broker closes the connection within `timeout` (packets before that are skipped).
  bool closedByBroker(Millis timeout = kDefaultTimeout) {
    const std::int64_t deadline = nowMillis() + timeout.count();
    while (!closed_ && nowMillis() < deadline) {
      if (!receive(Millis(deadline - nowMillis())) && !closed_) return false;
    }
    return closed_;
  }
  // True when no packet arrives within `quiet`.
  bool silentFor(Millis quiet) { return !receive(quiet).has_value() && !closed_; }
  void closeAbruptly() { socket_.close(); }
  bool closed() const { return closed_; }

 private:
  // The protocol level of the CONNECT sent (how the broker's packets are laid out).
  std::uint8_t level_ = mqtt::kProtocolLevel311;
  std::uint16_t nextId() { return nextId_ = nextId_ == 65535 ? 1 : nextId_ + 1; }

  LineSocket socket_;
  std::string buffer_;
  bool closed_ = false;
  std::uint16_t nextId_ = 0;
};

}  // namespace tern::test
