#include "tern/loadgen/mqtt_session.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "session_base.hpp"
#include "session_socket.hpp"
#include "tern/loadgen/packet_id_window.hpp"
#include "tern/protocol/mqtt_decoder.hpp"
#include "tern/protocol/mqtt_encoder.hpp"
#include "tern/protocol/mqtt_properties.hpp"

namespace tern::loadgen {

namespace {

namespace mqtt = protocol::mqtt;

constexpr unsigned kSlot = 0;
constexpr std::int64_t kSecond = 1'000'000'000;

// First bytes of the fixed-size packets loadgen writes (type << 4 | flags; PUBREL has flags 0010).
constexpr char kPuback = 0x40;
constexpr char kPubrec = 0x50;
constexpr char kPubrel = 0x62;
constexpr char kPubcomp = 0x70;

class MqttSession final : public SessionBase {
 public:
  MqttSession(SessionHost& host, const SessionConfig& config)
      : SessionBase(host, config),
        decoder_(
            mqtt::DecoderConfig{.maxPacketSize = kMaxFrameBytes, .role = mqtt::Role::kClient}) {}
  ~MqttSession() override { close(); }

  void start(std::int64_t nowNs) override {
    stage_ = Stage::kConnecting;
    lastOutputNs_ = nowNs;
    const std::string error = openSessionSocket(socket_, config_, host_, kSlot);
    if (!error.empty()) {
      fail(SessionFailure::kConnect, error);
      return;
    }
    mqtt::Connect connect;
    connect.cleanSession = !config_.persistent;
    // 5.0: Session Expiry Interval, so that the broker keeps a persistent session once the
    // connection ends (absent, it is 0: the session ends with the connection [MQTT-3.1.2-23]).
    std::string properties;
    if (config_.persistent && v5() && config_.sessionExpiryS != 0) {
      mqtt::PropertyWriter writer(properties);
      writer.fourByte(mqtt::PropertyId::kSessionExpiryInterval, config_.sessionExpiryS);
      writer.finish();
      // Properties::block is the entries without their length (one byte: the block is short).
      connect.properties.block = std::string_view(properties).substr(1);
    }
    connect.keepAlive = config_.keepAliveS;
    connect.clientId = config_.clientId;
    connect.protocolLevel = config_.mqttLevel;
    connect.usernameFlag = !config_.username.empty();
    connect.username = config_.username;
    connect.passwordFlag = config_.password.has_value();
    if (config_.password) connect.password = *config_.password;
    std::string packet;
    mqtt::appendConnect(packet, connect);
    queue(packet);
  }

  void subscribe(std::span<const std::string> filters, std::int64_t nowNs) override {
    if (!beginSubscribe(filters, nowNs)) return;
    // Ids 1..chunks: no publish is in flight before every SUBACK has arrived, so they cannot
    // collide with the publish window's ids.
    subscribeFilters_ = filters.size();
    const std::size_t chunks = (filters.size() + kFiltersPerSubscribe - 1) / kFiltersPerSubscribe;
    subackSeen_.assign(chunks, false);
    pendingSubacks_ = chunks;
    std::vector<mqtt::Subscription> entries;
    std::string packet;
    for (std::size_t chunk = 0; chunk < chunks; ++chunk) {
      entries.clear();
      const std::size_t end = std::min(filters.size(), (chunk + 1) * kFiltersPerSubscribe);
      for (std::size_t i = chunk * kFiltersPerSubscribe; i < end; ++i)
        entries.push_back({filters[i], config_.qos});
      if (v5()) {
        mqtt::appendSubscribe5(packet, static_cast<std::uint16_t>(chunk + 1), entries);
      } else {
        mqtt::appendSubscribe(packet, static_cast<std::uint16_t>(chunk + 1), entries);
      }
    }
    queue(packet);
  }

