#include "tern/protocol/mqtt_decoder.hpp"

#include <gtest/gtest.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <random>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "tern/protocol/mqtt_encoder.hpp"
#include "unit/protocol/wire_bytes.hpp"

namespace tern::protocol::mqtt {
namespace {

using testing::bytes;

const Decoder kAnyDecoder(DecoderConfig{kMaxPacketSize, Role::kAny});

DecodeResult decode(std::string_view buffer) {
  return kAnyDecoder.decode(buffer);
}

DecodeStatus statusOf(std::string_view buffer) {
  return decode(buffer).status;
}

// The packet views `buffer`, so it must outlive the result: temporaries are refused.
template <typename T>
T decodeAs(const std::string&& buffer) = delete;
template <typename T>
T decodeAs(const std::string& buffer) {
  const DecodeResult r = decode(buffer);
  EXPECT_EQ(r.status, DecodeStatus::kPacket) << describe(r.status);
  EXPECT_EQ(r.consumed, buffer.size());
  const T* packet = std::get_if<T>(&r.packet);
  EXPECT_NE(packet, nullptr);
  return packet != nullptr ? *packet : T{};
}

// ---- Spec byte vectors, one per packet type ------------------------------------------------

TEST(MqttDecoder, ConnectWithEverything) {
  // Flags 0xEE: username, password, will retain, will QoS 1, will flag, clean session.
  const std::string wire = bytes({{0x10, 41, 0, 4},
                                  "MQTT",
                                  {4, 0xEE, 0, 60, 0, 3},
                                  "cid",
                                  {0, 5},
                                  "w/top",
                                  {0, 3},
                                  "bye",
                                  {0, 4},
                                  "user",
                                  {0, 6},
                                  {'p', 0, 'a', 0xFF, 's', 's'}});
  const Connect c = decodeAs<Connect>(wire);
  EXPECT_EQ(c.protocolName, "MQTT");
  EXPECT_EQ(c.protocolLevel, 4);
  EXPECT_TRUE(c.cleanSession);
  EXPECT_TRUE(c.willFlag);
  EXPECT_EQ(c.willQos, 1);
  EXPECT_TRUE(c.willRetain);
  EXPECT_TRUE(c.usernameFlag);
  EXPECT_TRUE(c.passwordFlag);
  EXPECT_EQ(c.keepAlive, 60);
  EXPECT_EQ(c.clientId, "cid");
  EXPECT_EQ(c.willTopic, "w/top");
  EXPECT_EQ(c.willPayload, "bye");
  EXPECT_EQ(c.username, "user");
  EXPECT_EQ(c.password, std::string_view("p\0a\xFFss", 6));  // binary: NUL and 0xFF allowed
}

TEST(MqttDecoder, ConnectMinimalAndMqtt31) {
  const std::string minimal = bytes({{0x10, 12, 0, 4}, "MQTT", {4, 0, 0xFF, 0xFF, 0, 0}});
  const Connect c = decodeAs<Connect>(minimal);
  EXPECT_FALSE(c.cleanSession);
  EXPECT_FALSE(c.willFlag);
  EXPECT_FALSE(c.usernameFlag);
  EXPECT_EQ(c.keepAlive, 65535);
  EXPECT_TRUE(c.clientId.empty());

  const std::string mqtt31 = bytes({{0x10, 17, 0, 6}, "MQIsdp", {3, 2, 0, 10, 0, 3}, "abc"});
  const Connect old = decodeAs<Connect>(mqtt31);
  EXPECT_EQ(old.protocolName, "MQIsdp");
  EXPECT_EQ(old.protocolLevel, 3);
  EXPECT_TRUE(old.cleanSession);
  EXPECT_EQ(old.clientId, "abc");
}

TEST(MqttDecoder, Connack) {
  const std::string accepted = bytes({{0x20, 2, 1, 0}});
  const Connack a = decodeAs<Connack>(accepted);
  EXPECT_TRUE(a.sessionPresent);
  EXPECT_EQ(a.returnCode, ConnectReturnCode::kAccepted);
  const std::string refused = bytes({{0x20, 2, 0, 5}});
  const Connack b = decodeAs<Connack>(refused);
  EXPECT_FALSE(b.sessionPresent);
  EXPECT_EQ(b.returnCode, ConnectReturnCode::kNotAuthorized);
}

TEST(MqttDecoder, PublishQos0) {
  const std::string wire = bytes({{0x31, 7, 0, 3}, "a/b", "hi"});
  const Publish p = decodeAs<Publish>(wire);
  EXPECT_FALSE(p.dup);
  EXPECT_EQ(p.qos, 0);
  EXPECT_TRUE(p.retain);
  EXPECT_EQ(p.topic, "a/b");
  EXPECT_EQ(p.packetId, 0);
  EXPECT_EQ(p.payload, "hi");
}

TEST(MqttDecoder, PublishQos1And2) {
  const std::string qos1 = bytes({{0x3A, 9, 0, 3}, "a/b", {0x12, 0x34}, "hi"});
  const Publish p1 = decodeAs<Publish>(qos1);
  EXPECT_TRUE(p1.dup);
  EXPECT_EQ(p1.qos, 1);
  EXPECT_FALSE(p1.retain);
  EXPECT_EQ(p1.packetId, 0x1234);
  EXPECT_EQ(p1.payload, "hi");

  const std::string qos2 = bytes({{0x34, 5, 0, 1}, "t", {0, 7}});
  const Publish p2 = decodeAs<Publish>(qos2);
  EXPECT_EQ(p2.qos, 2);
  EXPECT_EQ(p2.packetId, 7);
  EXPECT_TRUE(p2.payload.empty());
}

TEST(MqttDecoder, PublishPayloadIsBinary) {
  const std::string wire = bytes({{0x30, 7, 0, 1}, "t", {0, 0xFF, 0xC0, 0x80}});
  const Publish p = decodeAs<Publish>(wire);
  EXPECT_EQ(p.payload, std::string_view("\0\xFF\xC0\x80", 4));
}

TEST(MqttDecoder, PublishAcknowledgements) {
  const std::string puback = bytes({{0x40, 2, 0, 10}});
  EXPECT_EQ(decodeAs<Puback>(puback).packetId, 10);
  const std::string pubrec = bytes({{0x50, 2, 1, 0}});
  EXPECT_EQ(decodeAs<Pubrec>(pubrec).packetId, 256);
  const std::string pubrel = bytes({{0x62, 2, 0xFF, 0xFF}});
  EXPECT_EQ(decodeAs<Pubrel>(pubrel).packetId, 65535);
  const std::string pubcomp = bytes({{0x70, 2, 0, 1}});
  EXPECT_EQ(decodeAs<Pubcomp>(pubcomp).packetId, 1);
  const std::string unsuback = bytes({{0xB0, 2, 0, 9}});
  EXPECT_EQ(decodeAs<Unsuback>(unsuback).packetId, 9);
}

TEST(MqttDecoder, Subscribe) {
  const std::string wire =
      bytes({{0x82, 18, 0, 10, 0, 3}, "a/b", {1, 0, 3}, "c/#", {2, 0, 1}, "+", {0}});
  const Subscribe s = decodeAs<Subscribe>(wire);
  EXPECT_EQ(s.packetId, 10);
  ASSERT_EQ(s.subscriptions.size(), 3u);
  std::vector<Subscription> entries(s.subscriptions.begin(), s.subscriptions.end());
  ASSERT_EQ(entries.size(), 3u);
  EXPECT_EQ(entries[0], (Subscription{"a/b", 1}));
  EXPECT_EQ(entries[1], (Subscription{"c/#", 2}));
  EXPECT_EQ(entries[2], (Subscription{"+", 0}));
}

TEST(MqttDecoder, SubscribeLeavesFilterSyntaxToTheBroker) {
  // "a/b#" and "" are invalid filters, answered with SUBACK 0x80 by the broker, not a close.
  const std::string wire = bytes({{0x82, 12, 0, 1, 0, 4}, "a/b#", {0, 0, 0, 1}});
  const Subscribe s = decodeAs<Subscribe>(wire);
  std::vector<Subscription> entries(s.subscriptions.begin(), s.subscriptions.end());
  ASSERT_EQ(entries.size(), 2u);
  EXPECT_EQ(entries[0].filter, "a/b#");
  EXPECT_EQ(entries[1].filter, "");
  EXPECT_EQ(entries[1].qos, 1);
}

TEST(MqttDecoder, Suback) {
  const std::string wire = bytes({{0x90, 6, 0, 10, 0, 1, 2, 0x80}});
  const Suback s = decodeAs<Suback>(wire);
  EXPECT_EQ(s.packetId, 10);
  const std::vector<std::uint8_t> codes(s.returnCodes.begin(), s.returnCodes.end());
  EXPECT_EQ(codes, (std::vector<std::uint8_t>{0, 1, 2, 0x80}));
}

TEST(MqttDecoder, Unsubscribe) {
  const std::string wire = bytes({{0xA2, 10, 0, 3, 0, 3}, "a/b", {0, 1}, "#"});
  const Unsubscribe u = decodeAs<Unsubscribe>(wire);
  EXPECT_EQ(u.packetId, 3);
  ASSERT_EQ(u.filters.size(), 2u);
  std::vector<std::string_view> filters(u.filters.begin(), u.filters.end());
  EXPECT_EQ(filters, (std::vector<std::string_view>{"a/b", "#"}));
}

TEST(MqttDecoder, EmptyPackets) {
  EXPECT_EQ(typeOf(decode(bytes({{0xC0, 0}})).packet), PacketType::kPingreq);
  EXPECT_EQ(typeOf(decode(bytes({{0xD0, 0}})).packet), PacketType::kPingresp);
  EXPECT_EQ(typeOf(decode(bytes({{0xE0, 0}})).packet), PacketType::kDisconnect);
}

TEST(MqttDecoder, AcceptsSpanOfBytes) {
  const std::array<std::byte, 2> wire = {std::byte{0xC0}, std::byte{0}};
  const DecodeResult r = kAnyDecoder.decode(std::span<const std::byte>(wire));
  EXPECT_EQ(r.status, DecodeStatus::kPacket);
  EXPECT_EQ(r.consumed, 2u);
}

TEST(MqttDecoder, ViewsPointIntoTheInput) {
  const std::string wire = bytes({{0x30, 7, 0, 3}, "a/b", "hi"});
  const Publish p = decodeAs<Publish>(wire);
  EXPECT_EQ(p.topic.data(), wire.data() + 4);
  EXPECT_EQ(p.payload.data(), wire.data() + 7);
}

// ---- Partial input -----------------------------------------------------------------------------

TEST(MqttDecoder, EveryStrictPrefixNeedsMore) {
  const std::string wire = bytes({{0x32, 9, 0, 3}, "a/b", {0, 1}, "hi"});
  for (std::size_t n = 0; n < wire.size(); ++n) {
    const DecodeResult r = decode(std::string_view(wire).substr(0, n));
    EXPECT_EQ(r.status, DecodeStatus::kNeedMore) << n;
    EXPECT_EQ(r.consumed, 0u);
    // The size is known once the fixed header (2 bytes here) is complete.
    EXPECT_EQ(r.packetSize, n >= 2 ? wire.size() : 0u) << n;
  }
  EXPECT_EQ(statusOf(wire), DecodeStatus::kPacket);
}

TEST(MqttDecoder, DecodesOnlyTheFirstOfSeveralPackets) {
  const std::string wire = bytes({{0xC0, 0, 0x40, 2, 0, 5, 0xE0}});
  DecodeResult r = decode(wire);
  ASSERT_EQ(r.status, DecodeStatus::kPacket);
  EXPECT_EQ(r.consumed, 2u);
  r = decode(std::string_view(wire).substr(2));
  ASSERT_EQ(r.status, DecodeStatus::kPacket);
  EXPECT_EQ(r.consumed, 4u);
  EXPECT_EQ(std::get<Puback>(r.packet).packetId, 5);
  EXPECT_EQ(statusOf(std::string_view(wire).substr(6)), DecodeStatus::kNeedMore);
}

// ---- Remaining length --------------------------------------------------------------------------

TEST(MqttDecoder, RemainingLengthBoundaries) {
  // A PUBLISH whose remaining length is exactly `remaining`: topic "t" (3 bytes) + payload.
  for (const std::size_t remaining : {3u, 127u, 128u, 16383u, 16384u, 2097151u, 2097152u}) {
    std::string wire;
    Publish p{.topic = "t", .payload = {}};
    const std::string payload(remaining - 3, 'x');
    p.payload = payload;
    ASSERT_TRUE(appendPublish(wire, p));
    ASSERT_EQ(wire.size(), fixedHeaderSize(remaining) + remaining);
    const DecodeResult r = decode(wire);
    ASSERT_EQ(r.status, DecodeStatus::kPacket) << remaining;
    EXPECT_EQ(r.consumed, wire.size());
    EXPECT_EQ(std::get<Publish>(r.packet).payload.size(), remaining - 3);
  }
}

TEST(MqttDecoder, RemainingLengthZero) {
  const DecodeResult r = decode(bytes({{0xC0, 0}}));
  EXPECT_EQ(r.status, DecodeStatus::kPacket);
  EXPECT_EQ(r.consumed, 2u);
}

TEST(MqttDecoder, LargestRemainingLengthIsAnnounced) {
  // 268435455 = 0xFF 0xFF 0xFF 0x7F; only the header is present.
  const DecodeResult r = decode(bytes({{0x30, 0xFF, 0xFF, 0xFF, 0x7F, 0, 1}}));
  EXPECT_EQ(r.status, DecodeStatus::kNeedMore);
  EXPECT_EQ(r.packetSize, kMaxPacketSize);
}

TEST(MqttDecoder, RemainingLengthOfFiveBytesIsMalformed) {
  EXPECT_EQ(statusOf(bytes({{0x30, 0xFF, 0xFF, 0xFF, 0xFF}})),
            DecodeStatus::kMalformedRemainingLength);
  EXPECT_EQ(statusOf(bytes({{0x30, 0x80, 0x80, 0x80, 0x80, 0x01}})),
            DecodeStatus::kMalformedRemainingLength);
  EXPECT_EQ(statusOf(bytes({{0x30, 0xFF, 0xFF, 0xFF}})), DecodeStatus::kNeedMore);
}

TEST(MqttDecoder, NonMinimalRemainingLengthIsAccepted) {
  const DecodeResult r = decode(bytes({{0xC0, 0x80, 0x00}}));
  EXPECT_EQ(r.status, DecodeStatus::kPacket);
  EXPECT_EQ(r.consumed, 3u);
}

TEST(MqttDecoder, PacketTooLargeIsRefusedFromTheHeaderAlone) {
  const Decoder decoder(DecoderConfig{.maxPacketSize = 100, .role = Role::kServer});
  // 2-byte header + 98 = 100 bytes: accepted size, still waiting for the body.
  const DecodeResult ok = decoder.decode(bytes({{0x30, 98}}));
  EXPECT_EQ(ok.status, DecodeStatus::kNeedMore);
  EXPECT_EQ(ok.packetSize, 100u);
  const DecodeResult big = decoder.decode(bytes({{0x30, 99}}));
  EXPECT_EQ(big.status, DecodeStatus::kPacketTooLarge);
  EXPECT_EQ(big.packetSize, 101u);
  EXPECT_EQ(big.consumed, 0u);
  EXPECT_EQ(decoder.decode(bytes({{0x30, 0xFF, 0xFF, 0x7F}})).status,
            DecodeStatus::kPacketTooLarge);
}

// ---- Fixed header errors -----------------------------------------------------------------------

TEST(MqttDecoder, ReservedPacketTypes) {
  EXPECT_EQ(statusOf(bytes({{0x00}})), DecodeStatus::kReservedPacketType);
  EXPECT_EQ(statusOf(bytes({{0xF0, 0}})), DecodeStatus::kReservedPacketType);
}

TEST(MqttDecoder, FlagsMustMatchTheTable) {
  // Each non-PUBLISH type with every wrong flag nibble; the first byte alone is enough.
  const int required[16] = {0, 0, 0, 0, 0, 0, 2, 0, 2, 0, 2, 0, 0, 0, 0, 0};
  for (int type = 1; type <= 14; ++type) {
    if (type == 3) continue;
    for (int flags = 0; flags < 16; ++flags) {
      const std::string wire(1, static_cast<char>(type << 4 | flags));
      const DecodeStatus expected = flags == required[type]
                                        ? DecodeStatus::kNeedMore
                                        : DecodeStatus::kInvalidFixedHeaderFlags;
      EXPECT_EQ(statusOf(wire), expected) << "type " << type << " flags " << flags;
    }
  }
}

TEST(MqttDecoder, PublishQos3) {
  EXPECT_EQ(statusOf(bytes({{0x36}})), DecodeStatus::kInvalidPublishQos);
  EXPECT_EQ(statusOf(bytes({{0x3F}})), DecodeStatus::kInvalidPublishQos);
}

TEST(MqttDecoder, PublishDupWithQos0) {
  EXPECT_EQ(statusOf(bytes({{0x38}})), DecodeStatus::kDupWithQos0);
  EXPECT_EQ(statusOf(bytes({{0x39}})), DecodeStatus::kDupWithQos0);
  EXPECT_EQ(statusOf(bytes({{0x3A}})), DecodeStatus::kNeedMore);  // DUP with QoS 1 is fine
}

TEST(MqttDecoder, RoleDecidesWhichTypesArrive) {
  const Decoder server(DecoderConfig{.role = Role::kServer});
  const Decoder client(DecoderConfig{.role = Role::kClient});
  for (const int first : {0x10, 0x82, 0xA2, 0xC0, 0xE0}) {  // client-to-server only
    const std::string wire(1, static_cast<char>(first));
    EXPECT_EQ(server.decode(wire).status, DecodeStatus::kNeedMore) << first;
    EXPECT_EQ(client.decode(wire).status, DecodeStatus::kUnexpectedPacketType) << first;
  }
  for (const int first : {0x20, 0x90, 0xB0, 0xD0}) {  // server-to-client only
    const std::string wire(1, static_cast<char>(first));
    EXPECT_EQ(server.decode(wire).status, DecodeStatus::kUnexpectedPacketType) << first;
    EXPECT_EQ(client.decode(wire).status, DecodeStatus::kNeedMore) << first;
  }
  for (const int first : {0x30, 0x40, 0x50, 0x62, 0x70}) {  // both ways
    const std::string wire(1, static_cast<char>(first));
    EXPECT_EQ(server.decode(wire).status, DecodeStatus::kNeedMore) << first;
    EXPECT_EQ(client.decode(wire).status, DecodeStatus::kNeedMore) << first;
  }
}

TEST(MqttDecoder, FixedSizePacketsCheckTheirLengthEarly) {
  // The length is wrong before the body arrives: no need to wait for it.
  EXPECT_EQ(statusOf(bytes({{0x40, 1}})), DecodeStatus::kTruncated);
  EXPECT_EQ(statusOf(bytes({{0x40, 3}})), DecodeStatus::kTrailingBytes);
  EXPECT_EQ(statusOf(bytes({{0x20, 3}})), DecodeStatus::kTrailingBytes);
  EXPECT_EQ(statusOf(bytes({{0xB0, 0}})), DecodeStatus::kTruncated);
  EXPECT_EQ(statusOf(bytes({{0xC0, 1}})), DecodeStatus::kTrailingBytes);
  EXPECT_EQ(statusOf(bytes({{0xD0, 1}})), DecodeStatus::kTrailingBytes);
  EXPECT_EQ(statusOf(bytes({{0xE0, 2}})), DecodeStatus::kTrailingBytes);
}

// ---- CONNECT errors ----------------------------------------------------------------------------

// A CONNECT "MQTT" level 4 with the given flags and payload after the keep-alive.
std::string connect(int flags, std::string_view payload, std::string_view name = "MQTT",
                    int level = 4) {
  std::string body =
      bytes({{0, static_cast<int>(name.size())}, name, {level, flags, 0, 30}, payload});
  std::string wire(1, '\x10');
  char length[4];
  wire.append(length, encodeRemainingLength(body.size(), length));
  return wire + body;
}

TEST(MqttDecoder, ConnectHelperIsValid) {
  EXPECT_EQ(statusOf(connect(0x02, bytes({{0, 1}, "c"}))), DecodeStatus::kPacket);
}

TEST(MqttDecoder, ConnectProtocolName) {
  EXPECT_EQ(statusOf(connect(0x02, bytes({{0, 1}, "c"}), "MQTX")),
            DecodeStatus::kInvalidProtocolName);
  EXPECT_EQ(statusOf(connect(0x02, bytes({{0, 1}, "c"}), "mqtt")),
            DecodeStatus::kInvalidProtocolName);
  EXPECT_EQ(statusOf(connect(0x02, bytes({{0, 1}, "c"}), "")), DecodeStatus::kInvalidProtocolName);
}

TEST(MqttDecoder, ConnectProtocolLevel) {
  EXPECT_EQ(statusOf(connect(0x02, bytes({{0, 1}, "c"}), "MQTT", 6)),
            DecodeStatus::kUnacceptableProtocolLevel);
  EXPECT_EQ(statusOf(connect(0x02, bytes({{0, 1}, "c"}), "MQTT", 3)),
            DecodeStatus::kUnacceptableProtocolLevel);
  EXPECT_EQ(statusOf(connect(0x02, bytes({{0, 1}, "c"}), "MQIsdp", 4)),
            DecodeStatus::kUnacceptableProtocolLevel);
  // Reported even when the rest of the packet is laid out differently.
  EXPECT_EQ(statusOf(connect(0x02, bytes({{0, 0, 0, 1}, "c"}), "MQTT", 6)),
            DecodeStatus::kUnacceptableProtocolLevel);
  // Level 5 is MQTT 5.0, with a property block after the keep-alive.
  EXPECT_EQ(statusOf(connect(0x02, bytes({{0, 0, 1}, "c"}), "MQTT", 5)), DecodeStatus::kPacket);
}

TEST(MqttDecoder, ConnectFlags) {
  const std::string id = bytes({{0, 1}, "c"});
  const std::string will = bytes({{0, 1}, "w", {0, 0}});
  EXPECT_EQ(statusOf(connect(0x03, id)), DecodeStatus::kConnectReservedFlag);
  EXPECT_EQ(statusOf(connect(0x1C, id + will)), DecodeStatus::kInvalidWillQos);  // will + QoS 3
  EXPECT_EQ(statusOf(connect(0x18, id)), DecodeStatus::kInvalidWillQos);  // QoS 3 without will
  EXPECT_EQ(statusOf(connect(0x08, id)), DecodeStatus::kWillFlagsWithoutWill);  // QoS 1
  EXPECT_EQ(statusOf(connect(0x10, id)), DecodeStatus::kWillFlagsWithoutWill);  // QoS 2
  EXPECT_EQ(statusOf(connect(0x20, id)), DecodeStatus::kWillFlagsWithoutWill);  // retain
  EXPECT_EQ(statusOf(connect(0x40, id + bytes({{0, 1}, "p"}))),
            DecodeStatus::kPasswordWithoutUsername);
  EXPECT_EQ(statusOf(connect(0x34, id + will)), DecodeStatus::kPacket);  // will QoS 2 + retain
}

TEST(MqttDecoder, ConnectTruncatedFields) {
  EXPECT_EQ(statusOf(bytes({{0x10, 1, 0}})), DecodeStatus::kTruncated);
  EXPECT_EQ(statusOf(bytes({{0x10, 5, 0, 4}, "MQT"})), DecodeStatus::kTruncated);
  EXPECT_EQ(statusOf(bytes({{0x10, 6, 0, 4}, "MQTT"})), DecodeStatus::kTruncated);       // no level
  EXPECT_EQ(statusOf(bytes({{0x10, 7, 0, 4}, "MQTT", {4}})), DecodeStatus::kTruncated);  // flags
  EXPECT_EQ(statusOf(bytes({{0x10, 9, 0, 4}, "MQTT", {4, 2, 0}})), DecodeStatus::kTruncated);
  EXPECT_EQ(statusOf(connect(0x02, "")), DecodeStatus::kTruncated);  // no client id
  EXPECT_EQ(statusOf(connect(0x02, bytes({{0, 5}, "abc"}))), DecodeStatus::kTruncated);
  EXPECT_EQ(statusOf(connect(0x06, bytes({{0, 1}, "c"}))), DecodeStatus::kTruncated);  // will
  EXPECT_EQ(statusOf(connect(0x06, bytes({{0, 1}, "c", {0, 1}, "w"}))),
            DecodeStatus::kTruncated);  // will payload missing
  EXPECT_EQ(statusOf(connect(0x82, bytes({{0, 1}, "c"}))), DecodeStatus::kTruncated);  // username
  EXPECT_EQ(statusOf(connect(0xC2, bytes({{0, 1}, "c", {0, 1}, "u"}))),
            DecodeStatus::kTruncated);  // password
}

TEST(MqttDecoder, ConnectTrailingBytes) {
  EXPECT_EQ(statusOf(connect(0x02, bytes({{0, 1}, "c", {0}}))), DecodeStatus::kTrailingBytes);
  // A username without the username flag is trailing garbage.
  EXPECT_EQ(statusOf(connect(0x02, bytes({{0, 1}, "c", {0, 1}, "u"}))),
            DecodeStatus::kTrailingBytes);
}

TEST(MqttDecoder, ConnectStrings) {
  EXPECT_EQ(statusOf(connect(0x02, bytes({{0, 2, 0xC3, 0x28}}))), DecodeStatus::kInvalidUtf8);
  EXPECT_EQ(statusOf(connect(0x02, bytes({{0, 2}, "a", {0}}))), DecodeStatus::kNulInString);
  EXPECT_EQ(statusOf(connect(0x82, bytes({{0, 1}, "c", {0, 1, 0xFF}}))),
            DecodeStatus::kInvalidUtf8);  // username
  EXPECT_EQ(statusOf(connect(0x06, bytes({{0, 1}, "c", {0, 1}, "#", {0, 0}}))),
            DecodeStatus::kWildcardInTopicName);  // will topic
  EXPECT_EQ(statusOf(connect(0x06, bytes({{0, 1}, "c", {0, 0, 0, 0}}))),
            DecodeStatus::kEmptyTopicName);
  EXPECT_EQ(statusOf(connect(0x06, bytes({{0, 1}, "c", {0, 2, 0xED, 0xA0}, {0, 0}}))),
            DecodeStatus::kInvalidUtf8);
  // The password and the will payload are binary: anything goes.
  EXPECT_EQ(
      statusOf(connect(
          0xC6, bytes({{0, 1}, "c", {0, 1}, "w", {0, 2, 0, 0xFF}, {0, 1}, "u", {0, 2, 0xFF, 0}}))),
      DecodeStatus::kPacket);
}

// ---- PUBLISH errors ----------------------------------------------------------------------------

TEST(MqttDecoder, PublishTopicErrors) {
  EXPECT_EQ(statusOf(bytes({{0x30, 2, 0, 0}})), DecodeStatus::kEmptyTopicName);
  EXPECT_EQ(statusOf(bytes({{0x30, 5, 0, 3}, "a/+"})), DecodeStatus::kWildcardInTopicName);
  EXPECT_EQ(statusOf(bytes({{0x30, 5, 0, 3}, "a/#"})), DecodeStatus::kWildcardInTopicName);
  EXPECT_EQ(statusOf(bytes({{0x30, 5, 0, 3, 'a', 0, 'b'}})), DecodeStatus::kNulInString);
  EXPECT_EQ(statusOf(bytes({{0x30, 4, 0, 2, 0xC0, 0xAF}})),
            DecodeStatus::kInvalidUtf8);  // overlong
  EXPECT_EQ(statusOf(bytes({{0x30, 5, 0, 3, 0xED, 0xA0, 0x80}})), DecodeStatus::kInvalidUtf8);
}

TEST(MqttDecoder, PublishTruncated) {
  EXPECT_EQ(statusOf(bytes({{0x30, 1, 0}})), DecodeStatus::kTruncated);
  EXPECT_EQ(statusOf(bytes({{0x30, 4, 0, 3}, "ab"})), DecodeStatus::kTruncated);
  EXPECT_EQ(statusOf(bytes({{0x32, 4, 0, 1}, "t", {0}})), DecodeStatus::kTruncated);  // packet id
}

TEST(MqttDecoder, PublishPacketIdZero) {
  EXPECT_EQ(statusOf(bytes({{0x32, 5, 0, 1}, "t", {0, 0}})), DecodeStatus::kZeroPacketId);
  EXPECT_EQ(statusOf(bytes({{0x34, 5, 0, 1}, "t", {0, 0}})), DecodeStatus::kZeroPacketId);
  // At QoS 0 there is no packet id: these two bytes are payload.
  const std::string wire = bytes({{0x30, 5, 0, 1}, "t", {0, 0}});
  EXPECT_EQ(decodeAs<Publish>(wire).payload.size(), 2u);
}

// ---- Acknowledgement errors --------------------------------------------------------------------

TEST(MqttDecoder, AcknowledgementPacketIdZero) {
  for (const int first : {0x40, 0x50, 0x62, 0x70, 0xB0}) {
    EXPECT_EQ(statusOf(bytes({{first, 2, 0, 0}})), DecodeStatus::kZeroPacketId) << first;
  }
}

TEST(MqttDecoder, ConnackErrors) {
  EXPECT_EQ(statusOf(bytes({{0x20, 2, 2, 0}})), DecodeStatus::kInvalidConnackFlags);
  EXPECT_EQ(statusOf(bytes({{0x20, 2, 0x80, 0}})), DecodeStatus::kInvalidConnackFlags);
  EXPECT_EQ(statusOf(bytes({{0x20, 2, 1, 1}})), DecodeStatus::kInvalidConnackFlags);
  EXPECT_EQ(statusOf(bytes({{0x20, 2, 0, 6}})), DecodeStatus::kInvalidReturnCode);
  EXPECT_EQ(statusOf(bytes({{0x20, 2, 0, 0xFF}})), DecodeStatus::kInvalidReturnCode);
}

// ---- SUBSCRIBE, SUBACK, UNSUBSCRIBE errors -----------------------------------------------------

TEST(MqttDecoder, SubscribeErrors) {
  EXPECT_EQ(statusOf(bytes({{0x82, 2, 0, 1}})), DecodeStatus::kEmptyPayload);
  EXPECT_EQ(statusOf(bytes({{0x82, 0}})), DecodeStatus::kTruncated);
  EXPECT_EQ(statusOf(bytes({{0x82, 1, 0}})), DecodeStatus::kTruncated);
  EXPECT_EQ(statusOf(bytes({{0x82, 6, 0, 0, 0, 1}, "a", {0}})), DecodeStatus::kZeroPacketId);
  EXPECT_EQ(statusOf(bytes({{0x82, 6, 0, 1, 0, 1}, "a", {3}})), DecodeStatus::kInvalidRequestedQos);
  EXPECT_EQ(statusOf(bytes({{0x82, 6, 0, 1, 0, 1}, "a", {4}})),
            DecodeStatus::kSubscriptionReservedBits);
  EXPECT_EQ(statusOf(bytes({{0x82, 6, 0, 1, 0, 1}, "a", {0x81}})),
            DecodeStatus::kSubscriptionReservedBits);
  EXPECT_EQ(statusOf(bytes({{0x82, 5, 0, 1, 0, 1}, "a"})), DecodeStatus::kTruncated);  // no QoS
  EXPECT_EQ(statusOf(bytes({{0x82, 6, 0, 1, 0, 3}, "ab"})), DecodeStatus::kTruncated);
  // A second entry cut short is truncation too: nothing may trail the last whole entry.
  EXPECT_EQ(statusOf(bytes({{0x82, 7, 0, 1, 0, 1}, "a", {0, 0}})), DecodeStatus::kTruncated);
  EXPECT_EQ(statusOf(bytes({{0x82, 6, 0, 1, 0, 1, 0xFF, 0}})), DecodeStatus::kInvalidUtf8);
  EXPECT_EQ(statusOf(bytes({{0x82, 6, 0, 1, 0, 1, 0, 0}})), DecodeStatus::kNulInString);
}

TEST(MqttDecoder, SubackErrors) {
  EXPECT_EQ(statusOf(bytes({{0x90, 2, 0, 1}})), DecodeStatus::kEmptyPayload);
  EXPECT_EQ(statusOf(bytes({{0x90, 3, 0, 0, 0}})), DecodeStatus::kZeroPacketId);
  EXPECT_EQ(statusOf(bytes({{0x90, 3, 0, 1, 3}})), DecodeStatus::kInvalidReturnCode);
  EXPECT_EQ(statusOf(bytes({{0x90, 3, 0, 1, 0x81}})), DecodeStatus::kInvalidReturnCode);
  EXPECT_EQ(statusOf(bytes({{0x90, 1, 0}})), DecodeStatus::kTruncated);
}

TEST(MqttDecoder, UnsubscribeErrors) {
  EXPECT_EQ(statusOf(bytes({{0xA2, 2, 0, 1}})), DecodeStatus::kEmptyPayload);
  EXPECT_EQ(statusOf(bytes({{0xA2, 5, 0, 0, 0, 1}, "a"})), DecodeStatus::kZeroPacketId);
  EXPECT_EQ(statusOf(bytes({{0xA2, 5, 0, 1, 0, 2}, "a"})), DecodeStatus::kTruncated);
  EXPECT_EQ(statusOf(bytes({{0xA2, 6, 0, 1, 0, 1}, "a", {0}})), DecodeStatus::kTruncated);
  EXPECT_EQ(statusOf(bytes({{0xA2, 5, 0, 1, 0, 1, 0x80}})), DecodeStatus::kInvalidUtf8);
  EXPECT_EQ(statusOf(bytes({{0xA2, 5, 0, 1, 0, 1, 0}})), DecodeStatus::kNulInString);
}

TEST(MqttDecoder, ErrorsConsumeNothingAndCarryNoPacket) {
  const DecodeResult r = decode(bytes({{0x30, 5, 0, 3}, "a/+"}));
  EXPECT_EQ(r.status, DecodeStatus::kWildcardInTopicName);
  EXPECT_TRUE(isError(r.status));
  EXPECT_EQ(r.consumed, 0u);
  EXPECT_EQ(r.packetSize, 7u);
  EXPECT_TRUE(std::holds_alternative<std::monostate>(r.packet));
}

TEST(MqttDecoder, StatusDescriptionsAreDistinct) {
  std::set<std::string_view> seen;
  for (int s = 0; s <= static_cast<int>(DecodeStatus::kInvalidReturnCode); ++s) {
    const std::string_view text = describe(static_cast<DecodeStatus>(s));
    EXPECT_FALSE(text.empty()) << s;
    EXPECT_TRUE(seen.insert(text).second) << text;
  }
  EXPECT_FALSE(isError(DecodeStatus::kPacket));
  EXPECT_FALSE(isError(DecodeStatus::kNeedMore));
  EXPECT_TRUE(isError(DecodeStatus::kUnacceptableProtocolLevel));
}

// ---- Streaming ---------------------------------------------------------------------------------

// A stream holding every packet type, with remaining lengths of 1, 2 and 3 bytes.
std::vector<std::string> samplePackets() {
  static const std::string kBigPayload(20'000, 'p');
  static const std::string kMediumPayload(300, 'm');
  std::vector<std::string> packets;
  auto add = [&](auto&& encode) {
    std::string wire;
    encode(wire);
    packets.push_back(std::move(wire));
  };
  Connect c;
  c.clientId = "loadgen-1";
  c.willFlag = true;
  c.willQos = 1;
  c.willTopic = "status/loadgen-1";
  c.willPayload = "offline";
  c.usernameFlag = c.passwordFlag = true;
  c.username = "u";
  c.password = "secret";
  add([&](std::string& w) { appendConnect(w, c); });
  add([](std::string& w) { appendConnack(w, true, ConnectReturnCode::kAccepted); });
  add([](std::string& w) { appendPublish(w, Publish{.topic = "a/b", .payload = "hello"}); });
  add([](std::string& w) {
    appendPublish(w, Publish{.dup = true,
                             .qos = 1,
                             .retain = true,
                             .topic = "x",
                             .packetId = 7,
                             .payload = kMediumPayload});
  });
  add([](std::string& w) {
    appendPublish(w, Publish{.qos = 2, .topic = "big", .packetId = 8, .payload = kBigPayload});
  });
  add([](std::string& w) { appendPuback(w, 7); });
  add([](std::string& w) { appendPubrec(w, 8); });
  add([](std::string& w) { appendPubrel(w, 8); });
  add([](std::string& w) { appendPubcomp(w, 8); });
  add([](std::string& w) {
    const Subscription subs[] = {{"a/+", 0}, {"b/#", 2}, {"", 1}};
    appendSubscribe(w, 9, subs);
  });
  add([](std::string& w) {
    const std::uint8_t codes[] = {0, 2, kSubackFailure};
    appendSuback(w, 9, codes);
  });
  add([](std::string& w) {
    const std::string_view filters[] = {"a/+", "b/#"};
    appendUnsubscribe(w, 10, filters);
  });
  add([](std::string& w) { appendUnsuback(w, 10); });
  add([](std::string& w) { appendPingreq(w); });
  add([](std::string& w) { appendPingresp(w); });
  add([](std::string& w) { appendDisconnect(w); });
  return packets;
}

// Feeds `stream` in chunks of the given sizes (the last chunk takes the rest), the way a
// connection would: append, decode all whole packets, drop them. Returns each decoded packet
// re-encoded, since its views die with the buffer.
std::vector<std::string> decodeInChunks(const std::string& stream,
                                        const std::vector<std::size_t>& chunks) {
  std::vector<std::string> out;
  std::string buffer;
  std::size_t fed = 0;
  std::size_t next = 0;
  while (fed < stream.size()) {
    const std::size_t n =
        next < chunks.size() ? std::min(chunks[next++], stream.size() - fed) : stream.size() - fed;
    buffer.append(stream, fed, n);
    fed += n;
    for (;;) {
      const DecodeResult r = kAnyDecoder.decode(buffer);
      if (r.status == DecodeStatus::kNeedMore) {
        EXPECT_EQ(r.consumed, 0u);
        break;
      }
      EXPECT_EQ(r.status, DecodeStatus::kPacket) << describe(r.status);
      if (r.status != DecodeStatus::kPacket) return out;
      std::string wire;
      EXPECT_TRUE(appendPacket(wire, r.packet));
      out.push_back(std::move(wire));
      buffer.erase(0, r.consumed);
    }
  }
  EXPECT_TRUE(buffer.empty());
  return out;
}

TEST(MqttDecoder, StreamFedByteByByte) {
  const std::vector<std::string> packets = samplePackets();
  std::string stream;
  for (const std::string& p : packets)
    stream += p;
  const std::vector<std::size_t> ones(stream.size(), 1);
  EXPECT_EQ(decodeInChunks(stream, ones), packets);
}

TEST(MqttDecoder, StreamFedAtRandomSplitPoints) {
  const std::vector<std::string> packets = samplePackets();
  std::string stream;
  for (const std::string& p : packets)
    stream += p;
  for (const unsigned seed : {1u, 2u, 3u, 42u, 1234u}) {
    std::mt19937 random(seed);
    std::uniform_int_distribution<std::size_t> size(1, 64);
    std::vector<std::size_t> chunks;
    for (std::size_t total = 0; total < stream.size(); total += chunks.back()) {
      // Mostly small chunks, sometimes a large one that holds several packets.
      chunks.push_back(random() % 8 == 0 ? size(random) * 500 : size(random));
    }
    EXPECT_EQ(decodeInChunks(stream, chunks), packets) << "seed " << seed;
  }
}

TEST(MqttDecoder, StreamInOneBuffer) {
  const std::vector<std::string> packets = samplePackets();
  std::string stream;
  for (const std::string& p : packets)
    stream += p;
  EXPECT_EQ(decodeInChunks(stream, {stream.size()}), packets);
}

TEST(MqttDecoder, ErrorIsTheSameWhateverTheSplit) {
  // A valid PINGREQ followed by a PUBLISH with a wildcard topic.
  const std::string stream = bytes({{0xC0, 0, 0x30, 7, 0, 3}, "a/#", "xy"});
  for (std::size_t split = 0; split <= stream.size(); ++split) {
    std::string buffer = stream.substr(0, split);
    DecodeStatus last = DecodeStatus::kNeedMore;
    for (int round = 0; round < 2; ++round) {
      for (;;) {
        const DecodeResult r = decode(buffer);
        last = r.status;
        if (r.status != DecodeStatus::kPacket) break;
        buffer.erase(0, r.consumed);
      }
      if (isError(last)) break;
      buffer += stream.substr(split);
    }
    EXPECT_EQ(last, DecodeStatus::kWildcardInTopicName) << split;
  }
}

}  // namespace
}  // namespace tern::protocol::mqtt
