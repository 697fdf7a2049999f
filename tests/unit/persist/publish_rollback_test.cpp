#include "tern/persist/publish_rollback.hpp"

#include <gtest/gtest.h>

#include <vector>

namespace tern::persist {
namespace {

// A loaded publisher session with its inbound records (packet-id order, as the store loads them).
LoadedSession publisher(std::string clientId, std::vector<InboundQos2> inbound) {
  LoadedSession s;
  s.session.clientId = std::move(clientId);
  s.session.protocolLevel = 4;
  s.inbound = std::move(inbound);
  return s;
}

MessageRecord named(std::string clientId, std::uint16_t packetId, std::uint64_t serial) {
  MessageRecord m{7, "t", "x", 2, false, "", 0};
  m.publisherId = std::move(clientId);
  m.publisherPacketId = packetId;
  m.publishSerial = serial;
  return m;
}

TEST(PublishRollback, RollsBackOnlyAPublishNeitherResolvedNorWithItsIdStored) {
  // p: resolved through serial 10; id 3 awaiting PUBREL with serial 20; id 4 released and kept
  // with serial 30 (released while 3 still waited).
  const LoadedSession p =
      publisher("p", {{"p", 0, 10, true}, {"p", 3, 20, false}, {"p", 4, 30, true}});
  PublishRollback rollback;
  rollback.addPublisher(p);
  EXPECT_FALSE(rollback.rollsBack(named("p", 9, 10))) << "at the resolved-through serial";
  EXPECT_FALSE(rollback.rollsBack(named("p", 9, 5))) << "below it";
  EXPECT_FALSE(rollback.rollsBack(named("p", 3, 20))) << "its id awaits PUBREL";
  EXPECT_FALSE(rollback.rollsBack(named("p", 4, 30))) << "its id released and kept";
  EXPECT_FALSE(rollback.rollsBack(named("p", 4, 25)))
      << "an older publish of an id a later one reused: the id was stored since";
  EXPECT_TRUE(rollback.rollsBack(named("p", 9, 11))) << "no record of its id";
  EXPECT_TRUE(rollback.rollsBack(named("p", 3, 40))) << "its id stored for an older publish only";
  EXPECT_TRUE(rollback.rollsBack(named("p", 5, 40))) << "past every id record";
}

TEST(PublishRollback, KeepsWhatNoPublisherWillSendAgain) {
  const LoadedSession old = publisher("old", {{"old", 3, 0, false}});  // written by tern < v2
  const LoadedSession none = publisher("none", {});
  PublishRollback rollback;
  rollback.addPublisher(old);
  rollback.addPublisher(none);
  EXPECT_FALSE(rollback.rollsBack(named("gone", 1, 50))) << "the publisher's session ended";
  EXPECT_FALSE(rollback.rollsBack(named("old", 1, 50))) << "no resolved-through record";
  EXPECT_FALSE(rollback.rollsBack(named("none", 1, 50))) << "no resolved-through record";
  MessageRecord unnamed{7, "t", "x", 2, false, "", 0};
  EXPECT_FALSE(rollback.rollsBack(unnamed)) << "not named";
  EXPECT_EQ(PublishRollback::resolvedThrough(old), 0u);
  EXPECT_EQ(PublishRollback::resolvedThrough(publisher("p", {{"p", 0, 10, true}})), 10u);
}

}  // namespace
}  // namespace tern::persist
