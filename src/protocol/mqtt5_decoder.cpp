// The bodies of MQTT 5.0 packets (OASIS MQTT Version 5.0, chapter 3), CONNECT excepted (its
// layout is chosen by its own protocol level: mqtt_decoder.cpp). The fixed header, the packet
// size and the flags were checked by Decoder::decode.
#include <initializer_list>

#include "mqtt_reader.hpp"

namespace tern::protocol::mqtt::detail {
namespace {

// Whether `code` is a reason code `type` may carry (the tables of 3.2.2.2, 3.4.2.1, 3.5.2.1,
// 3.6.2.1, 3.7.2.1, 3.9.3, 3.11.3, 3.14.2.1 and 3.15.2.1).
bool reasonAllowed(PacketType type, std::uint8_t code) noexcept {
  const auto in = [code](std::initializer_list<std::uint8_t> codes) {
    for (const std::uint8_t c : codes)
      if (c == code) return true;
    return false;
  };
  switch (type) {
    case PacketType::kConnack:
      return in({0x00, 0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89,
                 0x8A, 0x8C, 0x90, 0x95, 0x97, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9F});
    case PacketType::kPuback:
    case PacketType::kPubrec:
      return in({0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99});
    case PacketType::kPubrel:
    case PacketType::kPubcomp:
      return in({0x00, 0x92});
    case PacketType::kSuback:
      return in({0x00, 0x01, 0x02, 0x80, 0x83, 0x87, 0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2});
    case PacketType::kUnsuback:
      return in({0x00, 0x11, 0x80, 0x83, 0x87, 0x8F, 0x91});
    case PacketType::kDisconnect:
      return in({0x00, 0x04, 0x80, 0x81, 0x82, 0x83, 0x87, 0x89, 0x8B, 0x8D,
                 0x8E, 0x8F, 0x90, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99,
                 0x9A, 0x9B, 0x9C, 0x9D, 0x9E, 0x9F, 0xA0, 0xA1, 0xA2});
    case PacketType::kAuth:
      return in({0x00, 0x18, 0x19});
    default:
      return false;
  }
}

DecodeStatus readReason(Reader& reader, PacketType type, ReasonCode& reason) noexcept {
  std::uint8_t code = 0;
  if (!reader.u8(code)) return DecodeStatus::kTruncated;
  if (!reasonAllowed(type, code)) return DecodeStatus::kInvalidReasonCode;
  reason = static_cast<ReasonCode>(code);
  return DecodeStatus::kPacket;
}

DecodeStatus decodeConnack(std::string_view body, Packet& packet,
                           std::string_view& detail) noexcept {
  Reader reader(body);
  Connack c;
  std::uint8_t flags = 0;
  if (!reader.u8(flags)) return DecodeStatus::kTruncated;
  if ((flags & 0xFE) != 0) return DecodeStatus::kInvalidConnackFlags;
  c.sessionPresent = (flags & 0x01) != 0;
  TERN_MQTT_CHECK(readReason(reader, PacketType::kConnack, c.reason));
  // A refusal never claims a session [MQTT-3.2.2-6].
  if (c.sessionPresent && isFailure(c.reason)) return DecodeStatus::kInvalidConnackFlags;
  TERN_MQTT_CHECK(reader.properties(PropertyContext::kConnack, c.properties, detail));
  if (reader.left() != 0) return DecodeStatus::kTrailingBytes;
  packet = c;
  return DecodeStatus::kPacket;
}

DecodeStatus decodePublish(std::uint8_t flags, std::string_view body, PropertyContext context,
                           Packet& packet, std::string_view& detail) noexcept {
  Reader reader(body);
  Publish p;
  p.dup = (flags & 0x08) != 0;
  p.qos = static_cast<std::uint8_t>((flags >> 1) & 0x03);
  p.retain = (flags & 0x01) != 0;
  if (!reader.lengthPrefixed(p.topic)) return DecodeStatus::kTruncated;
  if (p.qos > 0) TERN_MQTT_CHECK(readPacketId(reader, p.packetId));
  TERN_MQTT_CHECK(reader.properties(context, p.properties, detail));
  // An empty topic is allowed when a Topic Alias names it [MQTT-3.3.2-8]; whether the alias is
  // known is the receiver's to decide.
  if (!p.topic.empty() || !p.properties.has(PropertyId::kTopicAlias)) {
    TERN_MQTT_CHECK(checkTopicName(p.topic));
  }
  p.payload = reader.rest();
  packet = p;
  return DecodeStatus::kPacket;
}

// PUBACK, PUBREC, PUBREL, PUBCOMP: packet id, then a reason code and properties, each of which may
// be left out at the end (3.4.2.1: a remaining length of 2 means Success and no properties).
template <typename Ack>
DecodeStatus decodeAck(PacketType type, PropertyContext context, std::string_view body,
                       Packet& packet, std::string_view& detail) noexcept {
  Reader reader(body);
  Ack ack;
  TERN_MQTT_CHECK(readPacketId(reader, ack.packetId));
  if (reader.left() != 0) TERN_MQTT_CHECK(readReason(reader, type, ack.reason));
  if (reader.left() != 0) TERN_MQTT_CHECK(reader.properties(context, ack.properties, detail));
  if (reader.left() != 0) return DecodeStatus::kTrailingBytes;
  packet = ack;
  return DecodeStatus::kPacket;
}

DecodeStatus decodeSubscribe(std::string_view body, Packet& packet,
                             std::string_view& detail) noexcept {
  Reader reader(body);
  Subscribe s;
  TERN_MQTT_CHECK(readPacketId(reader, s.packetId));
  TERN_MQTT_CHECK(reader.properties(PropertyContext::kSubscribe, s.properties, detail));
  TERN_MQTT_CHECK(readSubscriptions(reader, body, s.subscriptions, [](std::uint8_t o) {
    if ((o & 0xC0) != 0) return DecodeStatus::kSubscriptionReservedBits;  // [MQTT-3.8.3-5]
    if ((o & 0x03) == 3) return DecodeStatus::kInvalidRequestedQos;
    if ((o >> 4 & 0x03) == 3) return DecodeStatus::kInvalidRetainHandling;
    return DecodeStatus::kPacket;
  }));
  packet = s;
  return DecodeStatus::kPacket;
}

// SUBACK and UNSUBACK: packet id, properties, one reason code per filter.
DecodeStatus decodeCodes(PacketType type, PropertyContext context, std::string_view body,
                         std::uint16_t& packetId, Properties& properties,
                         std::span<const std::uint8_t>& codes, std::string_view& detail) noexcept {
  Reader reader(body);
  TERN_MQTT_CHECK(readPacketId(reader, packetId));
  TERN_MQTT_CHECK(reader.properties(context, properties, detail));
  const std::string_view rest = reader.rest();
  if (rest.empty()) return DecodeStatus::kEmptyPayload;
  for (const char c : rest)
    if (!reasonAllowed(type, static_cast<std::uint8_t>(c))) return DecodeStatus::kInvalidReasonCode;
  // Reading char storage through unsigned char is allowed aliasing.
  codes = {reinterpret_cast<const std::uint8_t*>(rest.data()), rest.size()};
  return DecodeStatus::kPacket;
}

DecodeStatus decodeUnsubscribe(std::string_view body, Packet& packet,
                               std::string_view& detail) noexcept {
  Reader reader(body);
  Unsubscribe u;
  TERN_MQTT_CHECK(readPacketId(reader, u.packetId));
  TERN_MQTT_CHECK(reader.properties(PropertyContext::kUnsubscribe, u.properties, detail));
  TERN_MQTT_CHECK(readFilters(reader, body, u.filters));
  packet = u;
  return DecodeStatus::kPacket;
}

// DISCONNECT and AUTH: a remaining length of 0 means Success (Normal disconnection) and no
// properties; of 1, a reason code and no properties.
template <typename P>
DecodeStatus decodeReasonOnly(PacketType type, PropertyContext context, std::string_view body,
                              Packet& packet, std::string_view& detail) noexcept {
  Reader reader(body);
  P p;
  if (reader.left() != 0) TERN_MQTT_CHECK(readReason(reader, type, p.reason));
  if (reader.left() != 0) TERN_MQTT_CHECK(reader.properties(context, p.properties, detail));
  if (reader.left() != 0) return DecodeStatus::kTrailingBytes;
  packet = p;
  return DecodeStatus::kPacket;
}

}  // namespace

DecodeStatus decodeBody5(std::uint8_t type, std::uint8_t flags, std::string_view body,
                         PropertyContext publishContext, Packet& packet,
                         std::string_view& detail) noexcept {
  using C = PropertyContext;
  switch (static_cast<PacketType>(type)) {
    case PacketType::kConnack:
      return decodeConnack(body, packet, detail);
    case PacketType::kPublish:
      return decodePublish(flags, body, publishContext, packet, detail);
    case PacketType::kPuback:
      return decodeAck<Puback>(PacketType::kPuback, C::kPuback, body, packet, detail);
    case PacketType::kPubrec:
      return decodeAck<Pubrec>(PacketType::kPubrec, C::kPubrec, body, packet, detail);
    case PacketType::kPubrel:
      return decodeAck<Pubrel>(PacketType::kPubrel, C::kPubrel, body, packet, detail);
    case PacketType::kPubcomp:
      return decodeAck<Pubcomp>(PacketType::kPubcomp, C::kPubcomp, body, packet, detail);
    case PacketType::kSubscribe:
      return decodeSubscribe(body, packet, detail);
    case PacketType::kSuback: {
      Suback s;
      TERN_MQTT_CHECK(decodeCodes(PacketType::kSuback, C::kSuback, body, s.packetId, s.properties,
                                  s.returnCodes, detail));
      packet = s;
      return DecodeStatus::kPacket;
    }
    case PacketType::kUnsubscribe:
      return decodeUnsubscribe(body, packet, detail);
    case PacketType::kUnsuback: {
      Unsuback u;
      TERN_MQTT_CHECK(decodeCodes(PacketType::kUnsuback, C::kUnsuback, body, u.packetId,
                                  u.properties, u.reasonCodes, detail));
      packet = u;
      return DecodeStatus::kPacket;
    }
    case PacketType::kPingreq:
      packet = Pingreq{};
      return DecodeStatus::kPacket;
    case PacketType::kPingresp:
      packet = Pingresp{};
      return DecodeStatus::kPacket;
    case PacketType::kDisconnect:
      return decodeReasonOnly<Disconnect>(PacketType::kDisconnect, C::kDisconnect, body, packet,
                                          detail);
    case PacketType::kAuth:
      return decodeReasonOnly<Auth>(PacketType::kAuth, C::kAuth, body, packet, detail);
    default:
      return DecodeStatus::kReservedPacketType;
  }
}

}  // namespace tern::protocol::mqtt::detail