  void publish(std::string_view topic, std::string_view payload,
               std::int64_t intendedNs) noexcept override {
    if (stage_ != Stage::kReady) return;
    const std::uint8_t qos = config_.qos;
    std::uint16_t id = 0;
    if (qos > 0) {
      if (window_.full()) {
        // The host checks canPublish() first; a publish that cannot be numbered must not vanish.
        fail(SessionFailure::kProtocol, "every packet id is in flight");
        return;
      }
      id = window_.acquire(intendedNs, qos == 1 ? PacketIdWindow::Stage::kAwaitingAck
                                                : PacketIdWindow::Stage::kAwaitingRec);
    }
    // One reservation for the whole packet: fixed header, topic, packet id, (5.0: an empty
    // property block,) payload.
    const std::size_t remaining =
        2 + topic.size() + (qos > 0 ? 2 : 0) + (v5() ? 1 : 0) + payload.size();
    const std::size_t size = mqtt::fixedHeaderSize(remaining) + remaining;
    net::ByteBuffer& output = socket_.output(host_.loop());
    char* out = output.writable(size).data();
    *out++ = static_cast<char>(0x30 | (qos << 1));
    out += mqtt::encodeRemainingLength(remaining, out);
    *out++ = static_cast<char>(topic.size() >> 8);
    *out++ = static_cast<char>(topic.size() & 0xff);
    std::memcpy(out, topic.data(), topic.size());
    out += topic.size();
    if (qos > 0) {
      *out++ = static_cast<char>(id >> 8);
      *out++ = static_cast<char>(id & 0xff);
    }
    if (v5()) *out++ = 0;  // property length
    std::memcpy(out, payload.data(), payload.size());
    output.commit(size);
    socket_.flush(host_);
    wroteSinceTick_ = true;
  }

  void onConnected(unsigned slot, int error, std::int64_t /*nowNs*/) override {
    if (slot != kSlot || !socket_.connecting) return;
    if (error != 0) {
      fail(SessionFailure::kConnect, std::strerror(error));
      return;
    }
    socket_.connecting = false;  // CONNECT, queued meanwhile, leaves now
  }

  void onReceive(unsigned slot, std::span<const char> bytes, std::int64_t nowNs) override {
    if (slot != kSlot || !socket_.open()) return;
    const auto parse = [&](std::string_view data) { return parsePackets(data, nowNs); };
    switch (
        receiveSessionBytes(socket_, host_, std::string_view(bytes.data(), bytes.size()), parse)) {
      case ReceiveStatus::kOk:
      case ReceiveStatus::kStopped:
        return;
      case ReceiveStatus::kTooLong:
        fail(SessionFailure::kProtocol, "packet longer than 256 KiB");
        return;
      case ReceiveStatus::kTlsFailed:
        fail(SessionFailure::kConnect, "TLS: " + socket_.tls->error());
        return;
      case ReceiveStatus::kWsRefused:
        fail(SessionFailure::kHandshake, socket_.ws.problem);
        return;
      case ReceiveStatus::kWsClosed:
        fail(SessionFailure::kDisconnected, socket_.ws.problem);
        return;
      case ReceiveStatus::kWsProtocol:
        fail(SessionFailure::kProtocol, socket_.ws.problem);
        return;
    }
  }

  void onInputEnd(unsigned slot, int error, std::int64_t /*nowNs*/) override {
    if (slot != kSlot || !socket_.open()) return;
    fail(SessionFailure::kDisconnected,
         error != 0 ? std::strerror(error) : "the broker closed the connection");
  }

  void tick(std::int64_t nowNs) override {
    if (!socket_.open() || stage_ == Stage::kConnecting) return;
    if (wroteSinceTick_) {
      wroteSinceTick_ = false;
      lastOutputNs_ = nowNs;
      return;
    }
    // The broker closes a connection silent for 1.5 keep-alives [MQTT-3.1.2-24]; ping at half.
    if (config_.keepAliveS != 0 && nowNs - lastOutputNs_ >= config_.keepAliveS * kSecond / 2) {
      lastOutputNs_ = nowNs;
      const char ping[2] = {static_cast<char>(0xc0), 0};
      queue(std::string_view(ping, 2));
    }
  }

