// MQTT 5.0 packets: the layouts of OASIS MQTT Version 5.0 chapter 3, decoded and encoded, and
// every check of a 5.0 body that the decoder makes.
#include <gtest/gtest.h>

#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>
#include <vector>

#include "tern/protocol/mqtt_decoder.hpp"
#include "tern/protocol/mqtt_encoder.hpp"
#include "unit/protocol/wire_bytes.hpp"

namespace tern::protocol::mqtt {
namespace {

using testing::bytes;

const Decoder kServer(DecoderConfig{kMaxPacketSize, Role::kServer});
const Decoder kClient(DecoderConfig{kMaxPacketSize, Role::kClient});

DecodeResult decode5(std::string_view wire, const Decoder& d = kServer) {
  return d.decode(wire, kProtocolLevel5);
}

template <typename T>
T as(const std::string&& wire, const Decoder& d = kServer) = delete;
template <typename T>
T as(const std::string& wire, const Decoder& d = kServer) {
  const DecodeResult r = decode5(wire, d);
  EXPECT_EQ(r.status, DecodeStatus::kPacket) << describe(r.status) << " " << r.detail;
  EXPECT_EQ(r.consumed, wire.size());
  const T* p = std::get_if<T>(&r.packet);
  EXPECT_NE(p, nullptr);
  return p != nullptr ? *p : T{};
}

// Every split of the bytes gives kNeedMore until the last byte, then the same packet.
void expectSplitInvariant(const std::string& wire, const Decoder& d) {
  for (std::size_t n = 0; n < wire.size(); ++n)
    ASSERT_EQ(decode5(std::string_view(wire).substr(0, n), d).status, DecodeStatus::kNeedMore) << n;
  EXPECT_EQ(decode5(wire, d).status, DecodeStatus::kPacket);
}

TEST(Mqtt5Codec, ConnectWithPropertiesWillPropertiesAndPasswordOnly) {
  // 3.1.2: "MQTT" 5, Clean Start + will (QoS 1) + password without user name (allowed in 5.0),
  // keep alive 60, Session Expiry Interval 120 and Receive Maximum 10; will with Will Delay 5.
  const std::string wire = bytes({{0x10, 41, 0, 4},
                                  "MQTT",
                                  {5, 0x4E, 0, 60, 8, 0x11, 0, 0, 0, 120, 0x21, 0, 10},
                                  {0, 2},
                                  "id",
                                  {5, 0x18, 0, 0, 0, 5},
                                  {0, 3},
                                  "w/t",
                                  {0, 1},
                                  "x",
                                  {0, 2},
                                  "pw"});
  const Connect c = as<Connect>(wire);
  EXPECT_EQ(c.protocolLevel, kProtocolLevel5);
  EXPECT_TRUE(c.cleanSession);
  EXPECT_TRUE(c.willFlag);
  EXPECT_EQ(c.willQos, 1);
  EXPECT_TRUE(c.passwordFlag);
  EXPECT_FALSE(c.usernameFlag);
  EXPECT_EQ(c.properties.sessionExpiryInterval, 120u);
  EXPECT_EQ(c.properties.receiveMaximum, 10);
  EXPECT_EQ(c.willProperties.willDelayInterval, 5u);
  EXPECT_EQ(c.willTopic, "w/t");
  EXPECT_EQ(c.password, "pw");
  std::string again;
  appendConnect(again, c);
  EXPECT_EQ(again, wire);
  expectSplitInvariant(wire, kServer);
}

TEST(Mqtt5Codec, ConnectPropertyErrorsCarryTheirReason) {
  // Receive Maximum 0 is a Protocol Error; an unknown identifier is Malformed.
  const DecodeResult zero =
      decode5(bytes({{0x10, 16, 0, 4}, "MQTT", {5, 0x02, 0, 0, 3, 0x21, 0, 0}, {0, 1}, "c"}));
  EXPECT_EQ(zero.status, DecodeStatus::kPropertyProtocolError);
  EXPECT_EQ(disconnectReason(zero.status), ReasonCode::kProtocolError);
  EXPECT_FALSE(zero.detail.empty());
  const DecodeResult unknown =
      decode5(bytes({{0x10, 15, 0, 4}, "MQTT", {5, 0x02, 0, 0, 2, 0x7F, 0}, {0, 1}, "c"}));
  EXPECT_EQ(unknown.status, DecodeStatus::kMalformedProperties);
  EXPECT_EQ(disconnectReason(unknown.status), ReasonCode::kMalformedPacket);
}

TEST(Mqtt5Codec, ConnackWithProperties) {
  std::string props;
  {
    PropertyWriter w(props);
    w.twoByte(PropertyId::kReceiveMaximum, 100);
    w.string(PropertyId::kAssignedClientIdentifier, "auto-1");
    w.finish();
  }
  const std::string entries = props.substr(1);  // the writer's block without its length byte
  std::string wire;
  appendConnack5(wire, true, ReasonCode::kSuccess, entries);
  EXPECT_EQ(wire, bytes({{0x20, 15, 1, 0, 12, 0x21, 0, 100, 0x12, 0, 6}, "auto-1"}));
  const Connack c = as<Connack>(wire, kClient);
  EXPECT_TRUE(c.sessionPresent);
  EXPECT_EQ(c.properties.receiveMaximum, 100);
  EXPECT_EQ(c.properties.assignedClientIdentifier, "auto-1");
  // A refusal that claims a session is malformed [MQTT-3.2.2-6]; so is a PUBACK-only code.
  EXPECT_EQ(decode5(bytes({{0x20, 3, 1, 0x87, 0}}), kClient).status,
            DecodeStatus::kInvalidConnackFlags);
  EXPECT_EQ(decode5(bytes({{0x20, 3, 0, 0x10, 0}}), kClient).status,
            DecodeStatus::kInvalidReasonCode);
}

TEST(Mqtt5Codec, PublishPropertiesAndTopicAlias) {
  std::string props;
  {
    PropertyWriter w(props);
    w.byte(PropertyId::kPayloadFormatIndicator, 1);
    w.fourByte(PropertyId::kMessageExpiryInterval, 30);
    w.userProperty("k", "v");
    w.finish();
  }
  Publish p;
  p.qos = 1;
  p.packetId = 7;
  p.topic = "a/b";
  p.payload = "hello";
  std::string wire;
  ASSERT_TRUE(appendPublish5(wire, p, std::string_view(props).substr(1)));
  const Publish d = as<Publish>(wire);
  EXPECT_EQ(d.topic, "a/b");
  EXPECT_EQ(d.packetId, 7);
  EXPECT_EQ(d.payload, "hello");
  EXPECT_EQ(d.properties.payloadFormatIndicator, 1);
  EXPECT_EQ(d.properties.messageExpiryInterval, 30u);
  EXPECT_EQ(d.properties.userPropertyCount, 1u);
  expectSplitInvariant(wire, kServer);
  // 3.1.1 layout of the same bytes: the property block is read as payload.
  EXPECT_EQ(std::get<Publish>(kServer.decode(wire).packet).payload.size(),
            d.payload.size() + props.size());

  // An empty topic is allowed with a Topic Alias [MQTT-3.3.2-8], a Protocol Error without.
  const std::string aliased = bytes({{0x30, 7, 0, 0, 3, 0x23, 0, 1}, "x"});
  EXPECT_EQ(as<Publish>(aliased).properties.topicAlias, 1);
  const DecodeResult bare = decode5(bytes({{0x30, 4, 0, 0, 0}, "x"}));
  EXPECT_EQ(bare.status, DecodeStatus::kEmptyTopicName);
  EXPECT_EQ(disconnectReason(bare.status), ReasonCode::kProtocolError);
  // A Subscription Identifier from a client is a Protocol Error [MQTT-3.3.4-6]; from the server
  // it may repeat.
  const std::string withIds = bytes({{0x30, 9, 0, 1}, "t", {4, 0x0B, 1, 0x0B, 2}, "x"});
  EXPECT_EQ(decode5(withIds).status, DecodeStatus::kPropertyProtocolError);
  const Publish toClient = as<Publish>(withIds, kClient);
  std::vector<std::uint32_t> ids;
  toClient.properties.forEachSubscriptionIdentifier([&](std::uint32_t id) { ids.push_back(id); });
  EXPECT_EQ(ids, (std::vector<std::uint32_t>{1, 2}));
}

TEST(Mqtt5Codec, AcknowledgementsShortAndLongForms) {
  // Remaining length 2: Success without properties (3.4.2.1), both ways.
  std::string shortForm;
  appendAck5(shortForm, PacketType::kPuback, 9, ReasonCode::kSuccess);
  EXPECT_EQ(shortForm, bytes({{0x40, 2, 0, 9}}));
  EXPECT_EQ(as<Puback>(shortForm).reason, ReasonCode::kSuccess);
  // Reason only (remaining length 3), and reason with a Reason String.
  const std::string reasonOnly = bytes({{0x50, 3, 0, 9, 0x10}});
  EXPECT_EQ(as<Pubrec>(reasonOnly).reason, ReasonCode::kNoMatchingSubscribers);
  std::string longForm;
  appendAck5(longForm, PacketType::kPubrel, 9, ReasonCode::kPacketIdentifierNotFound,
             bytes({{0x1F, 0, 2}, "no"}));
  EXPECT_EQ(longForm, bytes({{0x62, 9, 0, 9, 0x92, 5, 0x1F, 0, 2}, "no"}));
  const Pubrel rel = as<Pubrel>(longForm);
  EXPECT_EQ(rel.reason, ReasonCode::kPacketIdentifierNotFound);
  EXPECT_EQ(rel.properties.reasonString, "no");
  expectSplitInvariant(longForm, kServer);
  // Codes another acknowledgement carries are refused: PUBCOMP 0x10, PUBACK 0x92.
  EXPECT_EQ(decode5(bytes({{0x70, 3, 0, 9, 0x10}})).status, DecodeStatus::kInvalidReasonCode);
  EXPECT_EQ(decode5(bytes({{0x40, 3, 0, 9, 0x92}})).status, DecodeStatus::kInvalidReasonCode);
  EXPECT_EQ(decode5(bytes({{0x40, 5, 0, 9, 0, 0, 1}})).status, DecodeStatus::kTrailingBytes);
}

TEST(Mqtt5Codec, SubscribeOptionsAndSubscriptionIdentifier) {
  std::vector<Subscription> subs = {{"a/#", 1, true, true, 2}, {"b", 2, false, false, 1}};
  std::string wire;
  appendSubscribe5(wire, 5, subs, bytes({{0x0B, 42}}));
  EXPECT_EQ(wire, bytes({{0x82, 15, 0, 5, 2, 0x0B, 42, 0, 3}, "a/#", {0x2D, 0, 1}, "b", {0x12}}));
  const Subscribe s = as<Subscribe>(wire);
  EXPECT_EQ(s.properties.subscriptionIdentifier, 42u);
  std::vector<Subscription> got(s.subscriptions.begin(), s.subscriptions.end());
  EXPECT_EQ(got, subs);
  // Reserved option bits 6-7 are malformed, Retain Handling 3 a Protocol Error.
  EXPECT_EQ(decode5(bytes({{0x82, 7, 0, 5, 0, 0, 1}, "a", {0x40}})).status,
            DecodeStatus::kSubscriptionReservedBits);
  const DecodeResult rh3 = decode5(bytes({{0x82, 7, 0, 5, 0, 0, 1}, "a", {0x30}}));
  EXPECT_EQ(rh3.status, DecodeStatus::kInvalidRetainHandling);
  EXPECT_EQ(disconnectReason(rh3.status), ReasonCode::kProtocolError);
  // In 3.1.1 the same option bits are reserved.
  EXPECT_EQ(kServer.decode(bytes({{0x82, 6, 0, 5, 0, 1}, "a", {0x04}})).status,
            DecodeStatus::kSubscriptionReservedBits);
}

TEST(Mqtt5Codec, SubackUnsubscribeUnsuback) {
  const std::uint8_t codes[] = {0x01, 0x8F, 0xA2};
  std::string suback;
  appendSuback5(suback, 3, codes);
  EXPECT_EQ(suback, bytes({{0x90, 6, 0, 3, 0, 0x01, 0x8F, 0xA2}}));
  const Suback s = as<Suback>(suback, kClient);
  EXPECT_EQ(std::vector<std::uint8_t>(s.returnCodes.begin(), s.returnCodes.end()),
            std::vector<std::uint8_t>(std::begin(codes), std::end(codes)));
  EXPECT_EQ(decode5(bytes({{0x90, 4, 0, 3, 0, 0x11}}), kClient).status,
            DecodeStatus::kInvalidReasonCode);

  const std::string_view filters[] = {"a/+", "b"};
  std::string unsubscribe;
  appendUnsubscribe5(unsubscribe, 4, filters);
  const Unsubscribe u = as<Unsubscribe>(unsubscribe);
  EXPECT_EQ(u.filters.size(), 2u);
  EXPECT_EQ(*u.filters.begin(), "a/+");

  const std::uint8_t unsubCodes[] = {0x00, 0x11};
  std::string unsuback;
  appendUnsuback5(unsuback, 4, unsubCodes);
  EXPECT_EQ(unsuback, bytes({{0xB0, 5, 0, 4, 0, 0x00, 0x11}}));
  EXPECT_EQ(as<Unsuback>(unsuback, kClient).reasonCodes.size(), 2u);
}

TEST(Mqtt5Codec, DisconnectAndAuth) {
  std::string normal;
  appendDisconnect5(normal, ReasonCode::kSuccess);
  EXPECT_EQ(normal, bytes({{0xE0, 0}}));
  EXPECT_EQ(as<Disconnect>(normal).reason, ReasonCode::kSuccess);
  std::string withWill;
  appendDisconnect5(withWill, ReasonCode::kDisconnectWithWill, bytes({{0x11, 0, 0, 0, 9}}));
  const Disconnect d = as<Disconnect>(withWill);
  EXPECT_EQ(d.reason, ReasonCode::kDisconnectWithWill);
  EXPECT_EQ(d.properties.sessionExpiryInterval, 9u);
  // The server's DISCONNECT reaches a 5.0 client, not a 3.1.1 one.
  std::string takeover;
  appendDisconnect5(takeover, ReasonCode::kSessionTakenOver);
  EXPECT_EQ(as<Disconnect>(takeover, kClient).reason, ReasonCode::kSessionTakenOver);
  EXPECT_EQ(kClient.decode(takeover).status, DecodeStatus::kUnexpectedPacketType);
  EXPECT_EQ(decode5(bytes({{0xE0, 1, 0x10}})).status, DecodeStatus::kInvalidReasonCode);

  std::string auth;
  appendAuth5(auth, ReasonCode::kContinueAuthentication, bytes({{0x15, 0, 1}, "X"}));
  EXPECT_EQ(as<Auth>(auth).properties.authenticationMethod, "X");
  EXPECT_EQ(kServer.decode(auth).status, DecodeStatus::kReservedPacketType) << "no AUTH in 3.1.1";
}

TEST(Mqtt5Codec, AppendPacketRoundTripsEveryDecodedPacket) {
  std::string publishProps = bytes({{0x03, 0, 4}, "text", {0x26, 0, 1}, "k", {0, 1}, "v"});
  std::vector<std::string> wires;
  {
    std::string w;
    Publish p;
    p.topic = "t";
    p.payload = "x";
    appendPublish5(w, p, publishProps);
    wires.push_back(w);
  }
  wires.push_back(bytes({{0x40, 2, 0, 1}}));
  wires.push_back(bytes({{0x62, 3, 0, 1, 0x92}}));
  wires.push_back(bytes({{0x82, 9, 0, 5, 2, 0x0B, 1, 0, 1}, "a", {0x01}}));
  wires.push_back(bytes({{0xA2, 6, 0, 5, 0, 0, 1}, "a"}));
  wires.push_back(bytes({{0xC0, 0}}));
  wires.push_back(bytes({{0xE0, 1, 0x04}}));
  wires.push_back(bytes({{0xF0, 2, 0x18, 0}}));
  for (const std::string& wire : wires) {
    const DecodeResult r = decode5(wire);
    ASSERT_EQ(r.status, DecodeStatus::kPacket) << describe(r.status);
    std::string again;
    ASSERT_TRUE(appendPacket(again, r.packet, kProtocolLevel5));
    // The encoder writes the shortest form: an empty property block is left out.
    if (wire == bytes({{0xF0, 2, 0x18, 0}})) {
      EXPECT_EQ(again, bytes({{0xF0, 1, 0x18}}));
    } else {
      EXPECT_EQ(again, wire);
    }
  }
}

}  // namespace
}  // namespace tern::protocol::mqtt
