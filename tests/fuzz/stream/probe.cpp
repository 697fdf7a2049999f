// The liveness probes. See probe.hpp.
#include "probe.hpp"

#include <variant>

#include "tern/protocol/mqtt_decoder.hpp"
#include "tern/protocol/mqtt_encoder.hpp"

namespace tern::fuzz {

namespace mqtt = protocol::mqtt;

namespace {

std::uint64_t fnv1a(std::string_view text) noexcept {
  std::uint64_t hash = 1469598103934665603ULL;
  for (char ch : text) {
    hash ^= static_cast<unsigned char>(ch);
    hash *= 1099511628211ULL;
  }
  return hash;
}

std::string printable(std::string_view text) {
  std::string out;
  for (unsigned char ch : text.substr(0, 200)) {
    if (ch >= 0x20 && ch < 0x7f) {
      out += static_cast<char>(ch);
    } else {
      static constexpr char kHex[] = "0123456789abcdef";
      out += "\\x";
      out += kHex[ch >> 4];
      out += kHex[ch & 15];
    }
  }
  return out;
}

// Sends `request` and reads the next line; empty on success, else why not.
std::string exchange(ClientStream& stream, StreamLineReader& reader, const std::string& request,
                     std::string_view expectPrefix, Clock::time_point deadline,
                     std::string* reply = nullptr) {
  std::uint64_t sent = 0;
  if (!stream.send(request, deadline, sent)) {
    return "sending " + printable(request) + " failed";
  }
  std::string line;
  if (!reader.next(line, deadline)) {
    return std::string(reader.closed() ? "connection closed" : "timed out") + " after " +
           printable(request);
  }
  if (!line.starts_with(expectPrefix)) {
    return "sent " + printable(request) + ", got '" + printable(line) + "'";
  }
  if (reply != nullptr) *reply = line;
  return {};
}

// An MQTT connection's input, decoded one packet at a time.
class PacketReader {
 public:
  explicit PacketReader(ClientStream& stream) noexcept : stream_(stream) {}
  // The next packet's bytes, or false on timeout, EOF or a packet the decoder refuses.
  bool next(std::string& packet, Clock::time_point deadline) {
    const mqtt::Decoder decoder({mqtt::kMaxPacketSize, mqtt::Role::kClient});
    for (;;) {
      const mqtt::DecodeResult r = decoder.decode(buffer_);
      if (r.status == mqtt::DecodeStatus::kPacket) {
        packet.assign(buffer_, 0, r.consumed);
        buffer_.erase(0, r.consumed);
        return true;
      }
      if (r.status != mqtt::DecodeStatus::kNeedMore) {
        why_ = "undecodable packet from the broker: " + std::string(mqtt::describe(r.status));
        return false;
      }
      if (Clock::now() >= deadline) {
        why_ = "timed out";
        return false;
      }
      if (stream_.read(buffer_, deadline, 1 << 20) == ReadStatus::kClosed) {
        why_ = "connection closed";
        return false;
      }
    }
  }
  const std::string& why() const noexcept { return why_; }

