#include "tern/protocol/mqtt_decoder.hpp"

#include "mqtt_reader.hpp"

namespace tern::protocol::mqtt {
namespace {

using detail::checkString;
using detail::checkTopicName;
using detail::Reader;
using detail::readPacketId;

constexpr std::uint8_t kTypeConnect = 1, kTypeConnack = 2, kTypePublish = 3, kTypePuback = 4,
                       kTypePubrec = 5, kTypePubrel = 6, kTypePubcomp = 7, kTypeSubscribe = 8,
                       kTypeSuback = 9, kTypeUnsubscribe = 10, kTypeUnsuback = 11,
                       kTypePingreq = 12, kTypePingresp = 13, kTypeDisconnect = 14;

// Flag nibble each type must carry (table 2.2); PUBLISH's flags are checked separately.
constexpr std::uint8_t kRequiredFlags[16] = {0,      0, 0,      0, 0, 0, 0b0010, 0,
                                             0b0010, 0, 0b0010, 0, 0, 0, 0,      0};

// Remaining length of the packets whose size is fixed, or -1 when it varies.
constexpr int kFixedRemaining[16] = {-1, -1, 2, -1, 2, 2, 2, 2, -1, -1, -1, 2, 0, 0, 0, -1};
constexpr int kFixedRemaining5[16] = {-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, 0, 0, -1, -1};

// Bit t set: a packet of type t may arrive at that side.
constexpr std::uint16_t bit(std::uint8_t type) {
  return static_cast<std::uint16_t>(1u << type);
}
constexpr std::uint8_t kTypeAuth = 15;  // 5.0 only
constexpr std::uint16_t kBothWays = bit(kTypePublish) | bit(kTypePuback) | bit(kTypePubrec) |
                                    bit(kTypePubrel) | bit(kTypePubcomp) | bit(kTypeAuth);
constexpr std::uint16_t kToServer = kBothWays | bit(kTypeConnect) | bit(kTypeSubscribe) |
                                    bit(kTypeUnsubscribe) | bit(kTypePingreq) |
                                    bit(kTypeDisconnect);
constexpr std::uint16_t kToClient =
    kBothWays | bit(kTypeConnack) | bit(kTypeSuback) | bit(kTypeUnsuback) | bit(kTypePingresp);

bool accepts(Role role, std::uint8_t type, bool v5) noexcept {
  switch (role) {
    case Role::kServer:
      return (kToServer & bit(type)) != 0;
    case Role::kClient:  // a 5.0 server may send DISCONNECT too
      return ((kToClient | (v5 ? bit(kTypeDisconnect) : 0)) & bit(type)) != 0;
    case Role::kAny:
      return true;
  }
  return false;
}

DecodeStatus decodeConnect(std::string_view body, Packet& packet,
                           std::string_view& detail) noexcept {
  Reader reader(body);
  Connect c;
  if (!reader.lengthPrefixed(c.protocolName)) return DecodeStatus::kTruncated;
  const bool is311 = c.protocolName == kProtocolName311;
  if (!is311 && c.protocolName != kProtocolName31) return DecodeStatus::kInvalidProtocolName;
  if (!reader.u8(c.protocolLevel)) return DecodeStatus::kTruncated;
  // Checked before the rest: a client of another version may lay out the rest differently, and
  // it is owed CONNACK 0x01 rather than a bare close.
  const bool v5 = is311 && c.protocolLevel == kProtocolLevel5;
  if (!v5 && c.protocolLevel != (is311 ? kProtocolLevel311 : kProtocolLevel31)) {
    return DecodeStatus::kUnacceptableProtocolLevel;
  }
  std::uint8_t flags = 0;
  if (!reader.u8(flags)) return DecodeStatus::kTruncated;
  if ((flags & 0x01) != 0) return DecodeStatus::kConnectReservedFlag;
  c.cleanSession = (flags & 0x02) != 0;
  c.willFlag = (flags & 0x04) != 0;
  c.willQos = static_cast<std::uint8_t>((flags >> 3) & 0x03);
  c.willRetain = (flags & 0x20) != 0;
  c.passwordFlag = (flags & 0x40) != 0;
  c.usernameFlag = (flags & 0x80) != 0;
  if (c.willQos == 3) return DecodeStatus::kInvalidWillQos;
  if (!c.willFlag && (c.willQos != 0 || c.willRetain)) return DecodeStatus::kWillFlagsWithoutWill;
  // 5.0 allows a password without a user name (3.1.2.9).
  if (c.passwordFlag && !c.usernameFlag && !v5) return DecodeStatus::kPasswordWithoutUsername;
  if (!reader.u16(c.keepAlive)) return DecodeStatus::kTruncated;
  if (v5) TERN_MQTT_CHECK(reader.properties(PropertyContext::kConnect, c.properties, detail));

  if (!reader.lengthPrefixed(c.clientId)) return DecodeStatus::kTruncated;
  TERN_MQTT_CHECK(checkString(c.clientId));
  if (c.willFlag) {
    if (v5) TERN_MQTT_CHECK(reader.properties(PropertyContext::kWill, c.willProperties, detail));
    if (!reader.lengthPrefixed(c.willTopic)) return DecodeStatus::kTruncated;
    TERN_MQTT_CHECK(checkTopicName(c.willTopic));
    if (!reader.lengthPrefixed(c.willPayload)) return DecodeStatus::kTruncated;
  }
  if (c.usernameFlag) {
    if (!reader.lengthPrefixed(c.username)) return DecodeStatus::kTruncated;
    TERN_MQTT_CHECK(checkString(c.username));
  }
  if (c.passwordFlag && !reader.lengthPrefixed(c.password)) return DecodeStatus::kTruncated;
  if (reader.left() != 0) return DecodeStatus::kTrailingBytes;
  packet = c;
  return DecodeStatus::kPacket;
}

DecodeStatus decodeConnack(std::string_view body, Packet& packet) noexcept {
  Reader reader(body);  // the length (2) was checked with the fixed header
  std::uint8_t flags = 0, code = 0;
  reader.u8(flags);
  reader.u8(code);
  if ((flags & 0xFE) != 0) return DecodeStatus::kInvalidConnackFlags;
  if (code > static_cast<std::uint8_t>(ConnectReturnCode::kNotAuthorized)) {
    return DecodeStatus::kInvalidReturnCode;
  }
  const bool sessionPresent = (flags & 0x01) != 0;
  // [MQTT-3.2.2-4]: a refusal never claims a session.
  if (sessionPresent && code != 0) return DecodeStatus::kInvalidConnackFlags;
  packet = Connack{sessionPresent, static_cast<ConnectReturnCode>(code)};
  return DecodeStatus::kPacket;
}

DecodeStatus decodePublish(std::uint8_t flags, std::string_view body, Packet& packet) noexcept {
  Reader reader(body);
  Publish p;
  p.dup = (flags & 0x08) != 0;
  p.qos = static_cast<std::uint8_t>((flags >> 1) & 0x03);
  p.retain = (flags & 0x01) != 0;
  if (!reader.lengthPrefixed(p.topic)) return DecodeStatus::kTruncated;
  TERN_MQTT_CHECK(checkTopicName(p.topic));
  if (p.qos > 0) TERN_MQTT_CHECK(readPacketId(reader, p.packetId));
  p.payload = reader.rest();
  packet = p;
  return DecodeStatus::kPacket;
}

template <typename Ack>
DecodeStatus decodeAck(std::string_view body, Packet& packet) noexcept {
  Reader reader(body);  // the length (2) was checked with the fixed header
  Ack ack;
  TERN_MQTT_CHECK(readPacketId(reader, ack.packetId));
  packet = ack;
  return DecodeStatus::kPacket;
}

DecodeStatus decodeSubscribe(std::string_view body, Packet& packet) noexcept {
  Reader reader(body);
  Subscribe s;
  TERN_MQTT_CHECK(readPacketId(reader, s.packetId));
  TERN_MQTT_CHECK(detail::readSubscriptions(reader, body, s.subscriptions, [](std::uint8_t o) {
    if ((o & 0xFC) != 0) return DecodeStatus::kSubscriptionReservedBits;
    if ((o & 0x03) == 3) return DecodeStatus::kInvalidRequestedQos;
    return DecodeStatus::kPacket;
  }));
  packet = s;
  return DecodeStatus::kPacket;
}

DecodeStatus decodeSuback(std::string_view body, Packet& packet) noexcept {
  Reader reader(body);
  Suback s;
  TERN_MQTT_CHECK(readPacketId(reader, s.packetId));
  const std::string_view codes = reader.rest();
  if (codes.empty()) return DecodeStatus::kEmptyPayload;
  for (const char c : codes) {
    const auto code = static_cast<std::uint8_t>(c);
    if (code > 2 && code != kSubackFailure) return DecodeStatus::kInvalidReturnCode;
  }
  // Reading char storage through unsigned char is allowed aliasing.
  s.returnCodes = {reinterpret_cast<const std::uint8_t*>(codes.data()), codes.size()};
  packet = s;
  return DecodeStatus::kPacket;
}

DecodeStatus decodeUnsubscribe(std::string_view body, Packet& packet) noexcept {
  Reader reader(body);
  Unsubscribe u;
  TERN_MQTT_CHECK(readPacketId(reader, u.packetId));
  TERN_MQTT_CHECK(detail::readFilters(reader, body, u.filters));
  packet = u;
  return DecodeStatus::kPacket;
}

DecodeStatus decodeBody(std::uint8_t type, std::uint8_t flags, std::string_view body,
                        Packet& packet, std::string_view& detail) noexcept {
  switch (type) {
    case kTypeConnect:
      return decodeConnect(body, packet, detail);
    case kTypeConnack:
      return decodeConnack(body, packet);
    case kTypePublish:
      return decodePublish(flags, body, packet);
    case kTypePuback:
      return decodeAck<Puback>(body, packet);
    case kTypePubrec:
      return decodeAck<Pubrec>(body, packet);
    case kTypePubrel:
      return decodeAck<Pubrel>(body, packet);
    case kTypePubcomp:
      return decodeAck<Pubcomp>(body, packet);
    case kTypeSubscribe:
      return decodeSubscribe(body, packet);
    case kTypeSuback:
      return decodeSuback(body, packet);
    case kTypeUnsubscribe:
      return decodeUnsubscribe(body, packet);
    case kTypeUnsuback:
      return decodeAck<Unsuback>(body, packet);
    case kTypePingreq:
      packet = Pingreq{};
      return DecodeStatus::kPacket;
    case kTypePingresp:
      packet = Pingresp{};
      return DecodeStatus::kPacket;
    case kTypeDisconnect:
      packet = Disconnect{};
      return DecodeStatus::kPacket;
    default:
      return DecodeStatus::kReservedPacketType;
  }
}

DecodeResult fail(DecodeStatus status, std::size_t packetSize = 0) noexcept {
  DecodeResult result;
  result.status = status;
  result.packetSize = packetSize;
  return result;
}

}  // namespace

std::string_view describe(DecodeStatus status) noexcept {
  switch (status) {
    case DecodeStatus::kPacket:
      return "packet";
    case DecodeStatus::kNeedMore:
      return "incomplete packet";
    case DecodeStatus::kMalformedRemainingLength:
      return "remaining length longer than 4 bytes";
    case DecodeStatus::kPacketTooLarge:
      return "packet larger than the maximum packet size";
    case DecodeStatus::kReservedPacketType:
      return "reserved packet type";
    case DecodeStatus::kUnexpectedPacketType:
      return "packet type not sent in this direction";
    case DecodeStatus::kInvalidFixedHeaderFlags:
      return "invalid fixed header flags";
    case DecodeStatus::kInvalidPublishQos:
      return "PUBLISH with QoS 3";
    case DecodeStatus::kDupWithQos0:
      return "PUBLISH with QoS 0 and DUP set";
    case DecodeStatus::kTruncated:
      return "field runs past the end of the packet";
    case DecodeStatus::kTrailingBytes:
      return "bytes left after the last field of the packet";
    case DecodeStatus::kInvalidUtf8:
      return "string is not well-formed UTF-8";
    case DecodeStatus::kNulInString:
      return "string contains U+0000";
    case DecodeStatus::kEmptyTopicName:
      return "empty topic name";
    case DecodeStatus::kWildcardInTopicName:
      return "wildcard in a topic name";
    case DecodeStatus::kInvalidProtocolName:
      return "protocol name is neither MQTT nor MQIsdp";
    case DecodeStatus::kUnacceptableProtocolLevel:
      return "unacceptable protocol level";
    case DecodeStatus::kConnectReservedFlag:
      return "CONNECT reserved flag set";
    case DecodeStatus::kInvalidWillQos:
      return "will QoS 3";
    case DecodeStatus::kWillFlagsWithoutWill:
      return "will QoS or retain set without the will flag";
    case DecodeStatus::kPasswordWithoutUsername:
      return "password flag set without the username flag";
    case DecodeStatus::kZeroPacketId:
      return "packet identifier 0";
    case DecodeStatus::kEmptyPayload:
      return "packet has no entries";
    case DecodeStatus::kInvalidRequestedQos:
      return "requested QoS 3";
    case DecodeStatus::kSubscriptionReservedBits:
      return "subscription options reserved bits set";
    case DecodeStatus::kInvalidConnackFlags:
      return "invalid CONNACK acknowledge flags";
    case DecodeStatus::kInvalidReturnCode:
      return "reserved return code";
    case DecodeStatus::kMalformedProperties:
      return "malformed properties";
    case DecodeStatus::kPropertyProtocolError:
      return "property repeated or with a forbidden value";
    case DecodeStatus::kInvalidReasonCode:
      return "reason code not allowed in this packet";
    case DecodeStatus::kInvalidRetainHandling:
      return "retain handling 3";
  }
  return "unknown decode status";
}

ReasonCode disconnectReason(DecodeStatus status) noexcept {
  switch (status) {
    case DecodeStatus::kPacketTooLarge:
      return ReasonCode::kPacketTooLarge;
    case DecodeStatus::kUnexpectedPacketType:
    case DecodeStatus::kPropertyProtocolError:
    case DecodeStatus::kInvalidRetainHandling:
    case DecodeStatus::kEmptyTopicName:  // 5.0: no topic and no Topic Alias [MQTT-3.3.2-8]
      return ReasonCode::kProtocolError;
    default:
      return ReasonCode::kMalformedPacket;
  }
}

DecodeResult Decoder::decode(std::string_view buffer, std::uint8_t level) const noexcept {
  if (buffer.empty()) return fail(DecodeStatus::kNeedMore);
  const bool v5 = level == kProtocolLevel5;

  // Everything the first byte says is checked before waiting for more.
  const auto first = static_cast<std::uint8_t>(buffer[0]);
  const auto type = static_cast<std::uint8_t>(first >> 4);
  const auto flags = static_cast<std::uint8_t>(first & 0x0F);
  if (type == 0 || (type == 15 && !v5)) return fail(DecodeStatus::kReservedPacketType);
  if (!accepts(config_.role, type, v5)) return fail(DecodeStatus::kUnexpectedPacketType);
  if (type == kTypePublish) {
    const auto qos = (flags >> 1) & 0x03;
    if (qos == 3) return fail(DecodeStatus::kInvalidPublishQos);
    if (qos == 0 && (flags & 0x08) != 0) return fail(DecodeStatus::kDupWithQos0);
  } else if (flags != kRequiredFlags[type]) {
    return fail(DecodeStatus::kInvalidFixedHeaderFlags);
  }

  // Remaining length: up to four 7-bit groups, least significant first. Non-minimal encodings
  // (e.g. 0x80 0x00) are accepted: 3.1.1 does not forbid them, and neither does 5.0 for the
  // remaining length (1.5.5 requires the minimal form of Variable Byte Integers in the body).
  std::size_t remaining = 0;
  std::size_t at = 1;
  for (unsigned shift = 0;; shift += 7) {
    if (at >= buffer.size()) return fail(DecodeStatus::kNeedMore);
    const auto byte = static_cast<std::uint8_t>(buffer[at++]);
    remaining |= static_cast<std::size_t>(byte & 0x7F) << shift;
    if ((byte & 0x80) == 0) break;
    if (at == kMaxFixedHeaderSize) return fail(DecodeStatus::kMalformedRemainingLength);
  }
  const std::size_t packetSize = at + remaining;
  if (packetSize > config_.maxPacketSize) return fail(DecodeStatus::kPacketTooLarge, packetSize);
  // 5.0 acknowledgements and DISCONNECT may carry a reason code and properties.
  if (const int fixed = v5 ? kFixedRemaining5[type] : kFixedRemaining[type]; fixed >= 0) {
    if (remaining < static_cast<std::size_t>(fixed)) {
      return fail(DecodeStatus::kTruncated, packetSize);
    }
    if (remaining > static_cast<std::size_t>(fixed)) {
      return fail(DecodeStatus::kTrailingBytes, packetSize);
    }
  }
  if (buffer.size() < packetSize) return fail(DecodeStatus::kNeedMore, packetSize);

  DecodeResult result;
  result.packetSize = packetSize;
  const std::string_view body = buffer.substr(at, remaining);
  result.status =
      v5 && type != kTypeConnect
          ? detail::decodeBody5(type, flags, body,
                                config_.role == Role::kServer ? PropertyContext::kPublish
                                                              : PropertyContext::kPublishToClient,
                                result.packet, result.detail)
          : decodeBody(type, flags, body, result.packet, result.detail);
  if (result.status == DecodeStatus::kPacket) {
    result.consumed = packetSize;
  } else {
    result.packet = std::monostate{};
    if (result.status != DecodeStatus::kMalformedProperties &&
        result.status != DecodeStatus::kPropertyProtocolError) {
      result.detail = {};
    }
  }
  return result;
}

}  // namespace tern::protocol::mqtt
