#include "tern/protocol/mqtt_encoder.hpp"

#include <cassert>
#include <type_traits>

namespace tern::protocol::mqtt {
namespace {

constexpr std::uint8_t firstByte(PacketType type, std::uint8_t flags = 0) noexcept {
  return static_cast<std::uint8_t>((static_cast<std::uint8_t>(type) << 4) | flags);
}

// Appends one packet's fields to `out`. The constructor reserves the packet's whole size up front:
// libstdc++ grows a string's capacity at least geometrically on reserve, so repeated appends stay
// amortised O(1), and the field appends below never reallocate.
class Appender {
 public:
  Appender(std::string& out, std::uint8_t first, std::size_t remaining) : out_(out) {
    assert(remaining <= kMaxRemainingLength);
    out_.reserve(out_.size() + fixedHeaderSize(remaining) + remaining);
    char header[kMaxFixedHeaderSize];
    header[0] = static_cast<char>(first);
    const std::size_t n = encodeRemainingLength(remaining, header + 1);
    out_.append(header, 1 + n);
  }

  void u8(std::uint8_t value) { out_.push_back(static_cast<char>(value)); }
  void u16(std::uint16_t value) {
    const char bytes[2] = {static_cast<char>(value >> 8), static_cast<char>(value & 0xFF)};
    out_.append(bytes, 2);
  }
  void raw(std::string_view bytes) { out_.append(bytes); }
  // 5.0: a property block of these entries.
  void properties(std::string_view entries) {
    char length[4];
    const std::size_t n =
        encodeRemainingLength(entries.size(), length);  // the same Variable Byte Integer
    out_.append(length, n);
    raw(entries);
  }
  // A 16-bit length and the bytes: UTF-8 strings and binary data alike.
  void lengthPrefixed(std::string_view bytes) {
    assert(bytes.size() <= kMaxStringBytes);
    u16(static_cast<std::uint16_t>(bytes.size()));
    raw(bytes);
  }

