#include "tern/routing/topic.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace tern::routing {
namespace {

TEST(Topic, ValidNames) {
  for (const char* t : {"a", "a/b", "/a", "a/", "a//b", "/", "$SYS/x", "caf\xC3\xA9", "a*b", "@"}) {
    EXPECT_EQ(validateTopicName(t), TopicStatus::kOk) << t;
  }
  EXPECT_EQ(validateTopicName(std::string(kMaxTopicBytes, 'x')), TopicStatus::kOk);
}

TEST(Topic, InvalidNames) {
  EXPECT_EQ(validateTopicName(""), TopicStatus::kEmpty);
  EXPECT_EQ(validateTopicName(std::string(kMaxTopicBytes + 1, 'x')), TopicStatus::kTooLong);
  EXPECT_EQ(validateTopicName("a/+"), TopicStatus::kWildcardInName);
  EXPECT_EQ(validateTopicName("a/#"), TopicStatus::kWildcardInName);
  EXPECT_EQ(validateTopicName("a+b"), TopicStatus::kWildcardInName);
  EXPECT_EQ(validateTopicName(std::string("a\0b", 3)), TopicStatus::kContainsNul);
  EXPECT_EQ(validateTopicName("a\xFF"), TopicStatus::kInvalidUtf8);
}

TEST(Topic, ValidFilters) {
  for (const char* f : {"#", "+", "a/+", "+/b", "a/#", "+/+/#", "a//+", "/#", "a/b/c", "+/"}) {
    EXPECT_EQ(validateTopicFilter(f), TopicStatus::kOk) << f;
  }
}

TEST(Topic, InvalidFilters) {
  for (const char* f : {"a+", "a/b#", "#/a", "a/#/b", "++", "a/+b", "##"}) {
    EXPECT_EQ(validateTopicFilter(f), TopicStatus::kBadWildcard) << f;
  }
  EXPECT_EQ(validateTopicFilter(""), TopicStatus::kEmpty);
}

TEST(Topic, LevelCursorSplitsWithEmptyLevels) {
  auto split = [](std::string_view text) {
    std::vector<std::string> levels;
    LevelCursor cursor(text);
    std::string_view level;
    while (cursor.next(level))
      levels.emplace_back(level);
    return levels;
  };
  EXPECT_EQ(split("a/b"), (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(split("a//b"), (std::vector<std::string>{"a", "", "b"}));
  EXPECT_EQ(split("/a"), (std::vector<std::string>{"", "a"}));
  EXPECT_EQ(split("a/"), (std::vector<std::string>{"a", ""}));
  EXPECT_EQ(split("/"), (std::vector<std::string>{"", ""}));
  EXPECT_EQ(split("x"), (std::vector<std::string>{"x"}));
}

TEST(Topic, ReferenceMatcher) {
  struct Case {
    const char* filter;
    const char* topic;
    bool match;
  };
  const Case cases[] = {
      {"a/b", "a/b", true},       {"a/b", "a/c", false},    {"a/+", "a/b", true},
      {"a/+", "a/b/c", false},    {"a/+", "a", false},      {"a/+", "a/", true},
      {"a/#", "a", true},         {"a/#", "a/b/c", true},   {"a/#", "b", false},
      {"#", "a/b", true},         {"#", "/", true},         {"+", "a", true},
      {"+", "/a", false},         {"+/+", "/a", true},      {"/+", "/a", true},
      {"+/#", "a", true},         {"a//b", "a//b", true},   {"a/+/b", "a//b", true},
      {"#", "$SYS/x", false},     {"+/x", "$SYS/x", false}, {"$SYS/#", "$SYS/x", true},
      {"$SYS/+", "$SYS/x", true}, {"a/b", "a/b/c", false},  {"a/b/c", "a/b", false},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(filterMatches(c.filter, c.topic), c.match) << c.filter << " vs " << c.topic;
  }
}

}  // namespace
}  // namespace tern::routing