  std::size_t queuedBytes() const noexcept override { return socket_.unsentBytes(host_.loop()); }
  void sealOutput() noexcept override {
    if (!socket_.seal(host_.loop()))
      fail(SessionFailure::kProtocol, "TLS: " + socket_.tls->error());
  }
  bool canPublish() const noexcept override { return !window_.full(); }
  std::uint64_t unacknowledged() const noexcept override { return window_.inFlight(); }

  void close() noexcept override {
    socket_.close(host_.loop());
    if (stage_ != Stage::kFailed) stage_ = Stage::kClosed;
  }

 private:
  void queue(std::string_view bytes) {
    socket_.send(host_, bytes);
    wroteSinceTick_ = true;
  }

  // PUBACK, PUBREC, PUBREL or PUBCOMP for `id`. Never allocates once the output has grown.
  void queueAck(char first, std::uint16_t id) noexcept {
    const char ack[4] = {first, 2, static_cast<char>(id >> 8), static_cast<char>(id & 0xff)};
    queue(std::string_view(ack, sizeof ack));
  }

  // Every complete packet at the start of `data`; returns the bytes they took, or kParseStopped
  // when the session failed.
  std::size_t parsePackets(std::string_view data, std::int64_t nowNs) {
    std::size_t consumed = 0;
    while (consumed < data.size()) {
      const mqtt::DecodeResult result = decoder_.decode(data.substr(consumed), config_.mqttLevel);
      if (result.status == mqtt::DecodeStatus::kNeedMore) break;
      if (result.status != mqtt::DecodeStatus::kPacket) {
        fail(SessionFailure::kProtocol, mqtt::describe(result.status));
        return kParseStopped;
      }
      if (!onPacket(result.packet, nowNs)) return kParseStopped;
      consumed += result.consumed;
    }
    return consumed;
  }

  // Returns false when the session failed.
  bool onPacket(const mqtt::Packet& packet, std::int64_t nowNs) {
    switch (mqtt::typeOf(packet)) {
      case mqtt::PacketType::kPublish: {
        const auto& delivery = std::get<mqtt::Publish>(packet);
        host_.onMessage(config_.client, delivery.topic, delivery.payload, nowNs);
        if (delivery.qos == 1) queueAck(kPuback, delivery.packetId);
        if (delivery.qos == 2) queueAck(kPubrec, delivery.packetId);
        return true;
      }
      case mqtt::PacketType::kPuback: {
        const std::uint16_t id = std::get<mqtt::Puback>(packet).packetId;
        std::int64_t intendedNs = 0;
        if (window_.retire(id, PacketIdWindow::Stage::kAwaitingAck, intendedNs)) {
          host_.onPubAck(config_.client, intendedNs, nowNs);
        } else {
          unexpected("PUBACK", id);
        }
        return true;
      }
      case mqtt::PacketType::kPubrec: {
        const std::uint16_t id = std::get<mqtt::Pubrec>(packet).packetId;
        // A repeated PUBREC is answered again [MQTT-4.3.3-1 allows the broker to resend].
        if (window_.received(id) || window_.stage(id) == PacketIdWindow::Stage::kAwaitingComp) {
          queueAck(kPubrel, id);
        } else {
          unexpected("PUBREC", id);
        }
        return true;
      }
      case mqtt::PacketType::kPubcomp: {
        const std::uint16_t id = std::get<mqtt::Pubcomp>(packet).packetId;
        std::int64_t intendedNs = 0;
        if (window_.retire(id, PacketIdWindow::Stage::kAwaitingComp, intendedNs)) {
          host_.onPubAck(config_.client, intendedNs, nowNs);
        } else {
          unexpected("PUBCOMP", id);
        }
        return true;
      }
      case mqtt::PacketType::kPubrel:
        // The broker's half of a QoS 2 delivery: the message was reported at its PUBLISH.
        queueAck(kPubcomp, std::get<mqtt::Pubrel>(packet).packetId);
        return true;
      case mqtt::PacketType::kConnack:
        return onConnack(std::get<mqtt::Connack>(packet), nowNs);
      case mqtt::PacketType::kSuback:
        return onSuback(std::get<mqtt::Suback>(packet), nowNs);
      case mqtt::PacketType::kPingresp:
        return true;
      default:
        host_.onBrokerError(
            config_.client,
            fmt::format("unexpected {}", mqtt::packetTypeName(mqtt::typeOf(packet))));
        return true;
    }
  }

