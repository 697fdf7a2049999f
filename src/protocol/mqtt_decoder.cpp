#include "tern/protocol/mqtt_decoder.hpp"

#include <cstring>

#include "tern/common/utf8.hpp"
#include "tern/routing/topic.hpp"

namespace tern::protocol::mqtt {
namespace {

constexpr std::uint8_t kTypeConnect = 1, kTypeConnack = 2, kTypePublish = 3, kTypePuback = 4,
                       kTypePubrec = 5, kTypePubrel = 6, kTypePubcomp = 7, kTypeSubscribe = 8,
                       kTypeSuback = 9, kTypeUnsubscribe = 10, kTypeUnsuback = 11,
                       kTypePingreq = 12, kTypePingresp = 13, kTypeDisconnect = 14;

// Flag nibble each type must carry (table 2.2); PUBLISH's flags are checked separately.
constexpr std::uint8_t kRequiredFlags[16] = {0,      0, 0,      0, 0, 0, 0b0010, 0,
                                             0b0010, 0, 0b0010, 0, 0, 0, 0,      0};

// Remaining length of the packets whose size is fixed, or -1 when it varies.
constexpr int kFixedRemaining[16] = {-1, -1, 2, -1, 2, 2, 2, 2, -1, -1, -1, 2, 0, 0, 0, -1};

// Bit t set: a packet of type t may arrive at that side.
constexpr std::uint16_t bit(std::uint8_t type) {
  return static_cast<std::uint16_t>(1u << type);
}
constexpr std::uint16_t kBothWays =
    bit(kTypePublish) | bit(kTypePuback) | bit(kTypePubrec) | bit(kTypePubrel) | bit(kTypePubcomp);
constexpr std::uint16_t kToServer = kBothWays | bit(kTypeConnect) | bit(kTypeSubscribe) |
                                    bit(kTypeUnsubscribe) | bit(kTypePingreq) |
                                    bit(kTypeDisconnect);
constexpr std::uint16_t kToClient =
    kBothWays | bit(kTypeConnack) | bit(kTypeSuback) | bit(kTypeUnsuback) | bit(kTypePingresp);

bool accepts(Role role, std::uint8_t type) noexcept {
  switch (role) {
    case Role::kServer:
      return (kToServer & bit(type)) != 0;
    case Role::kClient:
      return (kToClient & bit(type)) != 0;
    case Role::kAny:
      return true;
  }
  return false;
}

// Sequential reads over one packet's body; each read fails instead of running past the end.
class Reader {
 public:
  explicit Reader(std::string_view body) noexcept : body_(body) {}

  bool u8(std::uint8_t& value) noexcept {
    if (left() < 1) return false;
    value = static_cast<std::uint8_t>(body_[at_++]);
    return true;
  }
  bool u16(std::uint16_t& value) noexcept {
    if (left() < 2) return false;
    value = static_cast<std::uint16_t>((static_cast<std::uint8_t>(body_[at_]) << 8) |
                                       static_cast<std::uint8_t>(body_[at_ + 1]));
    at_ += 2;
    return true;
  }
  // A 16-bit length followed by that many bytes (strings and binary data alike).
  bool lengthPrefixed(std::string_view& value) noexcept {
    std::uint16_t length = 0;
    if (!u16(length) || left() < length) return false;
    value = body_.substr(at_, length);
    at_ += length;
    return true;
  }
  std::string_view rest() noexcept {
    std::string_view value = body_.substr(at_);
    at_ = body_.size();
    return value;
  }
  std::size_t left() const noexcept { return body_.size() - at_; }
  std::size_t position() const noexcept { return at_; }

