#include "persist/write_coalescer.hpp"

#include <gtest/gtest.h>

#include <deque>
#include <string>
#include <vector>

namespace tern::persist {
namespace {

// What a WriteBatch holds, one line per write: "put k=v", "erase k", "range a..b".
std::vector<std::string> contents(const rocksdb::WriteBatch& batch) {
  struct Lister : rocksdb::WriteBatch::Handler {
    std::vector<std::string> lines;
    void Put(const rocksdb::Slice& k, const rocksdb::Slice& v) override {
      lines.push_back("put " + k.ToString() + "=" + v.ToString());
    }
    void Delete(const rocksdb::Slice& k) override { lines.push_back("erase " + k.ToString()); }
    rocksdb::Status DeleteRangeCF(std::uint32_t, const rocksdb::Slice& a,
                                  const rocksdb::Slice& b) override {
      lines.push_back("range " + a.ToString() + ".." + b.ToString());
      return rocksdb::Status::OK();
    }
  } lister;
  EXPECT_TRUE(batch.Iterate(&lister).ok());
  return lister.lines;
}

// Ops stay where add() saw them: a deque does not move its elements as it grows.
struct Ops {
  std::deque<WriteOp> ops;
  const WriteOp& put(std::string k, std::string v, bool newKey = false) {
    return ops.emplace_back(WriteOp{WriteOp::Kind::kPut, newKey, std::move(k), std::move(v)});
  }
  const WriteOp& erase(std::string k) {
    return ops.emplace_back(WriteOp{WriteOp::Kind::kErase, false, std::move(k), {}});
  }
};

TEST(WriteCoalescer, ANewKeyPutAndErasedInOneBatchIsNotWrittenAtAll) {
  WriteCoalescer c;
  Ops o;
  c.add(o.put("q/a/1", "entry", true));
  c.add(o.put("m/7", "payload", true));
  c.add(o.put("q/a/1", "in flight", false));  // a later state of the same entry
  c.add(o.erase("q/a/1"));
  c.add(o.erase("m/7"));
  rocksdb::WriteBatch batch;
  ASSERT_TRUE(c.flushInto(batch).ok());
  EXPECT_EQ(contents(batch), std::vector<std::string>{});
  EXPECT_EQ(c.added(), 5u);
  EXPECT_EQ(c.dropped(), 5u);
}

TEST(WriteCoalescer, AKeyThatMayExistKeepsItsLastWrite) {
  WriteCoalescer c;
  Ops o;
  c.add(o.put("r/x", "1"));
  c.add(o.erase("r/x"));  // r/x may be on disk: the erase must reach it
  c.add(o.put("r/y", "1"));
  c.add(o.put("r/y", "2"));
  c.add(o.erase("r/z"));
  c.add(o.put("q/n", "a", true));
  c.add(o.erase("q/n"));
  c.add(o.put("q/n", "b"));  // created, erased, written again: the last put stands
  rocksdb::WriteBatch batch;
  ASSERT_TRUE(c.flushInto(batch).ok());
  EXPECT_EQ(contents(batch),
            (std::vector<std::string>{"erase r/x", "put r/y=2", "erase r/z", "put q/n=b"}));
  EXPECT_EQ(c.dropped(), 4u);
}

TEST(WriteCoalescer, EachFlushStartsAFreshFoldAndTheTableGrowsPastItsFirstSize) {
  WriteCoalescer c;
  Ops o;
  constexpr int kKeys = 5000;  // several times the first table's size
  for (int round = 0; round < 2; ++round) {
    for (int i = 0; i < kKeys; ++i)
      c.add(o.put("k/" + std::to_string(i), "v" + std::to_string(round), round == 0));
    for (int i = 0; i < kKeys; i += 2)
      c.add(o.erase("k/" + std::to_string(i)));
    rocksdb::WriteBatch batch;
    ASSERT_TRUE(c.flushInto(batch).ok());
    const std::vector<std::string> lines = contents(batch);
    // Round 0: the even keys were new, so they vanish; round 1: the same keys may now exist
    // (nothing says they are new), so their erases are written.
    ASSERT_EQ(lines.size(), round == 0 ? kKeys / 2u : std::size_t{kKeys});
    for (int i = 0, at = 0; i < kKeys; ++i) {
      const std::string k = "k/" + std::to_string(i);
      if (i % 2 == 0 && round == 0) continue;
      EXPECT_EQ(lines[at++], i % 2 == 0 ? "erase " + k : "put " + k + "=v" + std::to_string(round));
    }
  }
}

}  // namespace
}  // namespace tern::persist
