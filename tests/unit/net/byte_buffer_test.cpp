#include "tern/net/byte_buffer.hpp"

#include <gtest/gtest.h>

#include <string>

namespace tern::net {
namespace {

TEST(ByteBuffer, AppendConsumeKeepsOrder) {
  ByteBuffer b;
  EXPECT_TRUE(b.empty());
  b.append("hello ");
  b.append("wor", "ld");
  EXPECT_EQ(b.view(), "hello world");
  b.consume(6);
  EXPECT_EQ(b.view(), "world");
  b.consume(5);
  EXPECT_TRUE(b.empty());
}

TEST(ByteBuffer, GrowsAndCompactsAcrossManyCycles) {
  ByteBuffer b;
  std::string model;
  for (int i = 0; i < 2000; ++i) {
    const std::string chunk(static_cast<std::size_t>(i % 97 + 1), static_cast<char>('a' + i % 26));
    b.append(chunk);
    model += chunk;
    if (i % 3 == 0) {
      const std::size_t n = model.size() / 2;
      b.consume(n);
      model.erase(0, n);
    }
    ASSERT_EQ(b.view(), model);
  }
}

TEST(ByteBuffer, WritableAndCommit) {
  ByteBuffer b;
  b.append("ab");
  std::span<char> space = b.writable(10);
  ASSERT_GE(space.size(), 10u);
  space[0] = 'c';
  space[1] = 'd';
  b.commit(2);
  EXPECT_EQ(b.view(), "abcd");
}

TEST(ByteBuffer, ReleaseIfIdleFreesOnlyEmptyBigBuffers) {
  ByteBuffer b;
  b.append(std::string(100000, 'x'));
  b.releaseIfIdle(1024);
  EXPECT_GT(b.capacity(), 0u) << "must not free a buffer that holds data";
  b.consume(b.size());
  b.releaseIfIdle(1024);
  EXPECT_EQ(b.capacity(), 0u);
  b.append("again");
  EXPECT_EQ(b.view(), "again");
}

TEST(ByteBuffer, TakeFromMovesEverything) {
  ByteBuffer a;
  ByteBuffer b;
  b.append("queued");
  a.takeFrom(b);
  EXPECT_EQ(a.view(), "queued");
  EXPECT_TRUE(b.empty());
  b.append(" more");
  a.takeFrom(b);
  EXPECT_EQ(a.view(), "queued more");
  EXPECT_TRUE(b.empty());
}

}  // namespace
}  // namespace tern::net
