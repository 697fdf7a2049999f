// MQTT 5.0 property blocks (src/protocol/mqtt_properties.cpp): what PropertyWriter writes,
// decodeProperties reads back exactly, and every kind of bad block is refused with the reason
// code of the specification (2.2.2): Malformed Packet for bad bytes, Protocol Error for a
// well-formed block the specification forbids.
#include "tern/protocol/mqtt_properties.hpp"

#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

namespace tern::protocol::mqtt {
namespace {

using C = PropertyContext;
using P = PropertyId;

// A block with the given raw entries: the length, then the entries.
std::string block(std::string_view entries) {
  std::string out;
  appendVariableByteInteger(out, static_cast<std::uint32_t>(entries.size()));
  out.append(entries);
  return out;
}

std::string bytes(std::initializer_list<int> values) {
  std::string out;
  for (const int v : values)
    out.push_back(static_cast<char>(v));
  return out;
}

ReasonCode decode(std::string_view in, C context) {
  Properties p;
  return decodeProperties(in, context, p).reason;
}

TEST(MqttProperties, VariableByteIntegersAreMinimalAndAtMostFourBytes) {
  for (const std::uint32_t value :
       {0u, 1u, 127u, 128u, 16'383u, 16'384u, 2'097'151u, 2'097'152u, kMaxVariableByteInteger}) {
    std::string out;
    appendVariableByteInteger(out, value);
    EXPECT_EQ(out.size(), variableByteIntegerSize(value)) << value;
    std::uint32_t back = 0;
    EXPECT_EQ(decodeVariableByteInteger(out, back), static_cast<int>(out.size())) << value;
    EXPECT_EQ(back, value);
    // Every proper prefix ends inside it.
    for (std::size_t n = 0; n < out.size(); ++n)
      EXPECT_EQ(decodeVariableByteInteger(std::string_view(out).substr(0, n), back), 0);
  }
  std::uint32_t v = 0;
  EXPECT_EQ(decodeVariableByteInteger(bytes({0x80, 0x00}), v), -1) << "0 in two bytes";
  EXPECT_EQ(decodeVariableByteInteger(bytes({0xFF, 0x80, 0x00}), v), -1) << "127 in three";
  EXPECT_EQ(decodeVariableByteInteger(bytes({0xFF, 0xFF, 0xFF, 0xFF, 0x01}), v), -1) << "five";
}

TEST(MqttProperties, EveryConnackPropertyRoundTrips) {
  std::string out = "x";  // the writer appends after what is there
  PropertyWriter w(out);
  w.fourByte(P::kSessionExpiryInterval, 0xFFFFFFFF);
  w.twoByte(P::kReceiveMaximum, 20);
  w.byte(P::kMaximumQos, 1);
  w.byte(P::kRetainAvailable, 0);
  w.fourByte(P::kMaximumPacketSize, 268'435'460);
  w.string(P::kAssignedClientIdentifier, "auto-1");
  w.twoByte(P::kTopicAliasMaximum, 10);
  w.string(P::kReasonString, "fine");
  w.userProperty("a", "1");
  w.byte(P::kWildcardSubscriptionAvailable, 0);
  w.byte(P::kSubscriptionIdentifierAvailable, 1);
  w.byte(P::kSharedSubscriptionAvailable, 0);
  w.twoByte(P::kServerKeepAlive, 30);
  w.string(P::kResponseInformation, "resp/");
  w.string(P::kServerReference, "other:1883");
  w.string(P::kAuthenticationMethod, "SCRAM");
  w.string(P::kAuthenticationData, std::string("\0\1\2", 3));
  w.userProperty("b", "2");
  const std::size_t size = w.finish();
  ASSERT_EQ(out.size(), 1 + size);
  EXPECT_EQ(out[0], 'x');

  Properties p;
  const PropertyResult r = decodeProperties(std::string_view(out).substr(1), C::kConnack, p);
  ASSERT_TRUE(r.ok()) << r.detail;
  EXPECT_EQ(r.consumed, size);
  EXPECT_EQ(p.sessionExpiryInterval, 0xFFFFFFFFu);
  EXPECT_EQ(p.receiveMaximum, 20);
  EXPECT_EQ(p.maximumQos, 1);
  EXPECT_EQ(p.retainAvailable, 0);
  EXPECT_EQ(p.maximumPacketSize, 268'435'460u);
  EXPECT_EQ(p.assignedClientIdentifier, "auto-1");
  EXPECT_EQ(p.topicAliasMaximum, 10);
  EXPECT_EQ(p.reasonString, "fine");
  EXPECT_EQ(p.wildcardSubscriptionAvailable, 0);
  EXPECT_EQ(p.subscriptionIdentifierAvailable, 1);
  EXPECT_EQ(p.sharedSubscriptionAvailable, 0);
  EXPECT_EQ(p.serverKeepAlive, 30);
  EXPECT_EQ(p.responseInformation, "resp/");
  EXPECT_EQ(p.serverReference, "other:1883");
  EXPECT_EQ(p.authenticationMethod, "SCRAM");
  EXPECT_EQ(p.authenticationData, std::string_view("\0\1\2", 3));
  EXPECT_EQ(p.userPropertyCount, 2u);
  EXPECT_TRUE(p.has(P::kMaximumQos));
  EXPECT_FALSE(p.has(P::kTopicAlias));
  std::vector<std::pair<std::string, std::string>> users;
  p.forEachUserProperty([&](std::string_view n, std::string_view v) { users.emplace_back(n, v); });
  EXPECT_EQ(users, (std::vector<std::pair<std::string, std::string>>{{"a", "1"}, {"b", "2"}}));
}

TEST(MqttProperties, PublishPropertiesAndDefaults) {
  std::string out;
  PropertyWriter w(out);
  w.byte(P::kPayloadFormatIndicator, 1);
  w.fourByte(P::kMessageExpiryInterval, 60);
  w.twoByte(P::kTopicAlias, 3);
  w.string(P::kResponseTopic, "reply/to");
  w.string(P::kCorrelationData, std::string("\xff\x00", 2));
  w.string(P::kContentType, "text/plain");
  // User Properties keep their order, and a name may repeat [MQTT-3.3.2-18].
  w.userProperty("k", "first");
  w.userProperty("k", "second");
  w.finish();
  Properties p;
  ASSERT_TRUE(decodeProperties(out, C::kPublish, p).ok());
  EXPECT_EQ(p.payloadFormatIndicator, 1);
  EXPECT_EQ(p.messageExpiryInterval, 60u);
  EXPECT_EQ(p.topicAlias, 3);
  EXPECT_EQ(p.responseTopic, "reply/to");
  EXPECT_EQ(p.correlationData, std::string_view("\xff\x00", 2));
  EXPECT_EQ(p.contentType, "text/plain");
  std::string seen;
  p.forEachUserProperty(
      [&](std::string_view, std::string_view v) { seen += std::string(v) + ";"; });
  EXPECT_EQ(seen, "first;second;");
  // The block passes through unchanged.
  std::string copy;
  PropertyWriter again(copy);
  again.raw(p.block);
  again.finish();
  EXPECT_EQ(copy, out);

  // Absent properties read as the specification's defaults.
  Properties empty;
  const PropertyResult r = decodeProperties(bytes({0x00}), C::kConnect, empty);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r.consumed, 1u);
  EXPECT_TRUE(empty.empty());
  EXPECT_EQ(empty.receiveMaximum, 65'535);
  EXPECT_EQ(empty.requestProblemInformation, 1);
  EXPECT_EQ(empty.requestResponseInformation, 0);
  EXPECT_EQ(empty.maximumPacketSize, 0u);
  EXPECT_EQ(empty.maximumQos, 2);
}

TEST(MqttProperties, SubscriptionIdentifiersRepeatOnlyInAPublishToAClient) {
  const std::string two = block(bytes({0x0B, 0x05, 0x0B, 0x80, 0x01}));  // 5, then 128
  Properties p;
  ASSERT_TRUE(decodeProperties(two, C::kPublishToClient, p).ok());
  EXPECT_EQ(p.subscriptionIdentifier, 5u);
  EXPECT_EQ(p.subscriptionIdentifierCount, 2u);
  std::vector<std::uint32_t> ids;
  p.forEachSubscriptionIdentifier([&](std::uint32_t id) { ids.push_back(id); });
  EXPECT_EQ(ids, (std::vector<std::uint32_t>{5, 128}));
  EXPECT_EQ(decode(two, C::kSubscribe), ReasonCode::kProtocolError);
  EXPECT_EQ(decode(block(bytes({0x0B, 0x05})), C::kSubscribe), ReasonCode::kSuccess);
  EXPECT_EQ(decode(block(bytes({0x0B, 0x05})), C::kPublish), ReasonCode::kProtocolError)
      << "a client's PUBLISH carries none [MQTT-3.3.4-6]";
  EXPECT_EQ(decode(block(bytes({0x0B, 0x00})), C::kSubscribe), ReasonCode::kProtocolError)
      << "0 is not an identifier";
}

TEST(MqttProperties, MalformedBlocksAreMalformedPackets) {
  struct Case {
    std::string in;
    C context;
    const char* why;
  };
  const std::vector<Case> cases = {
      {"", C::kConnect, "no length at all"},
      {bytes({0x80}), C::kConnect, "the packet ends inside the length"},
      {bytes({0x80, 0x00}), C::kConnect, "a length not in its minimal form"},
      {bytes({0x05, 0x11, 0x00}), C::kConnect, "longer than the packet"},
      {block(bytes({0x11, 0x00, 0x00})), C::kConnect, "a four-byte value cut short"},
      {block(bytes({0x21, 0x00})), C::kConnect, "a two-byte value cut short"},
      {block(bytes({0x17})), C::kConnect, "a byte value missing"},
      {block(bytes({0x1F, 0x00, 0x05, 'a'})), C::kPuback, "a string cut short"},
      {block(bytes({0x26, 0x00, 0x01, 'a', 0x00})), C::kPuback, "a pair without its value"},
      {block(bytes({0x0B, 0x80})), C::kSubscribe, "a variable value cut short"},
      {block(bytes({0x0B, 0x80, 0x00})), C::kSubscribe, "a variable value not minimal"},
      {block(bytes({0x00})), C::kConnect, "identifier 0 is not defined"},
      {block(bytes({0x04, 0x00})), C::kPublish, "identifier 4 is not defined"},
      {block(bytes({0x2B, 0x00})), C::kConnack, "identifier 0x2B is not defined"},
      {block(bytes({0x81, 0x00, 0x00})), C::kPublish, "an identifier not in its minimal form"},
      {block(bytes({0x24, 0x00})), C::kConnect, "Maximum QoS is for CONNACK only"},
      {block(bytes({0x18, 0, 0, 0, 1})), C::kConnect, "Will Delay Interval is for the will"},
      {block(bytes({0x23, 0x00, 0x01})), C::kWill, "Topic Alias is not for the will"},
      {block(bytes({0x1F, 0x00, 0x00})), C::kPublish, "Reason String is not for PUBLISH"},
      {block(bytes({0x11, 0, 0, 0, 0})), C::kPublish, "Session Expiry is not for PUBLISH"},
      {block(bytes({0x03, 0x00, 0x02, 'a', 0x00})), C::kPublish, "U+0000 in a string"},
      {block(bytes({0x03, 0x00, 0x02, 0xC0, 0x80})), C::kPublish, "an overlong form"},
      {block(bytes({0x26, 0x00, 0x01, 'a', 0x00, 0x01, 0xFF})), C::kPuback, "bad pair value"},
      {block(bytes({0x26, 0x00, 0x01, 0xED, 0x00, 0x00})), C::kPuback, "bad pair name"},
  };
  for (const Case& c : cases) {
    Properties p;
    const PropertyResult r = decodeProperties(c.in, c.context, p);
    EXPECT_EQ(r.reason, ReasonCode::kMalformedPacket) << c.why;
    EXPECT_FALSE(r.detail.empty()) << c.why;
  }
  // Binary data may hold anything.
  EXPECT_EQ(decode(block(bytes({0x09, 0x00, 0x02, 0x00, 0xFF})), C::kPublish),
            ReasonCode::kSuccess);
}

TEST(MqttProperties, ForbiddenValuesAndRepeatsAreProtocolErrors) {
  const std::vector<std::pair<std::string, C>> cases = {
      {block(bytes({0x11, 0, 0, 0, 1, 0x11, 0, 0, 0, 2})), C::kConnect},  // twice
      {block(bytes({0x1F, 0, 0, 0x1F, 0, 0})), C::kPuback},               // Reason String twice
      {block(bytes({0x01, 0x02})), C::kPublish},                          // format 2
      {block(bytes({0x17, 0x02})), C::kConnect},
      {block(bytes({0x19, 0x02})), C::kConnect},
      {block(bytes({0x21, 0x00, 0x00})), C::kConnect},  // Receive Maximum 0
      {block(bytes({0x27, 0, 0, 0, 0})), C::kConnect},  // Maximum Packet Size 0
      {block(bytes({0x23, 0x00, 0x00})), C::kPublish},  // Topic Alias 0
      {block(bytes({0x24, 0x02})), C::kConnack},
      {block(bytes({0x25, 0x02})), C::kConnack},
      {block(bytes({0x28, 0x02})), C::kConnack},
      {block(bytes({0x29, 0x02})), C::kConnack},
      {block(bytes({0x2A, 0x02})), C::kConnack},
  };
  for (std::size_t i = 0; i < cases.size(); ++i)
    EXPECT_EQ(decode(cases[i].first, cases[i].second), ReasonCode::kProtocolError) << i;
  // User Property repeats freely.
  EXPECT_EQ(decode(block(bytes({0x26, 0, 0, 0, 0, 0x26, 0, 0, 0, 0})), C::kDisconnect),
            ReasonCode::kSuccess);
}

TEST(MqttProperties, LongBlocksGetAMultiByteLength) {
  std::string out = "head";
  PropertyWriter w(out);
  const std::string big(300, 'r');
  w.string(P::kReasonString, big);
  w.userProperty("n", std::string(20'000, 'v'));
  const std::size_t size = w.finish();
  const std::string_view written = std::string_view(out).substr(4);
  ASSERT_EQ(written.size(), size);
  std::uint32_t length = 0;
  EXPECT_EQ(decodeVariableByteInteger(written, length), 3);
  EXPECT_EQ(length, size - 3);
  Properties p;
  ASSERT_TRUE(decodeProperties(written, C::kDisconnect, p).ok());
  EXPECT_EQ(p.reasonString, big);
  EXPECT_EQ(p.userPropertyCount, 1u);
}

TEST(MqttProperties, AllowedWhereTheSpecificationSays) {
  EXPECT_TRUE(propertyAllowed(P::kUserProperty, C::kAuth));
  EXPECT_TRUE(propertyAllowed(P::kWillDelayInterval, C::kWill));
  EXPECT_FALSE(propertyAllowed(P::kWillDelayInterval, C::kPublish));
  EXPECT_TRUE(propertyAllowed(P::kMessageExpiryInterval, C::kWill));
  EXPECT_FALSE(propertyAllowed(P::kReasonString, C::kConnect));
  EXPECT_TRUE(propertyAllowed(P::kServerReference, C::kDisconnect));
  EXPECT_FALSE(propertyAllowed(P::kSubscriptionIdentifier, C::kPublish));
  PropertyType type{};
  EXPECT_TRUE(propertyType(0x26, type));
  EXPECT_EQ(type, PropertyType::kUtf8StringPair);
  EXPECT_FALSE(propertyType(0x05, type));
  EXPECT_EQ(describe(ReasonCode::kMalformedPacket), "Malformed Packet");
  EXPECT_EQ(describe(static_cast<ReasonCode>(0x03)), "unknown reason code");
  EXPECT_TRUE(isDefinedReasonCode(0xA2));
  EXPECT_FALSE(isDefinedReasonCode(0xA3));
  EXPECT_TRUE(isFailure(ReasonCode::kServerShuttingDown));
  EXPECT_FALSE(isFailure(ReasonCode::kGrantedQos2));
}

}  // namespace
}  // namespace tern::protocol::mqtt
