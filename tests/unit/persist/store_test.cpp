#include "tern/persist/store.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <thread>

#include "unit/persist/store_test_support.hpp"

namespace tern::persist {
namespace {

using testing::awaitCompletions;
using testing::openOrFail;
using testing::TempDir;
using testing::Wakeups;

RetainedRecord retained(int i) {
  return RetainedRecord{"retained/" + std::to_string(i), "value-" + std::to_string(i),
                        static_cast<std::uint8_t>(i % 3), i % 2 ? "props" : "",
                        static_cast<std::uint64_t>(i)};
}

std::map<std::string, RetainedRecord> loadAllRetained(Store& store) {
  std::map<std::string, RetainedRecord> out;
  const LoadStats stats = store.loadRetained([&](RetainedRecord&& r) {
    std::string topic = r.topic;
    out.emplace(std::move(topic), std::move(r));
  });
  EXPECT_TRUE(stats.ok()) << stats.error;
  EXPECT_EQ(stats.records, out.size());
  return out;
}

// Pushes `request` and waits for its one completion; returns its status.
WriteStatus submit(Store& store, Wakeups& wakeups, WriteRequest&& request) {
  const std::uint64_t cookie = request.token().cookie;
  const std::uint32_t producer = request.token().producer;
  EXPECT_TRUE(store.tryPush(std::move(request)));
  const std::vector<Completion> got = awaitCompletions(store, producer, wakeups, 1);
  EXPECT_EQ(got.size(), 1u);
  if (got.empty()) return WriteStatus::kStorageError;
  EXPECT_EQ(got[0].cookie, cookie);
  return got[0].status;
}

TEST(PersistStore, WritesAndLoadsEveryRecordKind) {
  TempDir tmp;
  SessionRecord session;
  session.clientId = "alice";
  session.protocolLevel = 5;
  session.sessionExpirySeconds = 3600;
  session.expiryDeadlineUnixMs = 1'700'000'000'000;
  session.subscriptions = {{"a/#", 2, true, false, 1, 7}, {"b/+", 1, false, true, 0, 0}};
  session.will = WillRecord{"will/alice", "gone", 1, true, "", 5};
  session.nextPacketId = 42;
  SessionRecord bob;
  bob.clientId = "bob";
  bob.protocolLevel = 4;
  const MessageRecord m1{1, "a/x", "one", 1, false, "", 0};
  const MessageRecord m2{2, "a/y", "two", 2, true, "p", 99};
  const std::vector<QueueEntry> aliceQueue = {{"alice", 1, 1, 1, QueueState::kAwaitingAck, 10},
                                              {"alice", 2, 2, 2, QueueState::kReleasePending, 11},
                                              {"alice", 300, 2, 2, QueueState::kQueued, 0}};
  const std::vector<InboundQos2> aliceInbound = {{"alice", 5}, {"alice", 600}};
  const QueueEntry bobEntry{"bob", 1, 2, 1, QueueState::kQueued, 0};
  {
    Wakeups w;  // outlives the store, whose thread calls it
    auto store = openOrFail(tmp.store());
    ASSERT_TRUE(store);
    store->setWaker(0, w.waker());
    store->start();
    WriteRequest a({0, 1});
    a.put(retained(1));
    a.put(retained(2));
    a.put(m1);
    a.put(m2);
    a.put(session);
    a.put(bob);
    for (const QueueEntry& q : aliceQueue)
      a.put(q);
    for (const InboundQos2& i : aliceInbound)
      a.put(i);
    a.put(bobEntry);
    EXPECT_EQ(submit(*store, w, std::move(a)), WriteStatus::kOk);
    EXPECT_GE(w.count(), 1u) << "the waker ran for the batch";
  }
  {
    Wakeups w;  // outlives the store, whose thread calls it
    auto store = openOrFail(tmp.store());
    ASSERT_TRUE(store);
    const auto r = loadAllRetained(*store);
    ASSERT_EQ(r.size(), 2u);
    EXPECT_EQ(r.at("retained/1"), retained(1));
    EXPECT_EQ(r.at("retained/2"), retained(2));
    std::vector<MessageRecord> messages;
    EXPECT_TRUE(store->loadMessages([&](MessageRecord&& m) { messages.push_back(m); }).ok());
    EXPECT_EQ(messages, (std::vector<MessageRecord>{m1, m2}));
    std::vector<LoadedSession> sessions;
    const LoadStats stats = store->loadSessions([&](LoadedSession&& s) { sessions.push_back(s); });
    ASSERT_TRUE(stats.ok()) << stats.error;
    EXPECT_EQ(stats.records, 2u);
    EXPECT_EQ(stats.queueEntries, 4u);
    EXPECT_EQ(stats.inboundIds, 2u);
    EXPECT_EQ(stats.orphans, 0u);
    ASSERT_EQ(sessions.size(), 2u);
    EXPECT_EQ(sessions[0].session, session);
    EXPECT_EQ(sessions[0].queue, aliceQueue) << "in sequence order";
    EXPECT_EQ(sessions[0].inbound, aliceInbound) << "in packet-id order";
    EXPECT_EQ(sessions[1].session, bob);
    EXPECT_EQ(sessions[1].queue, std::vector<QueueEntry>{bobEntry});
    EXPECT_TRUE(sessions[1].inbound.empty());

    // Erasing: one retained topic, one queue entry, and alice's whole session in one request.
    store->setWaker(0, w.waker());
    store->start();
    WriteRequest e({0, 2});
    e.eraseRetained("retained/1");
    e.eraseSession("alice");
    e.eraseQueueEntry("bob", 1);
    e.eraseMessage(1);
    EXPECT_EQ(submit(*store, w, std::move(e)), WriteStatus::kOk);
  }
  {
    auto store = openOrFail(tmp.store());
    ASSERT_TRUE(store);
    const auto r = loadAllRetained(*store);
    EXPECT_EQ(r.size(), 1u);
    EXPECT_EQ(r.count("retained/2"), 1u);
    std::vector<MessageRecord> messages;
    EXPECT_TRUE(store->loadMessages([&](MessageRecord&& m) { messages.push_back(m); }).ok());
    EXPECT_EQ(messages, std::vector<MessageRecord>{m2});
    std::vector<LoadedSession> sessions;
    const LoadStats stats = store->loadSessions([&](LoadedSession&& s) { sessions.push_back(s); });
    ASSERT_TRUE(stats.ok()) << stats.error;
    ASSERT_EQ(sessions.size(), 1u);
    EXPECT_EQ(sessions[0].session, bob);
    EXPECT_TRUE(sessions[0].queue.empty());
    EXPECT_EQ(stats.orphans, 0u) << "eraseSession took alice's queue and inbound ids with it";
  }
}

TEST(PersistStore, LoadCountsOrphansAndRefusesUndecodableRecords) {
  TempDir tmp;
  {
    Wakeups w;  // outlives the store, whose thread calls it
    auto store = openOrFail(tmp.store());
    ASSERT_TRUE(store);
    store->setWaker(0, w.waker());
    store->start();
    WriteRequest a({0, 1});
    a.put(QueueEntry{"nobody", 1, 1, 1, QueueState::kQueued, 0});  // no session
    a.put(InboundQos2{"zed", 3});                                  // no session, sorts last
    a.put(retainedKey("bad"), "\x01\x01garbage");
    EXPECT_EQ(submit(*store, w, std::move(a)), WriteStatus::kOk);
  }
  auto store = openOrFail(tmp.store());
  ASSERT_TRUE(store);
  const LoadStats sessions = store->loadSessions([](LoadedSession&&) {});
  EXPECT_TRUE(sessions.ok()) << sessions.error;
  EXPECT_EQ(sessions.orphans, 2u);
  const LoadStats r = store->loadRetained([](RetainedRecord&&) {});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error.find("r/bad"), std::string::npos) << r.error;
  EXPECT_NE(r.error.find(tmp.store()), std::string::npos) << r.error;
}

TEST(PersistStore, BoundedQueueRefusesPastCapacity) {
  TempDir tmp;
  StoreOptions options;
  options.queueCapacity = 4;
  Wakeups w;  // outlives the store, whose thread calls it
  auto store = openOrFail(tmp.store(), options);
  ASSERT_TRUE(store);
  store->setWaker(0, w.waker());
  // Not started: nothing drains the queue, so the fifth push must be refused.
  for (int i = 0; i < 4; ++i) {
    WriteRequest r({0, static_cast<std::uint64_t>(i)});
    r.put(retained(i));
    EXPECT_TRUE(store->tryPush(std::move(r))) << i;
  }
  WriteRequest fifth({0, 4});
  fifth.put(retained(4));
  EXPECT_FALSE(store->tryPush(std::move(fifth)));
  EXPECT_EQ(fifth.ops().size(), 1u) << "a refused request is left untouched";
  EXPECT_EQ(store->counters().queueDepth.value.load(), 4u);
  EXPECT_EQ(store->counters().refused.value.load(), 1u);
  WriteRequest badProducer({7, 9});
  EXPECT_FALSE(store->tryPush(std::move(badProducer))) << "producer index out of range";

  store->start();
  EXPECT_EQ(awaitCompletions(*store, 0, w, 4).size(), 4u);
  EXPECT_TRUE(store->tryPush(std::move(fifth))) << "room again once the thread took the queue";
  EXPECT_EQ(awaitCompletions(*store, 0, w, 1).size(), 1u);
  EXPECT_EQ(store->counters().queueDepth.value.load(), 0u);
}

TEST(PersistStore, ABatchThatWouldEatTheFreeSpaceReserveIsRefused) {
  TempDir tmp;
  StoreOptions options;
  options.minFreeBytes = std::uint64_t{1} << 62;  // more than any file system has free
  {
    Wakeups w;
    auto store = openOrFail(tmp.store(), options);
    ASSERT_TRUE(store);
    store->setWaker(0, w.waker());
    store->start();
    WriteRequest r({0, 1});
    r.put(retained(1));
    EXPECT_EQ(submit(*store, w, std::move(r)), WriteStatus::kStorageError);
    EXPECT_EQ(store->counters().failedRequests.load(), 1u);
  }
  auto store = openOrFail(tmp.store());
  ASSERT_TRUE(store);
  EXPECT_TRUE(loadAllRetained(*store).empty()) << "nothing was written";
}

TEST(PersistStore, FaultSeamFailsRequestsThenRecovers) {
  TempDir tmp;
  FaultSeam faults;
  StoreOptions options;
  options.faults = &faults;
  {
    Wakeups w;  // outlives the store, whose thread calls it
    auto store = openOrFail(tmp.store(), options);
    ASSERT_TRUE(store);
    store->setWaker(0, w.waker());
    store->start();
    faults.failNextWrites(2);
    for (std::uint64_t cookie = 1; cookie <= 2; ++cookie) {
      WriteRequest r({0, cookie});
      r.put(retained(static_cast<int>(cookie)));
      EXPECT_EQ(submit(*store, w, std::move(r)), WriteStatus::kStorageError) << cookie;
    }
    WriteRequest r({0, 3});
    r.put(retained(3));
    EXPECT_EQ(submit(*store, w, std::move(r)), WriteStatus::kOk) << "recovers on its own";
    EXPECT_EQ(store->counters().errors.load(), 2u);
    EXPECT_EQ(store->counters().failedRequests.load(), 2u);
    EXPECT_EQ(store->counters().commits.load(), 1u);
  }
  auto store = openOrFail(tmp.store());
  ASSERT_TRUE(store);
  const auto r = loadAllRetained(*store);
  EXPECT_EQ(r.size(), 1u) << "failed requests wrote nothing";
  EXPECT_EQ(r.count("retained/3"), 1u);
}

// What SIGTERM does: close() with requests still queued. Async mode with an interval that never
// comes during the test, so only the shutdown drain can write and sync them.
TEST(PersistStore, CloseDrainsAndSyncsEverythingQueued) {
  TempDir tmp;
  StoreOptions options;
  options.durability = Durability::kAsync;
  options.flushInterval = std::chrono::hours(1);
  constexpr int kRequests = 500;
  std::vector<Completion> got;
  {
    auto store = openOrFail(tmp.store(), options);
    ASSERT_TRUE(store);
    for (int i = 0; i < kRequests; ++i) {
      WriteRequest r({0, static_cast<std::uint64_t>(i)});
      r.put(retained(i));
      ASSERT_TRUE(store->tryPush(std::move(r)));
    }
    store->start();
    store->close();
    EXPECT_GE(store->counters().syncs.load(), 1u) << "close synced the log";
    Completion buf[kRequests];
    const std::size_t n = store->popCompletions(0, buf, kRequests);
    got.assign(buf, buf + n);
    WriteRequest late({0, 1});
    EXPECT_FALSE(store->tryPush(std::move(late))) << "refused once closed";
  }
  EXPECT_EQ(got.size(), static_cast<std::size_t>(kRequests)) << "every request completed";
  for (const Completion& c : got)
    EXPECT_EQ(c.status, WriteStatus::kOk);
  auto store = openOrFail(tmp.store());
  ASSERT_TRUE(store);
  EXPECT_EQ(loadAllRetained(*store).size(), static_cast<std::size_t>(kRequests));
}

TEST(PersistStore, ABatchFoldedPerKeyLeavesWhatItsWritesInOrderWould) {
  // Requests pushed before start() are taken as one batch: the folding of its writes per key
  // (WriteCoalescer) must leave the state the writes in order would, range erasures included.
  TempDir tmp;
  auto value = [](const std::string& topic, const std::string& v) {
    return encoded(RetainedRecord{topic, v, 0, "", 0});
  };
  {
    auto store = openOrFail(tmp.store());
    ASSERT_TRUE(store);
    WriteRequest first({0, 0});
    for (const char* topic : {"k/old", "k/gone", "r/1", "r/3"})
      first.put(retainedKey(topic), value(topic, "v0"));
    ASSERT_TRUE(store->tryPush(std::move(first)));
    store->start();
    store->close();
  }
  {
    auto store = openOrFail(tmp.store());
    ASSERT_TRUE(store);
    std::vector<WriteRequest> batch(4);
    batch[0].putNew(retainedKey("k/new"), value("k/new", "x"));  // created and erased: gone
    batch[0].put(retainedKey("k/old"), value("k/old", "v1"));
    batch[0].put(retainedKey("r/1"), value("r/1", "before the range"));
    batch[1].erase(retainedKey("k/new"));
    batch[1].erase(retainedKey("k/gone"));
    batch[1].eraseRange(retainedKey("r/"), prefixEnd(retainedKey("r/")));  // r/1 and r/3
    batch[2].putNew(retainedKey("r/2"), value("r/2", "after the range"));
    batch[3].put(retainedKey("k/old"), value("k/old", "v2"));
    for (std::size_t i = 0; i < batch.size(); ++i) {
      batch[i].setToken({0, i});
      ASSERT_TRUE(store->tryPush(std::move(batch[i])));
    }
    store->start();
    store->close();
    EXPECT_EQ(store->counters().batches.load(), 1u) << "one batch, or nothing was folded";
    Completion got[4];
    ASSERT_EQ(store->popCompletions(0, got, 4), 4u);
    for (const Completion& c : got)
      EXPECT_EQ(c.status, WriteStatus::kOk);
  }
  auto store = openOrFail(tmp.store());
  ASSERT_TRUE(store);
  std::map<std::string, std::string> left;
  for (auto& [topic, r] : loadAllRetained(*store))
    left[topic] = r.payload;
  EXPECT_EQ(left,
            (std::map<std::string, std::string>{{"k/old", "v2"}, {"r/2", "after the range"}}));
}

TEST(PersistStore, RandomBatchesFoldedPerKeyLeaveWhatTheWritesInOrderWould) {
  // Seeded random requests of puts, new-key puts, erases and range erasures over a few keys, taken
  // as one batch (folded) and one request per batch, both checked against a model that applies
  // every write in order.
  for (std::uint32_t seed = 1; seed <= 5; ++seed) {
    std::mt19937 rng(seed);
    const auto pick = [&](int n) { return static_cast<int>(rng() % static_cast<unsigned>(n)); };
    std::vector<WriteRequest> requests;
    std::map<std::string, std::string> model;  // topic -> payload
    std::vector<std::string> fresh;            // new-key topics put so far
    for (int r = 0; r < 300; ++r) {
      WriteRequest request({0, static_cast<std::uint64_t>(r)});
      for (int n = 1 + pick(3); n > 0; --n) {
        const std::string topic = "f/" + std::to_string(pick(16));
        const std::string payload = std::to_string(r) + "." + std::to_string(n);
        switch (pick(5)) {
          case 0:
          case 1:
            request.put(RetainedRecord{topic, payload, 0, "", 0});
            model[topic] = payload;
            break;
          case 2: {  // a key never written before, later maybe erased or written again
            const std::string t = "n/" + std::to_string(fresh.size());
            request.putNew(RetainedRecord{t, payload, 0, "", 0});
            model[t] = payload;
            fresh.push_back(t);
            break;
          }
          case 3: {
            const std::string t =
                !fresh.empty() && pick(2) == 0 ? fresh[pick(int(fresh.size()))] : topic;
            request.eraseRetained(t);
            model.erase(t);
            break;
          }
          default: {
            std::string a = "f/" + std::to_string(pick(16)), b = "f/" + std::to_string(pick(16));
            if (b < a) std::swap(a, b);
            request.eraseRange(retainedKey(a), retainedKey(b));
            model.erase(model.lower_bound(a), model.lower_bound(b));
            break;
          }
        }
      }
      requests.push_back(std::move(request));
    }
    for (const std::size_t perBatch : {std::size_t{8192}, std::size_t{1}}) {
      TempDir tmp;
      StoreOptions options;
      options.maxRequestsPerBatch = perBatch;
      {
        auto store = openOrFail(tmp.store(), options);
        ASSERT_TRUE(store);
        for (const WriteRequest& r : requests)
          ASSERT_TRUE(store->tryPush(WriteRequest(r)));
        store->start();
        store->close();
        EXPECT_EQ(store->counters().batches.load(), perBatch == 1 ? requests.size() : 1u);
        if (perBatch != 1) {
          EXPECT_GT(store->counters().foldedKeyWrites.load(), 0u);
        }
      }
      auto store = openOrFail(tmp.store());
      ASSERT_TRUE(store);
      std::map<std::string, std::string> left;
      for (auto& [topic, r] : loadAllRetained(*store))
        left[topic] = r.payload;
      EXPECT_EQ(left, model) << "seed " << seed << ", " << perBatch << " request(s) per batch";
    }
  }
}

TEST(PersistStore, AsyncModeWritesTheFirstRequestAtOnceAndLetsTheNextBatchGather) {
  TempDir tmp;
  StoreOptions options;
  options.durability = Durability::kAsync;
  options.flushInterval = std::chrono::hours(1);
  options.asyncBatchInterval = std::chrono::hours(1);  // capped at the flush interval
  Wakeups wakeups;
  auto store = openOrFail(tmp.store(), options);
  ASSERT_TRUE(store);
  store->setWaker(0, wakeups.waker());
  store->start();
  WriteRequest first({0, 0});
  first.put(retained(0));
  EXPECT_EQ(submit(*store, wakeups, std::move(first)), WriteStatus::kOk)
      << "after a quiet spell a request is written at once";
  for (std::uint64_t i = 1; i <= 2; ++i) {
    WriteRequest r({0, i});
    r.put(retained(static_cast<int>(i)));
    ASSERT_TRUE(store->tryPush(std::move(r)));
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  Completion got[2];
  EXPECT_EQ(store->popCompletions(0, got, 2), 0u) << "the next batch gathers for the interval";
  store->close();  // does not wait for the interval: drains and syncs what is queued
  ASSERT_EQ(store->popCompletions(0, got, 2), 2u);
  EXPECT_EQ(store->counters().batches.load(), 2u);
  store.reset();
  auto reopened = openOrFail(tmp.store());
  ASSERT_TRUE(reopened);
  EXPECT_EQ(loadAllRetained(*reopened).size(), 3u);
}

TEST(PersistStore, AsyncModeSyncsWithinTheFlushInterval) {
  TempDir tmp;
  StoreOptions options;
  options.durability = Durability::kAsync;
  options.flushInterval = std::chrono::milliseconds(5);
  Wakeups w;  // outlives the store, whose thread calls it
  auto store = openOrFail(tmp.store(), options);
  ASSERT_TRUE(store);
  store->setWaker(0, w.waker());
  store->start();
  WriteRequest r({0, 1});
  r.put(retained(1));
  EXPECT_EQ(submit(*store, w, std::move(r)), WriteStatus::kOk);
  const auto until = testing::deadline();
  while (store->counters().syncs.load() == 0 && std::chrono::steady_clock::now() < until)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  EXPECT_EQ(store->counters().syncs.load(), 1u) << "one timed sync, and none while idle after it";
}

std::filesystem::path newestWal(const std::string& dir) {
  std::filesystem::path newest;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    if (e.path().extension() == ".log" &&
        (newest.empty() || e.path().filename() > newest.filename()))
      newest = e.path();
  }
  return newest;
}

TEST(PersistStore, TornWalTailRecoversTheCompleteBatches) {
  TempDir tmp;
  constexpr int kBatches = 10;
  {
    Wakeups w;  // outlives the store, whose thread calls it
    auto store = openOrFail(tmp.store());
    ASSERT_TRUE(store);
    store->setWaker(0, w.waker());
    store->start();
    for (int i = 0; i < kBatches; ++i) {
      WriteRequest r({0, static_cast<std::uint64_t>(i)});
      r.put(retained(i));
      ASSERT_EQ(submit(*store, w, std::move(r)), WriteStatus::kOk);
    }
  }
  const std::filesystem::path wal = newestWal(tmp.store());
  ASSERT_FALSE(wal.empty()) << "no *.log in " << tmp.store();
  const auto size = std::filesystem::file_size(wal);
  ASSERT_GT(size, 3u) << "the batches are in the log (the store does not flush at close)";
  std::filesystem::resize_file(wal, size - 3);

  Store::OpenResult reopened = Store::open(tmp.store(), {});
  ASSERT_TRUE(reopened.store) << reopened.error;
  const auto r = loadAllRetained(*reopened.store);
  // The torn batch (the last) may be gone; every earlier one is there, and nothing else.
  EXPECT_GE(r.size(), static_cast<std::size_t>(kBatches - 1));
  for (int i = 0; i < kBatches - 1; ++i)
    EXPECT_EQ(r.count(retained(i).topic), 1u) << i;
  EXPECT_EQ(r.count(retained(kBatches - 1).topic), 0u) << "the torn batch is not half-applied";
}

void overwriteWithGarbage(const std::filesystem::path& file) {
  std::ofstream out(file, std::ios::binary | std::ios::in | std::ios::out);
  const std::string garbage(64, '\xA5');
  out.write(garbage.data(), static_cast<std::streamsize>(garbage.size()));
}

void expectOpenFailsWithRepairHint(const std::string& dir) {
  const Store::OpenResult r = Store::open(dir, {});
  EXPECT_FALSE(r.store);
  ::testing::Test::RecordProperty("open_error", r.error);  // in --gtest_output=xml, for the docs
  EXPECT_NE(r.error.find(dir), std::string::npos) << r.error;
  EXPECT_NE(r.error.find("repair"), std::string::npos) << r.error;
  EXPECT_NE(r.error.find("ldb --db="), std::string::npos) << r.error;
  EXPECT_EQ(r.error.find('\n'), std::string::npos) << "one line: " << r.error;
}

void writeSome(const std::string& dir) {
  Wakeups w;  // outlives the store, whose thread calls it
  auto store = openOrFail(dir);
  ASSERT_TRUE(store);
  store->setWaker(0, w.waker());
  store->start();
  WriteRequest r({0, 1});
  r.put(retained(1));
  EXPECT_EQ(submit(*store, w, std::move(r)), WriteStatus::kOk);
}

TEST(PersistStore, GarbageOverCurrentFailsOpenWithTheRepairCommand) {
  TempDir tmp;
  writeSome(tmp.store());
  overwriteWithGarbage(std::filesystem::path(tmp.store()) / "CURRENT");
  expectOpenFailsWithRepairHint(tmp.store());
}

TEST(PersistStore, GarbageOverManifestFailsOpenWithTheRepairCommand) {
  TempDir tmp;
  writeSome(tmp.store());
  int manifests = 0;
  for (const auto& e : std::filesystem::directory_iterator(tmp.store())) {
    if (e.path().filename().string().rfind("MANIFEST-", 0) == 0) {
      overwriteWithGarbage(e.path());
      ++manifests;
    }
  }
  ASSERT_GT(manifests, 0);
  expectOpenFailsWithRepairHint(tmp.store());
}

TEST(PersistStore, SecondOpenOfTheSameDirectoryFails) {
  TempDir tmp;
  auto store = openOrFail(tmp.store());
  ASSERT_TRUE(store);
  const Store::OpenResult second = Store::open(tmp.store(), {});
  EXPECT_FALSE(second.store);
  EXPECT_NE(second.error.find(tmp.store()), std::string::npos) << second.error;
  // A held store is not damaged: the message says who holds it, and suggests no repair.
  EXPECT_NE(second.error.find("another process holds"), std::string::npos) << second.error;
  EXPECT_EQ(second.error.find("repair"), std::string::npos) << second.error;
}

// Producers push bursts from their own threads, each to its own completion queue. Judged by
// counting: each producer gets exactly one completion per cookie it pushed, all ok; and because
// the thread takes everything queued per fdatasync, it wrote fewer batches than requests (pushing
// a request costs far less than a sync, so requests pile up behind each sync).
TEST(PersistStoreConcurrent, GroupCommitCompletesEveryRequestOfEveryProducer) {
  TempDir tmp;
  constexpr std::uint32_t kProducers = 4;
  constexpr int kPerProducer = 1000;
  StoreOptions options;
  options.producers = kProducers;
  options.queueCapacity = kProducers * kPerProducer;
  std::vector<std::unique_ptr<Wakeups>> wakeups;  // outlive the store, whose thread calls them
  auto store = openOrFail(tmp.store(), options);
  ASSERT_TRUE(store);
  for (std::uint32_t p = 0; p < kProducers; ++p) {
    wakeups.push_back(std::make_unique<Wakeups>());
    store->setWaker(p, wakeups[p]->waker());
  }
  store->start();
  std::vector<std::vector<Completion>> got(kProducers);
  std::vector<std::thread> threads;
  for (std::uint32_t p = 0; p < kProducers; ++p) {
    threads.emplace_back([&, p] {
      for (int i = 0; i < kPerProducer; ++i) {
        WriteRequest r({p, static_cast<std::uint64_t>(i)});
        r.put(retainedKey("p" + std::to_string(p) + "/" + std::to_string(i)),
              encoded(RetainedRecord{"p" + std::to_string(p) + "/" + std::to_string(i), "v", 0, "",
                                     0}));
        while (!store->tryPush(std::move(r)))
          std::this_thread::yield();
      }
      got[p] = awaitCompletions(*store, p, *wakeups[p], kPerProducer);
    });
  }
  for (auto& t : threads)
    t.join();
  for (std::uint32_t p = 0; p < kProducers; ++p) {
    ASSERT_EQ(got[p].size(), static_cast<std::size_t>(kPerProducer)) << "producer " << p;
    std::set<std::uint64_t> cookies;
    for (const Completion& c : got[p]) {
      EXPECT_EQ(c.status, WriteStatus::kOk);
      cookies.insert(c.cookie);
    }
    EXPECT_EQ(cookies.size(), static_cast<std::size_t>(kPerProducer)) << "each cookie once";
    EXPECT_EQ(*cookies.rbegin(), static_cast<std::uint64_t>(kPerProducer - 1));
  }
  const std::uint64_t requests = kProducers * kPerProducer;
  EXPECT_EQ(store->counters().commits.load(), requests);
  EXPECT_LT(store->counters().batches.load(), requests) << "requests shared fdatasyncs";
  EXPECT_EQ(store->counters().syncs.load(), store->counters().batches.load());
  store->close();
  auto reopened = openOrFail(tmp.store());
  ASSERT_TRUE(reopened);
  EXPECT_EQ(loadAllRetained(*reopened).size(), requests);
}

}  // namespace
}  // namespace tern::persist
