#include "tern/protocol/mqtt_packet.hpp"

#include <gtest/gtest.h>

#include <iterator>
#include <string>

namespace tern::protocol::mqtt {
namespace {

Connect withId(std::string_view id, bool cleanSession, std::uint8_t level = kProtocolLevel311) {
  Connect c;
  c.protocolName = level == kProtocolLevel311 ? kProtocolName311 : kProtocolName31;
  c.protocolLevel = level;
  c.clientId = id;
  c.cleanSession = cleanSession;
  return c;
}

TEST(MqttPacket, ClientIdAcceptable) {
  EXPECT_TRUE(clientIdAcceptable(withId("abc", false), 23));
  EXPECT_TRUE(clientIdAcceptable(withId(std::string(23, 'a'), false), 23));
  EXPECT_FALSE(clientIdAcceptable(withId(std::string(24, 'a'), false), 23));
  EXPECT_TRUE(clientIdAcceptable(withId(std::string(24, 'a'), false), 256));
  // Empty: the broker assigns an id, but only for a clean session [MQTT-3.1.3-6/8].
  EXPECT_TRUE(clientIdAcceptable(withId("", true), 23));
  EXPECT_FALSE(clientIdAcceptable(withId("", false), 23));
  // Any well-formed UTF-8 is allowed beyond the required [0-9a-zA-Z] set.
  EXPECT_TRUE(clientIdAcceptable(withId("caf\xC3\xA9/-", true), 23));
}

TEST(MqttPacket, ClientIdRulesOfMqtt31) {
  EXPECT_TRUE(clientIdAcceptable(withId("abc", true, kProtocolLevel31), 256));
  EXPECT_FALSE(clientIdAcceptable(withId("", true, kProtocolLevel31), 256));
  EXPECT_TRUE(clientIdAcceptable(withId(std::string(23, 'a'), true, kProtocolLevel31), 256));
  EXPECT_FALSE(clientIdAcceptable(withId(std::string(24, 'a'), true, kProtocolLevel31), 256));
}

static_assert(std::input_iterator<SubscriptionList::Iterator>);
static_assert(std::input_iterator<FilterList::Iterator>);

TEST(MqttPacket, ListsReadTheWirePayloadInPlace) {
  const std::string wire(
      "\0\x01"
      "a\x02"
      "\0\0\x01",
      7);
  const SubscriptionList list(wire, 2);
  auto it = list.begin();
  ASSERT_NE(it, list.end());
  EXPECT_EQ(*it, (Subscription{"a", 2}));
  EXPECT_EQ((*it).filter.data(), wire.data() + 2);
  ++it;
  EXPECT_EQ(*it, (Subscription{"", 1}));
  ++it;
  EXPECT_EQ(it, list.end());

  const std::string filters(
      "\0\x02"
      "ab"
      "\0\x01"
      "#",
      7);
  const FilterList f(filters, 2);
  auto fi = f.begin();
  EXPECT_EQ(*fi++, "ab");
  EXPECT_EQ(*fi++, "#");
  EXPECT_EQ(fi, f.end());
}

TEST(MqttPacket, EmptyListsIterateNothing) {
  const SubscriptionList subs;
  EXPECT_TRUE(subs.empty());
  EXPECT_EQ(subs.begin(), subs.end());
  const FilterList filters;
  EXPECT_TRUE(filters.empty());
  EXPECT_EQ(filters.begin(), filters.end());
}

TEST(MqttPacket, TypeOfFollowsTheAlternative) {
  EXPECT_EQ(typeOf(Packet{Connect{}}), PacketType::kConnect);
  EXPECT_EQ(typeOf(Packet{Publish{}}), PacketType::kPublish);
  EXPECT_EQ(typeOf(Packet{Subscribe{}}), PacketType::kSubscribe);
  EXPECT_EQ(typeOf(Packet{Disconnect{}}), PacketType::kDisconnect);
  EXPECT_EQ(packetTypeName(PacketType::kUnsuback), "UNSUBACK");
  EXPECT_EQ(packetTypeName(PacketType::kPingreq), "PINGREQ");
}

}  // namespace
}  // namespace tern::protocol::mqtt