 private:
  std::string_view body_;
  std::size_t at_ = 0;
};

// A UTF-8 encoded string field [MQTT-1.5.3].
DecodeStatus checkString(std::string_view text) noexcept {
  if (std::memchr(text.data(), '\0', text.size()) != nullptr) return DecodeStatus::kNulInString;
  if (!common::isValidUtf8(text)) return DecodeStatus::kInvalidUtf8;
  return DecodeStatus::kPacket;
}

// A topic name: PUBLISH topic or will topic.
DecodeStatus checkTopicName(std::string_view topic) noexcept {
  switch (routing::validateTopicName(topic)) {
    case routing::TopicStatus::kOk:
      return DecodeStatus::kPacket;
    case routing::TopicStatus::kEmpty:
      return DecodeStatus::kEmptyTopicName;
    case routing::TopicStatus::kContainsNul:
      return DecodeStatus::kNulInString;
    case routing::TopicStatus::kInvalidUtf8:
      return DecodeStatus::kInvalidUtf8;
    case routing::TopicStatus::kWildcardInName:
    case routing::TopicStatus::kBadWildcard:
      return DecodeStatus::kWildcardInTopicName;
    case routing::TopicStatus::kTooLong:  // impossible: the length field has 16 bits
      return DecodeStatus::kTruncated;
  }
  return DecodeStatus::kInvalidUtf8;
}

// Reads a packet identifier that must be non-zero.
DecodeStatus readPacketId(Reader& reader, std::uint16_t& packetId) noexcept {
  if (!reader.u16(packetId)) return DecodeStatus::kTruncated;
  if (packetId == 0) return DecodeStatus::kZeroPacketId;
  return DecodeStatus::kPacket;
}

#define TERN_MQTT_CHECK(expr)                                                   \
  do {                                                                          \
    if (const DecodeStatus s_ = (expr); s_ != DecodeStatus::kPacket) return s_; \
  } while (false)

DecodeStatus decodeConnect(std::string_view body, Packet& packet) noexcept {
  Reader reader(body);
  Connect c;
  if (!reader.lengthPrefixed(c.protocolName)) return DecodeStatus::kTruncated;
  const bool is311 = c.protocolName == kProtocolName311;
  if (!is311 && c.protocolName != kProtocolName31) return DecodeStatus::kInvalidProtocolName;
  if (!reader.u8(c.protocolLevel)) return DecodeStatus::kTruncated;
  // Checked before the rest: a client of another version may lay out the rest differently, and
  // it is owed CONNACK 0x01 rather than a bare close.
  if (c.protocolLevel != (is311 ? kProtocolLevel311 : kProtocolLevel31)) {
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
  if (c.passwordFlag && !c.usernameFlag) return DecodeStatus::kPasswordWithoutUsername;
  if (!reader.u16(c.keepAlive)) return DecodeStatus::kTruncated;

  if (!reader.lengthPrefixed(c.clientId)) return DecodeStatus::kTruncated;
  TERN_MQTT_CHECK(checkString(c.clientId));
  if (c.willFlag) {
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
  const std::size_t start = reader.position();
  if (reader.left() == 0) return DecodeStatus::kEmptyPayload;
  std::size_t count = 0;
  while (reader.left() != 0) {
    std::string_view filter;
    std::uint8_t options = 0;
    if (!reader.lengthPrefixed(filter)) return DecodeStatus::kTruncated;
    TERN_MQTT_CHECK(checkString(filter));
    if (!reader.u8(options)) return DecodeStatus::kTruncated;
    if ((options & 0xFC) != 0) return DecodeStatus::kSubscriptionReservedBits;
    if ((options & 0x03) == 3) return DecodeStatus::kInvalidRequestedQos;
    ++count;
  }
  s.subscriptions = SubscriptionList(body.substr(start), count);
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
  const std::size_t start = reader.position();
  if (reader.left() == 0) return DecodeStatus::kEmptyPayload;
  std::size_t count = 0;
  while (reader.left() != 0) {
    std::string_view filter;
    if (!reader.lengthPrefixed(filter)) return DecodeStatus::kTruncated;
    TERN_MQTT_CHECK(checkString(filter));
    ++count;
  }
  u.filters = FilterList(body.substr(start), count);
  packet = u;
  return DecodeStatus::kPacket;
}

#undef TERN_MQTT_CHECK

DecodeStatus decodeBody(std::uint8_t type, std::uint8_t flags, std::string_view body,
                        Packet& packet) noexcept {
  switch (type) {
    case kTypeConnect:
      return decodeConnect(body, packet);
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
  }
  return "unknown decode status";
}

DecodeResult Decoder::decode(std::string_view buffer) const noexcept {
  if (buffer.empty()) return fail(DecodeStatus::kNeedMore);

  // Everything the first byte says is checked before waiting for more.
  const auto first = static_cast<std::uint8_t>(buffer[0]);
  const auto type = static_cast<std::uint8_t>(first >> 4);
  const auto flags = static_cast<std::uint8_t>(first & 0x0F);
  if (type == 0 || type == 15) return fail(DecodeStatus::kReservedPacketType);
  if (!accepts(config_.role, type)) return fail(DecodeStatus::kUnexpectedPacketType);
  if (type == kTypePublish) {
    const auto qos = (flags >> 1) & 0x03;
    if (qos == 3) return fail(DecodeStatus::kInvalidPublishQos);
    if (qos == 0 && (flags & 0x08) != 0) return fail(DecodeStatus::kDupWithQos0);
  } else if (flags != kRequiredFlags[type]) {
    return fail(DecodeStatus::kInvalidFixedHeaderFlags);
  }

  // Remaining length: up to four 7-bit groups, least significant first. Non-minimal encodings
  // (e.g. 0x80 0x00) are accepted: 3.1.1, unlike 5.0, does not forbid them.
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
  if (const int fixed = kFixedRemaining[type]; fixed >= 0) {
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
  result.status = decodeBody(type, flags, buffer.substr(at, remaining), result.packet);
  if (result.status == DecodeStatus::kPacket) {
    result.consumed = packetSize;
  } else {
    result.packet = std::monostate{};
  }
  return result;
}

}  // namespace tern::protocol::mqtt
