#include "tern/protocol/mqtt_encoder.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>
#include <vector>

#include "tern/protocol/mqtt_decoder.hpp"

namespace tern::protocol::mqtt {
namespace {

std::string octets(std::initializer_list<int> values) {
  std::string out;
  for (const int v : values)
    out.push_back(static_cast<char>(v));
  return out;
}

const Decoder kAnyDecoder(DecoderConfig{kMaxPacketSize, Role::kAny});

// Decodes `wire`, which must hold exactly one valid packet.
Packet decodeOne(std::string_view wire) {
  const DecodeResult r = kAnyDecoder.decode(wire);
  EXPECT_EQ(r.status, DecodeStatus::kPacket) << describe(r.status);
  EXPECT_EQ(r.consumed, wire.size());
  return r.packet;
}

// ---- Remaining length --------------------------------------------------------------------------

TEST(MqttEncoder, RemainingLengthBoundaries) {
  struct Case {
    std::size_t value;
    std::string wire;
  };
  const Case cases[] = {
      {0, octets({0x00})},
      {127, octets({0x7F})},
      {128, octets({0x80, 0x01})},
      {16383, octets({0xFF, 0x7F})},
      {16384, octets({0x80, 0x80, 0x01})},
      {2097151, octets({0xFF, 0xFF, 0x7F})},
      {2097152, octets({0x80, 0x80, 0x80, 0x01})},
      {268435455, octets({0xFF, 0xFF, 0xFF, 0x7F})},
  };
  for (const Case& c : cases) {
    char buffer[4] = {};
    const std::size_t n = encodeRemainingLength(c.value, buffer);
    EXPECT_EQ(std::string(buffer, n), c.wire) << c.value;
    EXPECT_EQ(remainingLengthSize(c.value), c.wire.size()) << c.value;
    EXPECT_EQ(fixedHeaderSize(c.value), 1 + c.wire.size()) << c.value;
  }
}

TEST(MqttEncoder, RemainingLengthDecodesBack) {
  // Every boundary and its neighbours, through the decoder's header parser: a PUBLISH header
  // announcing `value` reports the matching packet size while waiting for the body.
  for (const std::size_t boundary : {127u, 16383u, 2097151u, 268435454u}) {
    for (std::size_t value = boundary - 1; value <= boundary + 1; ++value) {
      std::string wire(1, '\x30');
      char length[4];
      wire.append(length, encodeRemainingLength(value, length));
      const DecodeResult r = kAnyDecoder.decode(wire);
      EXPECT_EQ(r.status, DecodeStatus::kNeedMore) << value;
      EXPECT_EQ(r.packetSize, fixedHeaderSize(value) + value) << value;
    }
  }
}

// ---- Exact bytes -------------------------------------------------------------------------------

TEST(MqttEncoder, ConnackBytes) {
  std::string out;
  appendConnack(out, false, ConnectReturnCode::kAccepted);
  appendConnack(out, true, ConnectReturnCode::kAccepted);
  appendConnack(out, false, ConnectReturnCode::kUnacceptableProtocolVersion);
  EXPECT_EQ(out, octets({0x20, 2, 0, 0, 0x20, 2, 1, 0, 0x20, 2, 0, 1}));
}

TEST(MqttEncoder, PublishBytes) {
  std::string out;
  ASSERT_TRUE(appendPublish(out, Publish{.topic = "a/b", .payload = "hi"}));
  EXPECT_EQ(out, octets({0x30, 7, 0, 3, 'a', '/', 'b', 'h', 'i'}));
  out.clear();
  ASSERT_TRUE(appendPublish(
      out,
      Publish{
          .dup = true, .qos = 1, .retain = true, .topic = "t", .packetId = 0x1234, .payload = ""}));
  EXPECT_EQ(out, octets({0x3B, 5, 0, 1, 't', 0x12, 0x34}));
  out.clear();
  ASSERT_TRUE(appendPublish(out, Publish{.qos = 2, .topic = "t", .packetId = 1, .payload = "x"}));
  EXPECT_EQ(out, octets({0x34, 6, 0, 1, 't', 0, 1, 'x'}));
}

TEST(MqttEncoder, PublishAtQos0NeverSetsDup) {
  std::string out;
  ASSERT_TRUE(appendPublish(out, Publish{.dup = true, .topic = "t", .packetId = 9}));
  EXPECT_EQ(out, octets({0x30, 3, 0, 1, 't'}));  // no DUP, no packet id
}

TEST(MqttEncoder, PublishHeaderLeavesRoomForThePayload) {
  const std::string payload(200, 'z');
  const Publish p{.qos = 1, .topic = "s/t", .packetId = 5, .payload = payload};
  std::string whole;
  ASSERT_TRUE(appendPublish(whole, p));
  std::string header;
  ASSERT_TRUE(appendPublishHeader(header, p));
  EXPECT_EQ(header.size(), fixedHeaderSize(publishRemainingLength(p)) + 2 + 3 + 2);
  EXPECT_EQ(header + payload, whole);
}

TEST(MqttEncoder, PublishThatCannotBeEncodedAppendsNothing) {
  std::string out = "keep";
  const std::string topic(kMaxStringBytes + 1, 't');
  EXPECT_FALSE(appendPublish(out, Publish{.topic = topic}));
  EXPECT_FALSE(appendPublishHeader(out, Publish{.topic = topic}));
  // A payload view that claims more than a packet can hold; never read.
  const std::string_view huge(topic.data(), kMaxRemainingLength);
  EXPECT_FALSE(appendPublishHeader(out, Publish{.topic = "t", .payload = huge}));
  EXPECT_EQ(out, "keep");
}

TEST(MqttEncoder, AcknowledgementBytes) {
  std::string out;
  appendPuback(out, 1);
  appendPubrec(out, 0x0102);
  appendPubrel(out, 3);
  appendPubcomp(out, 4);
  appendUnsuback(out, 0xFFFF);
  EXPECT_EQ(out, octets({0x40, 2, 0,    1, 0x50, 2, 1,    2, 0x62, 2,
                         0,    3, 0x70, 2, 0,    4, 0xB0, 2, 0xFF, 0xFF}));
}

TEST(MqttEncoder, EmptyPacketBytes) {
  std::string out;
  appendPingreq(out);
  appendPingresp(out);
  appendDisconnect(out);
  EXPECT_EQ(out, octets({0xC0, 0, 0xD0, 0, 0xE0, 0}));
}

TEST(MqttEncoder, SubackBytes) {
  std::string out;
  const std::uint8_t codes[] = {0, 1, 2, kSubackFailure};
  appendSuback(out, 10, codes);
  EXPECT_EQ(out, octets({0x90, 6, 0, 10, 0, 1, 2, 0x80}));
}

TEST(MqttEncoder, ConnectBytes) {
  Connect c;
  c.cleanSession = true;
  c.keepAlive = 60;
  c.clientId = "id";
  std::string out;
  appendConnect(out, c);
  EXPECT_EQ(out, octets({0x10, 14, 0, 4, 'M', 'Q', 'T', 'T', 4, 0x02, 0, 60, 0, 2, 'i', 'd'}));

  c.willFlag = true;
  c.willQos = 2;
  c.willRetain = true;
  c.willTopic = "w";
  c.willPayload = "p";
  c.usernameFlag = c.passwordFlag = true;
  c.username = "u";
  c.password = "s";
  out.clear();
  appendConnect(out, c);
  EXPECT_EQ(out, octets({0x10, 26,  0, 4, 'M', 'Q', 'T', 'T', 4, 0xF6, 0,   60, 0, 2,
                         'i',  'd', 0, 1, 'w', 0,   1,   'p', 0, 1,    'u', 0,  1, 's'}));
}

TEST(MqttEncoder, SubscribeAndUnsubscribeBytes) {
  std::string out;
  const Subscription subs[] = {{"a/b", 1}, {"#", 0}};
  appendSubscribe(out, 10, subs);
  EXPECT_EQ(out, octets({0x82, 12, 0, 10, 0, 3, 'a', '/', 'b', 1, 0, 1, '#', 0}));
  out.clear();
  const std::string_view filters[] = {"a/b", "#"};
  appendUnsubscribe(out, 11, filters);
  EXPECT_EQ(out, octets({0xA2, 10, 0, 11, 0, 3, 'a', '/', 'b', 0, 1, '#'}));
}

TEST(MqttEncoder, AppendsAfterExistingBytes) {
  std::string out = "prefix";
  appendPuback(out, 1);
  EXPECT_EQ(out, "prefix" + octets({0x40, 2, 0, 1}));
}

// ---- Round trips: encode, decode, compare ------------------------------------------------------

TEST(MqttEncoder, RoundTripConnect) {
  Connect c;
  c.protocolName = kProtocolName31;
  c.protocolLevel = kProtocolLevel31;
  c.cleanSession = false;
  c.willFlag = true;
  c.willQos = 1;
  c.willTopic = "last/will";
  c.willPayload = std::string_view("\0\xFF", 2);
  c.usernameFlag = true;
  c.username = "user";
  c.passwordFlag = true;
  c.password = "pw";
  c.keepAlive = 65535;
  c.clientId = "client-\xC3\xA9";
  std::string wire;
  appendConnect(wire, c);
  EXPECT_EQ(std::get<Connect>(decodeOne(wire)), c);

  const Connect minimal;  // "MQTT" 4, clean session, empty client id
  wire.clear();
  appendConnect(wire, minimal);
  EXPECT_EQ(std::get<Connect>(decodeOne(wire)), minimal);
}

TEST(MqttEncoder, RoundTripConnack) {
  for (int code = 0; code <= 5; ++code) {
    const Connack a{code == 0, static_cast<ConnectReturnCode>(code)};
    std::string wire;
    appendConnack(wire, a.sessionPresent, a.returnCode);
    EXPECT_EQ(std::get<Connack>(decodeOne(wire)), a);
  }
}

TEST(MqttEncoder, RoundTripPublish) {
  const std::string payload(70'000, '\xAB');
  for (std::uint8_t qos = 0; qos <= 2; ++qos) {
    for (const bool flag : {false, true}) {
      const Publish p{.dup = flag && qos > 0,
                      .qos = qos,
                      .retain = flag,
                      .topic = "sensors/\xE2\x82\xAC/1",
                      .packetId = static_cast<std::uint16_t>(qos ? 99 : 0),
                      .payload = flag ? std::string_view(payload) : std::string_view()};
      std::string wire;
      ASSERT_TRUE(appendPublish(wire, p));
      EXPECT_EQ(std::get<Publish>(decodeOne(wire)), p);
    }
  }
}

TEST(MqttEncoder, RoundTripAcknowledgements) {
  std::string wire;
  appendPuback(wire, 1);
  EXPECT_EQ(std::get<Puback>(decodeOne(wire)).packetId, 1);
  wire.clear();
  appendPubrec(wire, 2);
  EXPECT_EQ(std::get<Pubrec>(decodeOne(wire)).packetId, 2);
  wire.clear();
  appendPubrel(wire, 3);
  EXPECT_EQ(std::get<Pubrel>(decodeOne(wire)).packetId, 3);
  wire.clear();
  appendPubcomp(wire, 4);
  EXPECT_EQ(std::get<Pubcomp>(decodeOne(wire)).packetId, 4);
  wire.clear();
  appendUnsuback(wire, 5);
  EXPECT_EQ(std::get<Unsuback>(decodeOne(wire)).packetId, 5);
}

TEST(MqttEncoder, RoundTripSubscribe) {
  const Subscription subs[] = {{"a/+/c", 0}, {"#", 1}, {"$SYS/x", 2}, {"bad#", 0}};
  std::string wire;
  appendSubscribe(wire, 77, subs);
  const Subscribe s = std::get<Subscribe>(decodeOne(wire));
  EXPECT_EQ(s.packetId, 77);
  EXPECT_EQ(std::vector<Subscription>(s.subscriptions.begin(), s.subscriptions.end()),
            std::vector<Subscription>(std::begin(subs), std::end(subs)));
}

TEST(MqttEncoder, RoundTripSuback) {
  const std::uint8_t codes[] = {kSubackFailure, 2, 1, 0};
  std::string wire;
  appendSuback(wire, 78, codes);
  const Suback s = std::get<Suback>(decodeOne(wire));
  EXPECT_EQ(s.packetId, 78);
  EXPECT_EQ(std::vector<std::uint8_t>(s.returnCodes.begin(), s.returnCodes.end()),
            std::vector<std::uint8_t>(std::begin(codes), std::end(codes)));
}

TEST(MqttEncoder, RoundTripUnsubscribe) {
  const std::string_view filters[] = {"a/+/c", "#", ""};
  std::string wire;
  appendUnsubscribe(wire, 79, filters);
  const Unsubscribe u = std::get<Unsubscribe>(decodeOne(wire));
  EXPECT_EQ(u.packetId, 79);
  EXPECT_EQ(std::vector<std::string_view>(u.filters.begin(), u.filters.end()),
            std::vector<std::string_view>(std::begin(filters), std::end(filters)));
}

TEST(MqttEncoder, RoundTripEmptyPackets) {
  std::string wire;
  appendPingreq(wire);
  EXPECT_TRUE(std::holds_alternative<Pingreq>(decodeOne(wire)));
  wire.clear();
  appendPingresp(wire);
  EXPECT_TRUE(std::holds_alternative<Pingresp>(decodeOne(wire)));
  wire.clear();
  appendDisconnect(wire);
  EXPECT_TRUE(std::holds_alternative<Disconnect>(decodeOne(wire)));
}

TEST(MqttEncoder, AppendPacketReproducesTheWireBytes) {
  // Decode a packet of every type and re-encode the value: the bytes come back unchanged.
  const std::string wires[] = {
      octets({0x10, 18, 0, 4, 'M', 'Q', 'T', 'T', 4, 0xC2, 0, 5, 0, 1, 'c', 0, 1, 'u', 0, 0}),
      octets({0x20, 2, 1, 0}),
      octets({0x3D, 6, 0, 1, 't', 0, 9, 'p'}),
      octets({0x40, 2, 0, 1}),
      octets({0x50, 2, 0, 2}),
      octets({0x62, 2, 0, 3}),
      octets({0x70, 2, 0, 4}),
      octets({0x82, 8, 0, 5, 0, 3, 'a', '/', '+', 2}),
      octets({0x90, 4, 0, 5, 2, 0x80}),
      octets({0xA2, 7, 0, 6, 0, 3, 'a', '/', '+'}),
      octets({0xB0, 2, 0, 6}),
      octets({0xC0, 0}),
      octets({0xD0, 0}),
      octets({0xE0, 0}),
  };
  for (const std::string& wire : wires) {
    const Packet packet = decodeOne(wire);
    std::string again;
    ASSERT_TRUE(appendPacket(again, packet));
    EXPECT_EQ(again, wire) << packetTypeName(typeOf(packet));
  }
  std::string none;
  EXPECT_FALSE(appendPacket(none, Packet{}));
  EXPECT_TRUE(none.empty());
}

}  // namespace
}  // namespace tern::protocol::mqtt
