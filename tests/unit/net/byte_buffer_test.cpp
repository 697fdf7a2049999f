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

// The bound a caller keeps (say: never more than 4 MiB queued) must be the bound of the memory
// too: doubling alone would take a buffer to 8 MiB for 4 MiB + 1 byte.
TEST(ByteBuffer, GrowthLimitIsTheRealBoundOfTheCapacity) {
  ByteBuffer b;
  constexpr std::size_t kLimit = 1000 * 1000;
  b.setGrowthLimit(kLimit);
  const std::string chunk(4096, 'c');
  std::size_t consumed = 0;
  for (int i = 0; i < 10000; ++i) {
    while (b.size() + chunk.size() <= kLimit)
      b.append(chunk);
    ASSERT_LE(b.capacity(), kLimit) << "after " << i << " rounds";
    // The consumer takes a little and the producer tops the buffer up again: compaction, not
    // growth, makes the room.
    b.consume(chunk.size() * 3);
    consumed += chunk.size() * 3;
  }
  EXPECT_EQ(b.capacity(), kLimit);
  // Live bytes beyond the limit still fit (the limit bounds doubling, not what the owner stores).
  b.append(std::string(2 * kLimit, 'x'));
  EXPECT_GE(b.capacity(), b.size());
  EXPECT_GT(consumed, 0u);
}

// growthFor says what an append will add to the capacity, exactly, in every case reserve()
// distinguishes (fits, compacts, doubles, capped by the growth limit, grows past it).
TEST(ByteBuffer, GrowthForPredictsWhatAnAppendAdds) {
  for (const std::size_t limit : {std::size_t{4096}, std::size_t{100000}, ~std::size_t{0}}) {
    ByteBuffer b;
    MemoryAccount account;
    b.setAccount(&account);
    b.setGrowthLimit(limit);
    std::size_t step = 1;
    for (int i = 0; i < 400; ++i) {
      const std::size_t n = (step = step * 7 % 9973) % 3000;
      const std::size_t before = b.capacity();
      const std::size_t predicted = b.growthFor(n);
      b.append(std::string(n, 'g'));
      ASSERT_EQ(b.capacity() - before, predicted) << "limit " << limit << " append " << i;
      ASSERT_EQ(account.bytes, static_cast<std::int64_t>(b.capacity()));
      if (i % 3 == 0) b.consume(b.size() / 2);
      if (i % 50 == 0) b.consume(b.size());
    }
  }
  ByteBuffer full;
  full.append(std::string(256, 'f'));
  EXPECT_EQ(full.growthFor(0), 0u);
  EXPECT_EQ(full.growthFor(1), full.capacity()) << "a full buffer doubles";
}

TEST(ByteBuffer, AccountFollowsTheCapacity) {
  MemoryAccount first;
  MemoryAccount second;
  {
    ByteBuffer a;
    a.setAccount(&first);
    a.append(std::string(3000, 'a'));
    EXPECT_EQ(first.bytes, static_cast<std::int64_t>(a.capacity()));
    ByteBuffer b;
    b.setAccount(&second);
    b.takeFrom(a);  // b was empty: the memory itself moves, and its charge with it
    EXPECT_EQ(first.bytes, static_cast<std::int64_t>(a.capacity()));
    EXPECT_EQ(second.bytes, static_cast<std::int64_t>(b.capacity()));
    EXPECT_EQ(b.view().size(), 3000u);
    b.setAccount(&first);  // a connection handed to another worker
    EXPECT_EQ(second.bytes, 0);
    EXPECT_EQ(first.bytes, static_cast<std::int64_t>(a.capacity() + b.capacity()));
    b.consume(b.size());
    b.releaseIfIdle(0);
    EXPECT_EQ(first.bytes, static_cast<std::int64_t>(a.capacity()));
  }
  EXPECT_EQ(first.bytes, 0) << "destroyed buffers give their charge back";
  EXPECT_EQ(second.bytes, 0);
}

}  // namespace
}  // namespace tern::net
