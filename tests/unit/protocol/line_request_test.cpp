#include "tern/protocol/line_request.hpp"

#include <gtest/gtest.h>

#include <string>

namespace tern::protocol {
namespace {

LineParse parse(std::string_view frame) {
  return parseLineRequest(frame);
}

TEST(LineRequest, Connect) {
  LineParse p = parse("CONNECT");
  ASSERT_EQ(p.error, LineError::kNone);
  EXPECT_EQ(p.request.type, LineType::kConnect);
  EXPECT_FALSE(p.request.hasSubject);

  p = parse("connect@dev-1.a_B");
  ASSERT_EQ(p.error, LineError::kNone);
  EXPECT_EQ(p.request.subject, "dev-1.a_B");

  EXPECT_EQ(parse("CONNECT@").error, LineError::kBadRequest);
  EXPECT_EQ(parse("CONNECT@a b").error, LineError::kBadRequest);
  EXPECT_EQ(parse("CONNECT@a@b").error, LineError::kBadRequest);
  EXPECT_EQ(parse("CONNECT@" + std::string(64, 'x')).error, LineError::kNone);
  EXPECT_EQ(parse("CONNECT@" + std::string(65, 'x')).error, LineError::kBadRequest);
}

TEST(LineRequest, Attach) {
  LineParse p = parse("ATTACH@abc@request");
  ASSERT_EQ(p.error, LineError::kNone);
  EXPECT_EQ(p.request.type, LineType::kAttach);
  EXPECT_EQ(p.request.subject, "abc");
  EXPECT_EQ(p.request.role, AttachRole::kRequest);
  EXPECT_EQ(parse("attach@abc@PUSH").request.role, AttachRole::kPush);
  EXPECT_EQ(parse("ATTACH@abc").error, LineError::kBadRequest);
  EXPECT_EQ(parse("ATTACH@abc@other").error, LineError::kBadRequest);
  EXPECT_EQ(parse("ATTACH@abc@push@x").error, LineError::kBadRequest);
}

TEST(LineRequest, PublishContentsAndRetainFlag) {
  struct Case {
    const char* frame;
    const char* topic;
    const char* contents;
    bool retain;
  };
  const Case cases[] = {
      {"PUBLISH@t@hello", "t", "hello", false},
      {"PUBLISH@t@retain", "t", "retain", false},  // three fields: "retain" is contents
      {"PUBLISH@t@@retain", "t", "", true},        // deletes the retained message
      {"PUBLISH@t@a@b", "t", "a@b", false},
      {"PUBLISH@t@a@b@ReTaIn", "t", "a@b", true},
      {"PUBLISH@t@a@retainx", "t", "a@retainx", false},
      {"PUBLISH@t@", "t", "", false},
      {"publish@a/b/c@x@retain", "a/b/c", "x", true},
  };
  for (const Case& c : cases) {
    const LineParse p = parse(c.frame);
    ASSERT_EQ(p.error, LineError::kNone) << c.frame;
    EXPECT_EQ(p.request.type, LineType::kPublish);
    EXPECT_EQ(p.request.subject, c.topic) << c.frame;
    EXPECT_EQ(p.request.contents, c.contents) << c.frame;
    EXPECT_EQ(p.request.retain, c.retain) << c.frame;
  }
}

TEST(LineRequest, PublishErrors) {
  EXPECT_EQ(parse("PUBLISH").error, LineError::kBadRequest);
  EXPECT_EQ(parse("PUBLISH@t").error, LineError::kBadRequest);
  EXPECT_EQ(parse("PUBLISH@@x").error, LineError::kBadTopic);
  EXPECT_EQ(parse("PUBLISH@a/+@x").error, LineError::kBadTopic);
  EXPECT_EQ(parse("PUBLISH@a/#@x").error, LineError::kBadTopic);
  EXPECT_EQ(parse("PUBLISH@a*@x").error, LineError::kBadTopic);
  EXPECT_EQ(parse("PUBLISH@\xC0\xAF@x").error, LineError::kBadTopic);
  EXPECT_EQ(parse(std::string("PUBLISH@a\0@x", 12)).error, LineError::kBadTopic);
  EXPECT_FALSE(parse("PUBLISH@a+@x").errorText.empty());
}

TEST(LineRequest, FilterRequests) {
  LineParse p = parse("SUBSCRIBE@a/*/c");
  ASSERT_EQ(p.error, LineError::kNone);
  EXPECT_EQ(p.request.type, LineType::kSubscribe);
  EXPECT_EQ(p.request.subject, "a/*/c");
  EXPECT_EQ(normalizeFilter(p.request.subject), "a/+/c");
  EXPECT_EQ(parse("UNSUBSCRIBE@#").request.type, LineType::kUnsubscribe);
  EXPECT_EQ(parse("SUBSCRIBE").error, LineError::kBadRequest);
  EXPECT_EQ(parse("SUBSCRIBE@a@b").error, LineError::kBadRequest);
  EXPECT_EQ(parse("SUBSCRIBE@").error, LineError::kBadFilter);
  EXPECT_EQ(parse("SUBSCRIBE@a*").error, LineError::kBadFilter);
  EXPECT_EQ(parse("SUBSCRIBE@*+").error, LineError::kBadFilter);
  EXPECT_EQ(parse("SUBSCRIBE@#/a").error, LineError::kBadFilter);

  p = parse("LIST");
  ASSERT_EQ(p.error, LineError::kNone);
  EXPECT_EQ(p.request.type, LineType::kList);
  EXPECT_FALSE(p.request.hasSubject);
  p = parse("list@x/#");
  ASSERT_EQ(p.error, LineError::kNone);
  EXPECT_TRUE(p.request.hasSubject);
  EXPECT_EQ(parse("LIST@").error, LineError::kBadFilter);
  EXPECT_EQ(parse("LIST@a@b").error, LineError::kBadRequest);
}

TEST(LineRequest, ConnectWithCredentials) {
  LineParse p = parse("CONNECT@dev1@alice@p@ss@word");
  ASSERT_EQ(p.error, LineError::kNone) << p.errorText;
  EXPECT_TRUE(p.request.hasSubject);
  EXPECT_EQ(p.request.subject, "dev1");
  EXPECT_TRUE(p.request.hasCredentials);
  EXPECT_EQ(p.request.user, "alice");
  EXPECT_EQ(p.request.password, "p@ss@word");  // everything after the third '@'
  p = parse("CONNECT@@bob@");
  ASSERT_EQ(p.error, LineError::kNone) << p.errorText;
  EXPECT_FALSE(p.request.hasSubject);  // an assigned id
  EXPECT_EQ(p.request.user, "bob");
  EXPECT_EQ(p.request.password, "");
  EXPECT_FALSE(parse("CONNECT@dev1").request.hasCredentials);
  EXPECT_EQ(parse("CONNECT@dev1@alice").error, LineError::kBadRequest);  // no password field
  EXPECT_EQ(parse("CONNECT@dev1@@pw").error, LineError::kBadRequest);    // empty user
  EXPECT_EQ(parse("CONNECT@bad id@alice@pw").error, LineError::kBadRequest);
  EXPECT_EQ(errorCode(LineError::kNotAuthorized), "not-authorized");
}

TEST(LineRequest, SharedSubscriptionFilters) {
  for (const char* good : {"SUBSCRIBE@$share/g/a/#", "SUBSCRIBE@$share/g/*",
                           "UNSUBSCRIBE@$share/g/a", "SUBSCRIBE@$shared/+/a", "SUBSCRIBE@$share"}) {
    EXPECT_EQ(parse(good).error, LineError::kNone) << good;
  }
  for (const char* bad : {"SUBSCRIBE@$share/g", "SUBSCRIBE@$share//a", "SUBSCRIBE@$share/*/a",
                          "SUBSCRIBE@$share/+/a", "UNSUBSCRIBE@$share/*/b", "SUBSCRIBE@$share/"}) {
    const LineParse p = parse(bad);
    EXPECT_EQ(p.error, LineError::kBadFilter) << bad;
    EXPECT_NE(p.errorText.find("$share/<name>/<filter>"), std::string_view::npos) << p.errorText;
  }
  // LIST names retained topics, of which "$share/..." is one like any other.
  EXPECT_EQ(parse("LIST@$share/g").error, LineError::kNone);
}

TEST(LineRequest, BareRequestsAndUnknownTypes) {
  EXPECT_EQ(parse("PING").request.type, LineType::kPing);
  EXPECT_EQ(parse("Stats").request.type, LineType::kStats);
  EXPECT_EQ(parse("disconnect").request.type, LineType::kDisconnect);
  EXPECT_EQ(parse("PING@").error, LineError::kBadRequest);
  EXPECT_EQ(parse("STATS@x").error, LineError::kBadRequest);
  EXPECT_EQ(parse("HELLO").error, LineError::kUnknownType);
  EXPECT_EQ(parse("@x").error, LineError::kUnknownType);
  EXPECT_EQ(parse("PUBLISHX@a@b").error, LineError::kUnknownType);
}

TEST(LineRequest, ErrorCodesOnTheWire) {
  EXPECT_EQ(errorCode(LineError::kUnknownType), "unknown-type");
  EXPECT_EQ(errorCode(LineError::kBadTopic), "bad-topic");
  EXPECT_EQ(errorCode(LineError::kBadFilter), "bad-filter");
  EXPECT_EQ(errorCode(LineError::kBadRequest), "bad-request");
  EXPECT_EQ(errorCode(LineError::kNotConnected), "not-connected");
  EXPECT_EQ(errorCode(LineError::kBadToken), "bad-token");
  EXPECT_EQ(errorCode(LineError::kTooLong), "too-long");
  EXPECT_EQ(errorCode(LineError::kTooManySockets), "too-many-sockets");
}

}  // namespace
}  // namespace tern::protocol
