#include "broker/sys_topics.hpp"

#include <gtest/gtest.h>

#include <map>
#include <string>

namespace tern::broker {
namespace {

using Published = std::map<std::string, std::string>;

Published update(SysTopics& sys, std::int64_t now, const SysFigures& f) {
  Published out;
  sys.update(now, f, [&out](std::string_view topic, std::string_view payload) {
    EXPECT_TRUE(out.emplace(topic, payload).second) << "published twice: " << topic;
  });
  return out;
}

constexpr std::int64_t kSecond = 1'000'000'000;

TEST(SysTopics, FirstUpdatePublishesEveryTopicUnderMosquittosNames) {
  SysTopics sys("1.2.3");
  SysFigures f;
  f.uptimeSeconds = 7;
  f.clientsConnected = 3;
  f.clientsTotal = 5;
  f.received = 40;
  f.sent = 80;
  f.dropped = 1;
  f.bytesReceived = 1000;
  f.bytesSent = 2000;
  f.subscriptions = 6;
  f.retained = 2;
  f.queued = 9;
  const Published p = update(sys, kSecond, f);
  EXPECT_EQ(p.size(), 15u + 12u);
  EXPECT_EQ(p.at("$SYS/broker/version"), "tern version 1.2.3");
  EXPECT_EQ(p.at("$SYS/broker/uptime"), "7 seconds");
  EXPECT_EQ(p.at("$SYS/broker/clients/connected"), "3");
  EXPECT_EQ(p.at("$SYS/broker/clients/total"), "5");
  EXPECT_EQ(p.at("$SYS/broker/clients/expired"), "0");
  EXPECT_EQ(p.at("$SYS/broker/messages/received"), "40");
  EXPECT_EQ(p.at("$SYS/broker/messages/sent"), "80");
  EXPECT_EQ(p.at("$SYS/broker/publish/messages/received"), "40");
  EXPECT_EQ(p.at("$SYS/broker/publish/messages/sent"), "80");
  EXPECT_EQ(p.at("$SYS/broker/publish/messages/dropped"), "1");
  EXPECT_EQ(p.at("$SYS/broker/bytes/received"), "1000");
  EXPECT_EQ(p.at("$SYS/broker/bytes/sent"), "2000");
  EXPECT_EQ(p.at("$SYS/broker/subscriptions/count"), "6");
  EXPECT_EQ(p.at("$SYS/broker/retained messages/count"), "2");
  EXPECT_EQ(p.at("$SYS/broker/store/messages/count"), "9");
  // The averages start at 0: the counters before the first update are not a rate.
  for (const char* series : {"messages/received", "messages/sent", "bytes/received", "bytes/sent"})
    for (const char* window : {"1min", "5min", "15min"})
      EXPECT_EQ(p.at(std::string("$SYS/broker/load/") + series + "/" + window), "0.00");
}

TEST(SysTopics, LaterUpdatesPublishOnlyWhatChanged) {
  SysTopics sys("1");
  SysFigures f;
  update(sys, kSecond, f);
  f.uptimeSeconds = 10;
  f.clientsConnected = 1;
  const Published p = update(sys, 11 * kSecond, f);
  EXPECT_EQ(
      p, (Published{{"$SYS/broker/uptime", "10 seconds"}, {"$SYS/broker/clients/connected", "1"}}));
  EXPECT_TRUE(update(sys, 21 * kSecond, f).empty());
}

// A steady 10 messages a second is 600 a minute: each average moves towards it with the weight
// exp(-elapsed / window), so after 10 s the 1-minute one is 600 * (1 - e^(-1/6)), and after
// three hours all three are within rounding of 600.
TEST(SysTopics, LoadAveragesAreMovingAveragesOfThePerMinuteRate) {
  SysTopics sys("1");
  SysFigures f;
  update(sys, kSecond, f);
  f.received = 100;
  const Published p = update(sys, 11 * kSecond, f);
  EXPECT_EQ(p.at("$SYS/broker/load/messages/received/1min"), "92.11");  // 600 * (1 - e^(-1/6))
  EXPECT_EQ(p.at("$SYS/broker/load/messages/received/5min"), "19.67");  // 600 * (1 - e^(-1/30))
  EXPECT_EQ(p.at("$SYS/broker/load/messages/received/15min"), "6.63");  // 600 * (1 - e^(-1/90))
  EXPECT_EQ(p.count("$SYS/broker/load/messages/sent/1min"), 0u);        // still 0.00
  Published last;
  for (int i = 2; i <= 1081; ++i) {
    f.received += 100;
    for (auto& [topic, payload] : update(sys, (1 + 10 * std::int64_t{i}) * kSecond, f))
      last[topic] = payload;
  }
  EXPECT_EQ(last.at("$SYS/broker/load/messages/received/1min"), "600.00");
  EXPECT_EQ(last.at("$SYS/broker/load/messages/received/15min"), "600.00");
}

}  // namespace
}  // namespace tern::broker
