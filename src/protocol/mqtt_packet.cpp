#include "tern/protocol/mqtt_packet.hpp"

namespace tern::protocol::mqtt {

std::string_view packetTypeName(PacketType type) noexcept {
  switch (type) {
    case PacketType::kConnect:
      return "CONNECT";
    case PacketType::kConnack:
      return "CONNACK";
    case PacketType::kPublish:
      return "PUBLISH";
    case PacketType::kPuback:
      return "PUBACK";
    case PacketType::kPubrec:
      return "PUBREC";
    case PacketType::kPubrel:
      return "PUBREL";
    case PacketType::kPubcomp:
      return "PUBCOMP";
    case PacketType::kSubscribe:
      return "SUBSCRIBE";
    case PacketType::kSuback:
      return "SUBACK";
    case PacketType::kUnsubscribe:
      return "UNSUBSCRIBE";
    case PacketType::kUnsuback:
      return "UNSUBACK";
    case PacketType::kPingreq:
      return "PINGREQ";
    case PacketType::kPingresp:
      return "PINGRESP";
    case PacketType::kDisconnect:
      return "DISCONNECT";
    case PacketType::kAuth:
      return "AUTH";
  }
  return "UNKNOWN";
}

bool clientIdAcceptable(const Connect& connect, std::size_t maxBytes) noexcept {
  // MQTT 3.1 allowed 1..23 characters and had no server-assigned identifiers.
  constexpr std::size_t kMaxBytes31 = 23;
  const bool is31 = connect.protocolLevel == kProtocolLevel31;
  // 5.0 assigns an id whatever Clean Start says (the session is new either way) [MQTT-3.1.3-6].
  if (connect.clientId.empty()) {
    return connect.protocolLevel == kProtocolLevel5 || (connect.cleanSession && !is31);
  }
  if (is31 && connect.clientId.size() > kMaxBytes31) return false;
  return connect.clientId.size() <= maxBytes;
}

}  // namespace tern::protocol::mqtt