 private:
  std::string& out_;
};

void appendAck(std::string& out, PacketType type, std::uint8_t flags, std::uint16_t packetId) {
  assert(packetId != 0);
  Appender a(out, firstByte(type, flags), 2);
  a.u16(packetId);
}

void appendEmpty(std::string& out, PacketType type) {
  const char bytes[2] = {static_cast<char>(firstByte(type)), 0};
  out.append(bytes, 2);
}

// `properties` null: 3.1.1 (no property block).
bool appendPublishImpl(std::string& out, const Publish& p, bool withPayload,
                       const std::string_view* properties = nullptr) {
  assert(p.qos <= 2);
  assert(p.qos == 0 || p.packetId != 0);
  if (p.topic.size() > kMaxStringBytes) return false;
  std::size_t remaining = publishRemainingLength(p);
  if (properties != nullptr) {
    if (properties->size() > kMaxVariableByteInteger) return false;
    remaining += propertyBlockSize(*properties);
  }
  if (remaining > kMaxRemainingLength) return false;
  // DUP is meaningless and forbidden at QoS 0 [MQTT-3.3.1-2].
  const bool dup = p.dup && p.qos > 0;
  const auto flags =
      static_cast<std::uint8_t>((dup ? 0x08 : 0) | (p.qos << 1) | (p.retain ? 0x01 : 0));
  Appender a(out, firstByte(PacketType::kPublish, flags), remaining);
  a.lengthPrefixed(p.topic);
  if (p.qos > 0) a.u16(p.packetId);
  if (properties != nullptr) a.properties(*properties);
  if (withPayload) a.raw(p.payload);
  return true;
}

void appendCodes5(std::string& out, PacketType type, std::uint16_t packetId,
                  std::span<const std::uint8_t> codes, std::string_view properties) {
  assert(packetId != 0 && !codes.empty());
  Appender a(out, firstByte(type), 2 + propertyBlockSize(properties) + codes.size());
  a.u16(packetId);
  a.properties(properties);
  a.raw({reinterpret_cast<const char*>(codes.data()), codes.size()});
}

void appendReasonOnly5(std::string& out, PacketType type, ReasonCode reason,
                       std::string_view properties) {
  if (reason == ReasonCode::kSuccess && properties.empty()) {
    appendEmpty(out, type);
    return;
  }
  // Without properties the property length is left out too (3.14.2.2: a value of 0 is used).
  Appender a(out, firstByte(type), properties.empty() ? 1 : 1 + propertyBlockSize(properties));
  a.u8(static_cast<std::uint8_t>(reason));
  if (!properties.empty()) a.properties(properties);
}

// Overload set for std::visit in appendPacket.
template <typename... Fs>
struct Overloaded : Fs... {
  using Fs::operator()...;
};
template <typename... Fs>
Overloaded(Fs...) -> Overloaded<Fs...>;

}  // namespace

std::size_t encodeRemainingLength(std::size_t remaining, char* out) noexcept {
  assert(remaining <= kMaxRemainingLength);
  std::size_t n = 0;
  do {
    auto byte = static_cast<std::uint8_t>(remaining & 0x7F);
    remaining >>= 7;
    if (remaining != 0) byte |= 0x80;
    out[n++] = static_cast<char>(byte);
  } while (remaining != 0);
  return n;
}

void appendConnack(std::string& out, bool sessionPresent, ConnectReturnCode code) {
  Appender a(out, firstByte(PacketType::kConnack), 2);
  a.u8(sessionPresent ? 1 : 0);
  a.u8(static_cast<std::uint8_t>(code));
}

bool appendPublish(std::string& out, const Publish& publish) {
  return appendPublishImpl(out, publish, true);
}

bool appendPublishHeader(std::string& out, const Publish& publish) {
  return appendPublishImpl(out, publish, false);
}

void appendPuback(std::string& out, std::uint16_t packetId) {
  appendAck(out, PacketType::kPuback, 0, packetId);
}
void appendPubrec(std::string& out, std::uint16_t packetId) {
  appendAck(out, PacketType::kPubrec, 0, packetId);
}
void appendPubrel(std::string& out, std::uint16_t packetId) {
  appendAck(out, PacketType::kPubrel, 0b0010, packetId);
}
void appendPubcomp(std::string& out, std::uint16_t packetId) {
  appendAck(out, PacketType::kPubcomp, 0, packetId);
}

void appendSuback(std::string& out, std::uint16_t packetId,
                  std::span<const std::uint8_t> returnCodes) {
  assert(packetId != 0 && !returnCodes.empty());
  Appender a(out, firstByte(PacketType::kSuback), 2 + returnCodes.size());
  a.u16(packetId);
  a.raw({reinterpret_cast<const char*>(returnCodes.data()), returnCodes.size()});
}

void appendUnsuback(std::string& out, std::uint16_t packetId) {
  appendAck(out, PacketType::kUnsuback, 0, packetId);
}

void appendPingresp(std::string& out) {
  appendEmpty(out, PacketType::kPingresp);
}

void appendConnect(std::string& out, const Connect& c) {
  const bool v5 = c.protocolLevel == kProtocolLevel5;
  assert(c.willQos <= 2);
  assert(c.usernameFlag || !c.passwordFlag || v5);
  assert(c.willFlag || (c.willQos == 0 && !c.willRetain));
  std::size_t remaining = 2 + c.protocolName.size() + 1 + 1 + 2 + 2 + c.clientId.size();
  if (v5) remaining += propertyBlockSize(c.properties.block);
  if (c.willFlag) remaining += 2 + c.willTopic.size() + 2 + c.willPayload.size();
  if (c.willFlag && v5) remaining += propertyBlockSize(c.willProperties.block);
  if (c.usernameFlag) remaining += 2 + c.username.size();
  if (c.passwordFlag) remaining += 2 + c.password.size();
  const auto flags = static_cast<std::uint8_t>(
      (c.cleanSession ? 0x02 : 0) | (c.willFlag ? 0x04 : 0) | (c.willQos << 3) |
      (c.willRetain ? 0x20 : 0) | (c.passwordFlag ? 0x40 : 0) | (c.usernameFlag ? 0x80 : 0));

  Appender a(out, firstByte(PacketType::kConnect), remaining);
  a.lengthPrefixed(c.protocolName);
  a.u8(c.protocolLevel);
  a.u8(flags);
  a.u16(c.keepAlive);
  if (v5) a.properties(c.properties.block);
  a.lengthPrefixed(c.clientId);
  if (c.willFlag) {
    if (v5) a.properties(c.willProperties.block);
    a.lengthPrefixed(c.willTopic);
    a.lengthPrefixed(c.willPayload);
  }
  if (c.usernameFlag) a.lengthPrefixed(c.username);
  if (c.passwordFlag) a.lengthPrefixed(c.password);
}

void appendSubscribe(std::string& out, std::uint16_t packetId,
                     std::span<const Subscription> subscriptions) {
  assert(packetId != 0 && !subscriptions.empty());
  std::size_t remaining = 2;
  for (const Subscription& s : subscriptions)
    remaining += 2 + s.filter.size() + 1;
  Appender a(out, firstByte(PacketType::kSubscribe, 0b0010), remaining);
  a.u16(packetId);
  for (const Subscription& s : subscriptions) {
    assert(s.qos <= 2);
    a.lengthPrefixed(s.filter);
    a.u8(s.qos);
  }
}

void appendUnsubscribe(std::string& out, std::uint16_t packetId,
                       std::span<const std::string_view> filters) {
  assert(packetId != 0 && !filters.empty());
  std::size_t remaining = 2;
  for (const std::string_view f : filters)
    remaining += 2 + f.size();
  Appender a(out, firstByte(PacketType::kUnsubscribe, 0b0010), remaining);
  a.u16(packetId);
  for (const std::string_view f : filters)
    a.lengthPrefixed(f);
}

void appendPingreq(std::string& out) {
  appendEmpty(out, PacketType::kPingreq);
}

void appendDisconnect(std::string& out) {
  appendEmpty(out, PacketType::kDisconnect);
}

void appendConnack5(std::string& out, bool sessionPresent, ReasonCode reason,
                    std::string_view properties) {
  Appender a(out, firstByte(PacketType::kConnack), 2 + propertyBlockSize(properties));
  a.u8(sessionPresent ? 1 : 0);
  a.u8(static_cast<std::uint8_t>(reason));
  a.properties(properties);
}

bool appendPublish5(std::string& out, const Publish& publish, std::string_view properties) {
  return appendPublishImpl(out, publish, true, &properties);
}

bool appendPublishHeader5(std::string& out, const Publish& publish, std::string_view properties) {
  return appendPublishImpl(out, publish, false, &properties);
}

void appendAck5(std::string& out, PacketType type, std::uint16_t packetId, ReasonCode reason,
                std::string_view properties) {
  const std::uint8_t flags = type == PacketType::kPubrel ? 0b0010 : 0;
  if (reason == ReasonCode::kSuccess && properties.empty()) {
    appendAck(out, type, flags, packetId);
    return;
  }
  assert(packetId != 0);
  // Without properties the property length is left out too (3.4.2.2.1: a value of 0 is used).
  Appender a(out, firstByte(type, flags),
             properties.empty() ? 3 : 3 + propertyBlockSize(properties));
  a.u16(packetId);
  a.u8(static_cast<std::uint8_t>(reason));
  if (!properties.empty()) a.properties(properties);
}

void appendSuback5(std::string& out, std::uint16_t packetId, std::span<const std::uint8_t> codes,
                   std::string_view properties) {
  appendCodes5(out, PacketType::kSuback, packetId, codes, properties);
}

void appendUnsuback5(std::string& out, std::uint16_t packetId, std::span<const std::uint8_t> codes,
                     std::string_view properties) {
  appendCodes5(out, PacketType::kUnsuback, packetId, codes, properties);
}

void appendDisconnect5(std::string& out, ReasonCode reason, std::string_view properties) {
  appendReasonOnly5(out, PacketType::kDisconnect, reason, properties);
}

void appendAuth5(std::string& out, ReasonCode reason, std::string_view properties) {
  appendReasonOnly5(out, PacketType::kAuth, reason, properties);
}

void appendSubscribe5(std::string& out, std::uint16_t packetId,
                      std::span<const Subscription> subscriptions, std::string_view properties) {
  assert(packetId != 0 && !subscriptions.empty());
  std::size_t remaining = 2 + propertyBlockSize(properties);
  for (const Subscription& s : subscriptions)
    remaining += 2 + s.filter.size() + 1;
  Appender a(out, firstByte(PacketType::kSubscribe, 0b0010), remaining);
  a.u16(packetId);
  a.properties(properties);
  for (const Subscription& s : subscriptions) {
    assert(s.qos <= 2 && s.retainHandling <= 2);
    a.lengthPrefixed(s.filter);
    a.u8(static_cast<std::uint8_t>(s.qos | (s.noLocal ? 0x04 : 0) |
                                   (s.retainAsPublished ? 0x08 : 0) | (s.retainHandling << 4)));
  }
}

void appendUnsubscribe5(std::string& out, std::uint16_t packetId,
                        std::span<const std::string_view> filters, std::string_view properties) {
  assert(packetId != 0 && !filters.empty());
  std::size_t remaining = 2 + propertyBlockSize(properties);
  for (const std::string_view f : filters)
    remaining += 2 + f.size();
  Appender a(out, firstByte(PacketType::kUnsubscribe, 0b0010), remaining);
  a.u16(packetId);
  a.properties(properties);
  for (const std::string_view f : filters)
    a.lengthPrefixed(f);
}

bool appendPacket(std::string& out, const Packet& packet, std::uint8_t level) {
  const bool v5 = level == kProtocolLevel5;
  const auto ack = [&](PacketType type, std::uint16_t id, ReasonCode reason,
                       const Properties& properties) {
    if (v5) {
      appendAck5(out, type, id, reason, properties.block);
    } else {
      appendAck(out, type, type == PacketType::kPubrel ? 0b0010 : 0, id);
    }
    return true;
  };
  // SUBSCRIBE and UNSUBSCRIBE: the decoder validated the wire payload; written back as it is.
  const auto entries = [&](PacketType type, std::uint16_t id, const Properties& properties,
                           std::string_view wire) {
    Appender a(out, firstByte(type, 0b0010),
               2 + (v5 ? propertyBlockSize(properties.block) : 0) + wire.size());
    a.u16(id);
    if (v5) a.properties(properties.block);
    a.raw(wire);
    return true;
  };
  return std::visit(
      Overloaded{
          [](std::monostate) { return false; },
          [&](const Connect& p) {
            appendConnect(out, p);
            return true;
          },
          [&](const Connack& p) {
            if (v5) {
              appendConnack5(out, p.sessionPresent, p.reason, p.properties.block);
            } else {
              appendConnack(out, p.sessionPresent, p.returnCode);
            }
            return true;
          },
          [&](const Publish& p) {
            return v5 ? appendPublish5(out, p, p.properties.block) : appendPublish(out, p);
          },
          [&](const Puback& p) {
            return ack(PacketType::kPuback, p.packetId, p.reason, p.properties);
          },
          [&](const Pubrec& p) {
            return ack(PacketType::kPubrec, p.packetId, p.reason, p.properties);
          },
          [&](const Pubrel& p) {
            return ack(PacketType::kPubrel, p.packetId, p.reason, p.properties);
          },
          [&](const Pubcomp& p) {
            return ack(PacketType::kPubcomp, p.packetId, p.reason, p.properties);
          },
          [&](const Subscribe& p) {
            return entries(PacketType::kSubscribe, p.packetId, p.properties,
                           p.subscriptions.wire());
          },
          [&](const Suback& p) {
            if (v5) {
              appendSuback5(out, p.packetId, p.returnCodes, p.properties.block);
            } else {
              appendSuback(out, p.packetId, p.returnCodes);
            }
            return true;
          },
          [&](const Unsubscribe& p) {
            return entries(PacketType::kUnsubscribe, p.packetId, p.properties, p.filters.wire());
          },
          [&](const Unsuback& p) {
            if (v5) {
              appendUnsuback5(out, p.packetId, p.reasonCodes, p.properties.block);
            } else {
              appendUnsuback(out, p.packetId);
            }
            return true;
          },
          [&](const Pingreq&) {
            appendPingreq(out);
            return true;
          },
          [&](const Pingresp&) {
            appendPingresp(out);
            return true;
          },
          [&](const Disconnect& p) {
            if (v5) {
              appendDisconnect5(out, p.reason, p.properties.block);
            } else {
              appendDisconnect(out);
            }
            return true;
          },
          [&](const Auth& p) {
            if (!v5) return false;  // no AUTH in 3.1.1
            appendAuth5(out, p.reason, p.properties.block);
            return true;
          },
      },
      packet);
}

}  // namespace tern::protocol::mqtt