 private:
  ClientStream& stream_;
  std::string buffer_;
  std::string why_;
};

mqtt::Packet decodeOne(const std::string& bytes) {
  return mqtt::Decoder({mqtt::kMaxPacketSize, mqtt::Role::kClient}).decode(bytes).packet;
}

}  // namespace

std::string Probe::homedId(const std::string& prefix, unsigned home) const {
  // Short enough for MQTT's 23-byte guarantee: "pm-<n>-<k>".
  const std::string base = prefix + "-" + std::to_string(number_);
  for (unsigned k = 0;; ++k) {
    std::string id = base + "-" + std::to_string(k);
    if (fnv1a(id) % workers_ == home || k > 1000) return id;
  }
}

std::string Probe::check() {
  ++number_;
  // Unique within this broker's life, which is all that can see it.
  const std::string unique = std::to_string(number_);
  for (unsigned home = 0; home < workers_; ++home) {
    const std::string id = homedId("probe", home);
    if (std::string why = checkLine(unique + "-" + std::to_string(home), id, false); !why.empty()) {
      return "line probe (" + id + ", worker " + std::to_string(home) + "): " + why;
    }
  }
  const auto home = static_cast<unsigned>(number_ % workers_);
  const std::string id = homedId("pm", home);
  if (std::string why = checkMqtt(unique, id, false); !why.empty()) {
    return "mqtt probe (" + id + ", worker " + std::to_string(home) + "): " + why;
  }
  if (number_ % 2 == 1 && endpoints_.lineTlsPort != 0 && endpoints_.tls) {
    const unsigned tlsHome = static_cast<unsigned>((number_ / 2) % workers_);
    const std::string tlsId = homedId("probe-tls", tlsHome);
    if (std::string why = checkLine(unique + "-tls", tlsId, true); !why.empty()) {
      return "line+tls probe (" + tlsId + ", worker " + std::to_string(tlsHome) + "): " + why;
    }
  } else if (number_ % 2 == 0 && endpoints_.mqttTlsPort != 0 && endpoints_.tlsCert) {
    const unsigned tlsHome = static_cast<unsigned>((number_ / 2) % workers_);
    const std::string tlsId = homedId("pt", tlsHome);
    if (std::string why = checkMqtt(unique + "t", tlsId, true); !why.empty()) {
      return "mqtt+tls probe (" + tlsId + ", worker " + std::to_string(tlsHome) + "): " + why;
    }
  }
  // WebSockets: plain after odd cases, TLS after even ones (or plain when there is no wss).
  const bool wss = number_ % 2 == 0 && endpoints_.mqttWssPort != 0 && endpoints_.tls;
  if (wss || endpoints_.mqttWsPort != 0) {
    const unsigned wsHome = static_cast<unsigned>((number_ / 2) % workers_);
    const std::string wsId = homedId("pw", wsHome);
    if (std::string why = checkMqtt(unique + "w", wsId, wss, true); !why.empty()) {
      return std::string(wss ? "mqtt+wss" : "mqtt+ws") + " probe (" + wsId + ", worker " +
             std::to_string(wsHome) + "): " + why;
    }
  }
  return {};
}

ClientStream Probe::connect(bool line, bool tls, bool ws, Clock::time_point deadline,
                            std::string& why) {
  const std::uint16_t port = ws    ? (tls ? endpoints_.mqttWssPort : endpoints_.mqttWsPort)
                             : tls ? (line ? endpoints_.lineTlsPort : endpoints_.mqttTlsPort)
                                   : (line ? endpoints_.linePort : endpoints_.mqttPort);
  Socket socket(connectLoopback(port, deadline));
  if (!socket.valid()) {
    why = std::string("cannot connect to the ") + (line ? "line" : "MQTT") + (ws ? "+WS" : "") +
          (tls ? "+TLS" : "") + " port";
    return {};
  }
  ClientStream stream;
  if (!tls) {
    stream = ClientStream(std::move(socket));
  } else {
    // The WebSocket client goes without a certificate; the mqtt+tls one shows it.
    stream = ClientStream(std::move(socket), line || ws ? *endpoints_.tls : *endpoints_.tlsCert,
                          deadline);
    if (!stream.handshake(deadline)) {
      why = std::string("TLS handshake ") +
            (stream.sessionOver() ? "failed: " + stream.error() : std::string("timed out"));
      return {};
    }
  }
  std::uint64_t sent = 0;
  if (ws && !stream.startWs(true, port, number_, deadline, sent)) {
    why = "sending the upgrade request failed";
    return {};
  }
  return stream;
}

std::string Probe::checkLine(const std::string& unique, const std::string& clientId, bool tls) {
  const Clock::time_point deadline = Clock::now() + deadline_;
  std::string failure;
  ClientStream request = connect(true, tls, false, deadline, failure);
  if (!request.valid()) return failure;
  StreamLineReader requestReader(request);
  std::string connack;
  if (std::string why = exchange(request, requestReader, "CONNECT@" + clientId + "\n",
                                 "CONNACK@" + clientId + "@", deadline, &connack);
      !why.empty()) {
    return "CONNECT: " + why;
  }
  const std::string token = connack.substr(connack.rfind('@') + 1);
  ClientStream push = connect(true, tls, false, deadline, failure);
  if (!push.valid()) return "push socket: " + failure;
  StreamLineReader pushReader(push);
  if (std::string why =
          exchange(push, pushReader, "ATTACH@" + token + "@push\n", "ATTACHACK@push", deadline);
      !why.empty()) {
    return "ATTACH: " + why;
  }
  const std::string topic = "probe/" + unique;
  if (std::string why =
          exchange(request, requestReader, "SUBSCRIBE@" + topic + "\n", "SUBACK", deadline);
      !why.empty()) {
    return "SUBSCRIBE: " + why;
  }
  if (std::string why =
          exchange(request, requestReader, "PUBLISH@" + topic + "@x\n", "PUBACK", deadline);
      !why.empty()) {
    return "PUBLISH: " + why;
  }
  const std::string expected = "MESSAGE@" + topic + "@x";
  for (std::string line;;) {
    if (!pushReader.next(line, deadline)) {
      return std::string("push socket ") + (pushReader.closed() ? "closed" : "timed out") +
             " before " + expected;
    }
    if (line == expected) break;
  }
  std::uint64_t sent = 0;
  request.send("DISCONNECT\n", deadline, sent);
  return {};
}

std::string Probe::checkMqtt(const std::string& unique, const std::string& clientId, bool tls,
                             bool ws) {
  const Clock::time_point deadline = Clock::now() + deadline_;
  std::string failure;
  ClientStream socket = connect(false, tls, ws, deadline, failure);
  if (!socket.valid()) return failure;
  PacketReader reader(socket);
  const std::string topic = "probe/m" + unique;
  std::string out;
  mqtt::Connect connect;
  connect.clientId = clientId;
  connect.keepAlive = 60;
  mqtt::appendConnect(out, connect);
  const mqtt::Subscription subscription{topic, 1};
  mqtt::appendSubscribe(out, 1, {&subscription, 1});
  mqtt::Publish publish;
  publish.qos = 1;
  publish.topic = topic;
  publish.packetId = 2;
  publish.payload = "x";
  mqtt::appendPublish(out, publish);
  std::uint64_t sent = 0;
  if (!socket.send(out, deadline, sent)) return "sending failed";

  bool connacked = false, subacked = false, pubacked = false, delivered = false;
  while (!(connacked && subacked && pubacked && delivered)) {
    std::string bytes;
    if (!reader.next(bytes, deadline)) {
      const ws::Decoder* d = socket.wsDecoder();
      const std::string wsWhy = d == nullptr        ? std::string()
                                : !d->why().empty() ? "; WebSocket: " + d->why()
                                : d->upgraded()     ? std::string()
                                                    : "; WebSocket: no 101 answer";
      return reader.why() + wsWhy + " (CONNACK " + (connacked ? "ok" : "missing") + ", SUBACK " +
             (subacked ? "ok" : "missing") + ", PUBACK " + (pubacked ? "ok" : "missing") +
             ", PUBLISH " + (delivered ? "ok" : "missing") + ")";
    }
    const mqtt::Packet packet = decodeOne(bytes);
    if (const auto* p = std::get_if<mqtt::Connack>(&packet)) {
      if (p->returnCode != mqtt::ConnectReturnCode::kAccepted) return "CONNACK refused";
      connacked = true;
    } else if (const auto* p = std::get_if<mqtt::Suback>(&packet)) {
      if (p->packetId != 1 || p->returnCodes.size() != 1 || p->returnCodes[0] != 1) {
        return "SUBACK does not grant QoS 1";
      }
      subacked = true;
    } else if (const auto* p = std::get_if<mqtt::Puback>(&packet)) {
      if (p->packetId == 2) pubacked = true;
    } else if (const auto* p = std::get_if<mqtt::Publish>(&packet)) {
      if (p->topic == topic && p->payload == "x") delivered = true;
      if (p->qos > 0) {
        std::string ack;
        if (p->qos == 1) mqtt::appendPuback(ack, p->packetId);
        if (p->qos == 2) mqtt::appendPubrec(ack, p->packetId);
        socket.send(ack, deadline, sent);
      }
    }
  }
  out.clear();
  mqtt::appendDisconnect(out);
  socket.send(out, deadline, sent);
  return {};
}

}  // namespace tern::fuzz
