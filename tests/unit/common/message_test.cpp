#include "tern/common/message.hpp"

#include <gtest/gtest.h>

namespace tern::common {
namespace {

TEST(Message, HoldsTopicContentsAndLineTail) {
  MessageRef m = Message::make("weather/temp", "21@C", true, 1);
  EXPECT_EQ(m->topic(), "weather/temp");
  EXPECT_EQ(m->contents(), "21@C");
  EXPECT_EQ(m->lineTail(), "weather/temp@21@C\n");
  EXPECT_TRUE(m->retain());
  EXPECT_EQ(m->qos(), 1);
}

TEST(Message, EmptyContents) {
  MessageRef m = Message::make("t", "", false);
  EXPECT_EQ(m->contents(), "");
  EXPECT_EQ(m->lineTail(), "t@\n");
}

TEST(Message, LineSafety) {
  EXPECT_TRUE(Message::make("a/b", "x@y z", false)->lineSafe());
  EXPECT_TRUE(Message::make("a/b", "", false)->lineSafe());
  EXPECT_TRUE(Message::make("a/b", "mid\rdle", false)->lineSafe());
  EXPECT_FALSE(Message::make("a@b", "x", false)->lineSafe());
  EXPECT_FALSE(Message::make("a/b", "two\nlines", false)->lineSafe());
  EXPECT_FALSE(Message::make("a/b", "trailing\r", false)->lineSafe());
}

TEST(Message, SharedReferencesKeepItAlive) {
  MessageRef a = Message::make("t", "x", false);
  MessageRef b = MessageRef::share(a.get());
  a.reset();
  ASSERT_TRUE(b);
  EXPECT_EQ(b->contents(), "x");  // ASan reports a use-after-free here if the count were wrong

  b->addRefs(2);
  MessageRef c = MessageRef::adopt(b.get());
  MessageRef d = MessageRef::adopt(b.get());
  b.reset();
  c.reset();
  EXPECT_EQ(d->topic(), "t");
}

}  // namespace
}  // namespace tern::common