  bool onConnack(const mqtt::Connack& connack, std::int64_t nowNs) {
    if (stage_ != Stage::kConnecting) {
      host_.onBrokerError(config_.client, "unexpected CONNACK");
      return true;
    }
    const unsigned code =
        v5() ? static_cast<unsigned>(connack.reason) : static_cast<unsigned>(connack.returnCode);
    if (code != 0) {
      fail(SessionFailure::kHandshake, describeRefusal(code));
      return false;
    }
    stage_ = Stage::kConnected;
    host_.onConnected(config_.client, nowNs);
    return true;
  }

  bool onSuback(const mqtt::Suback& suback, std::int64_t nowNs) {
    const std::size_t chunk = suback.packetId - 1u;
    if (stage_ != Stage::kSubscribing || chunk >= subackSeen_.size() || subackSeen_[chunk]) {
      host_.onBrokerError(config_.client, fmt::format("unexpected SUBACK {}", suback.packetId));
      return true;
    }
    const std::size_t filters =
        std::min(kFiltersPerSubscribe, subscribeFilters_ - chunk * kFiltersPerSubscribe);
    const bool refused = std::find(suback.returnCodes.begin(), suback.returnCodes.end(),
                                   mqtt::kSubackFailure) != suback.returnCodes.end();
    if (suback.returnCodes.size() != filters || refused) {
      // A refused subscription would make every later count wrong: the session does not count.
      fail(SessionFailure::kHandshake, refused ? "SUBACK refused a filter"
                                               : fmt::format("SUBACK with {} codes for {} filters",
                                                             suback.returnCodes.size(), filters));
      return false;
    }
    subackSeen_[chunk] = true;
    if (--pendingSubacks_ == 0) {
      stage_ = Stage::kReady;
      host_.onSubscribed(config_.client, nowNs);
    }
    return true;
  }

  // "CONNACK return code 5 (not authorized: ...)": what a refused CONNECT is reported as.
  std::string describeRefusal(unsigned code) const {
    std::string_view why;
    if (v5()) {
      why = mqtt::describe(static_cast<mqtt::ReasonCode>(code));
    } else if (code == 4) {
      why = "bad user name or password";
    } else if (code == 5) {
      why = "not authorized";
    }
    std::string text = v5() ? fmt::format("CONNACK reason code {:#04x}", code)
                            : fmt::format("CONNACK return code {}", code);
    if (!why.empty()) text += fmt::format(" ({})", why);
    if (code == 4 || code == 5 || code == 0x86 || code == 0x87) {
      text += config_.username.empty() ? ": the broker wants credentials (--username, --password)"
                                       : ": check --username and --password";
    }
    return text;
  }

  void unexpected(std::string_view what, std::uint16_t id) {
    host_.onBrokerError(config_.client,
                        fmt::format("{} for packet id {}, not in flight", what, id));
  }

  bool v5() const noexcept { return config_.mqttLevel == mqtt::kProtocolLevel5; }
  const mqtt::Decoder decoder_;
  SessionSocket socket_;
  PacketIdWindow window_;
  std::size_t subscribeFilters_ = 0;
  std::size_t pendingSubacks_ = 0;
  std::vector<bool> subackSeen_;
  bool wroteSinceTick_ = false;
  std::int64_t lastOutputNs_ = 0;
};

}  // namespace

std::unique_ptr<Session> makeMqttSession(SessionHost& host, const SessionConfig& config) {
  return std::make_unique<MqttSession>(host, config);
}

}  // namespace tern::loadgen
