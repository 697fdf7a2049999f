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

bool appendPublishImpl(std::string& out, const Publish& p, bool withPayload) {
  assert(p.qos <= 2);
  assert(p.qos == 0 || p.packetId != 0);
  if (p.topic.size() > kMaxStringBytes) return false;
  const std::size_t remaining = publishRemainingLength(p);
  if (remaining > kMaxRemainingLength) return false;
  // DUP is meaningless and forbidden at QoS 0 [MQTT-3.3.1-2].
  const bool dup = p.dup && p.qos > 0;
  const auto flags =
      static_cast<std::uint8_t>((dup ? 0x08 : 0) | (p.qos << 1) | (p.retain ? 0x01 : 0));
  Appender a(out, firstByte(PacketType::kPublish, flags), remaining);
  a.lengthPrefixed(p.topic);
  if (p.qos > 0) a.u16(p.packetId);
  if (withPayload) a.raw(p.payload);
  return true;
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
  assert(c.willQos <= 2);
  assert(c.usernameFlag || !c.passwordFlag);
  assert(c.willFlag || (c.willQos == 0 && !c.willRetain));
  std::size_t remaining = 2 + c.protocolName.size() + 1 + 1 + 2 + 2 + c.clientId.size();
  if (c.willFlag) remaining += 2 + c.willTopic.size() + 2 + c.willPayload.size();
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
  a.lengthPrefixed(c.clientId);
  if (c.willFlag) {
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

bool appendPacket(std::string& out, const Packet& packet) {
  return std::visit(Overloaded{
                        [](std::monostate) { return false; },
                        [&](const Connect& p) {
                          appendConnect(out, p);
                          return true;
                        },
                        [&](const Connack& p) {
                          appendConnack(out, p.sessionPresent, p.returnCode);
                          return true;
                        },
                        [&](const Publish& p) { return appendPublish(out, p); },
                        [&](const Puback& p) {
                          appendPuback(out, p.packetId);
                          return true;
                        },
                        [&](const Pubrec& p) {
                          appendPubrec(out, p.packetId);
                          return true;
                        },
                        [&](const Pubrel& p) {
                          appendPubrel(out, p.packetId);
                          return true;
                        },
                        [&](const Pubcomp& p) {
                          appendPubcomp(out, p.packetId);
                          return true;
                        },
                        [&](const Subscribe& p) {
                          // The decoder validated the wire payload; write it back as it is.
                          Appender a(out, firstByte(PacketType::kSubscribe, 0b0010),
                                     2 + p.subscriptions.wire().size());
                          a.u16(p.packetId);
                          a.raw(p.subscriptions.wire());
                          return true;
                        },
                        [&](const Suback& p) {
                          appendSuback(out, p.packetId, p.returnCodes);
                          return true;
                        },
                        [&](const Unsubscribe& p) {
                          Appender a(out, firstByte(PacketType::kUnsubscribe, 0b0010),
                                     2 + p.filters.wire().size());
                          a.u16(p.packetId);
                          a.raw(p.filters.wire());
                          return true;
                        },
                        [&](const Unsuback& p) {
                          appendUnsuback(out, p.packetId);
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
                        [&](const Disconnect&) {
                          appendDisconnect(out);
                          return true;
                        },
                    },
                    packet);
}

}  // namespace tern::protocol::mqtt
