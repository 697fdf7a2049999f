#include "broker/store_link.hpp"

#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "tern/common/clock.hpp"
#include "tern/common/message.hpp"
#include "unit/persist/store_test_support.hpp"

namespace tern::broker {
namespace {

using persist::testing::deadline;
using persist::testing::openOrFail;
using persist::testing::TempDir;
using persist::testing::Wakeups;

struct Polled {
  struct Answer {
    unsigned origin;
    std::uint64_t fence;
    bool ok;
  };
  std::vector<Answer> answers;          // fences answered
  std::vector<HeldAck> acks;            // in the order poll released them
  std::vector<net::SocketId> released;  // stalled connections read again
};

// Polls until `acks` acknowledgements were released in total (or the deadline passed).
void pollUntil(StoreLink& link, Wakeups& wakeups, Polled& out, std::size_t acks) {
  const auto until = deadline();
  for (;;) {
    const std::uint64_t seen = wakeups.count();
    link.poll(
        [&](unsigned o, std::uint64_t f, bool ok) {
          out.answers.push_back({o, f, ok});
        },
        [&](const HeldAck& a) { out.acks.push_back(a); },
        [&](net::SocketId s) { out.released.push_back(s); });
    if (out.acks.size() >= acks || std::chrono::steady_clock::now() >= until) return;
    wakeups.waitPast(
        seen, std::min(until, std::chrono::steady_clock::now() + std::chrono::milliseconds(100)));
  }
}

std::unique_ptr<Connection> connectionOn(net::SocketId socket) {
  auto c = std::make_unique<Connection>();
  c->socket = socket;
  c->protocol = Protocol::kMqtt;
  return c;
}

std::map<std::string, std::string> retainedOnDisk(const std::string& dir) {
  std::map<std::string, std::string> out;
  auto store = openOrFail(dir);
  if (!store) return out;
  const persist::LoadStats stats =
      store->loadRetained([&](persist::RetainedRecord&& r) { out[r.topic] = r.payload; });
  EXPECT_TRUE(stats.ok()) << stats.error;
  return out;
}

TEST(StoreLink, WithoutAStoreNothingIsWrittenOrHeld) {
  StoreLink link(nullptr, 0);
  EXPECT_FALSE(link.enabled());
  EXPECT_FALSE(link.holdsAcks());
  EXPECT_EQ(link.writeRetained(*common::Message::make("a", "b", true, 1)), 0u);
  EXPECT_TRUE(link.idle());
}

TEST(StoreLink, AcknowledgementsLeaveInTheOrderHeldOnceTheirWritesAreDurable) {
  TempDir tmp;
  Wakeups wakeups;  // outlives the store: its thread calls the waker until close
  auto store = openOrFail(tmp.store());
  ASSERT_TRUE(store);
  store->setWaker(0, wakeups.waker());
  store->start();
  StoreLink link(store.get(), 0);
  ASSERT_TRUE(link.holdsAcks());
  auto ap = connectionOn(11);
  Connection& a = *ap;
  auto bp = connectionOn(12);
  Connection& b = *bp;

  const std::uint64_t t1 = link.writeRetained(*common::Message::make("r/1", "one", true, 1));
  const std::uint64_t t2 = link.writeRetained(*common::Message::make("r/2", "two", true, 1));
  EXPECT_LT(t1, t2);
  HeldAck first;
  first.after = t1 - 1;
  first.ticket = t1;
  first.packetId = 1;
  link.hold(a, first);
  HeldAck second;
  second.after = t2 - 1;
  second.ticket = t2;
  second.packetId = 2;
  link.hold(b, second);
  // An acknowledgement that needs no write, behind a's held one: it keeps a's order.
  HeldAck third;
  third.packetId = 3;
  ASSERT_TRUE(StoreLink::holding(a));
  link.hold(a, third);
  EXPECT_EQ(a.heldAcks, 2u);
  EXPECT_FALSE(link.idle());

  Polled polled;
  pollUntil(link, wakeups, polled, 3);
  ASSERT_EQ(polled.acks.size(), 3u);
  EXPECT_EQ(polled.acks[0].packetId, 1);
  EXPECT_EQ(polled.acks[0].socket, 11u);
  EXPECT_EQ(polled.acks[1].packetId, 2);
  EXPECT_EQ(polled.acks[1].socket, 12u);
  EXPECT_EQ(polled.acks[2].packetId, 3);
  for (const HeldAck& ack : polled.acks)
    EXPECT_TRUE(ack.ok);
  EXPECT_TRUE(link.idle());

  // A delete is written too.
  const std::uint64_t t3 = link.writeRetained(*common::Message::make("r/1", "", true, 0));
  HeldAck del;
  del.after = t3 - 1;
  del.ticket = t3;
  link.hold(a, del);
  pollUntil(link, wakeups, polled, 4);
  ASSERT_EQ(polled.acks.size(), 4u);
  store->close();
  store.reset();
  const auto disk = retainedOnDisk(tmp.store());
  EXPECT_EQ(disk, (std::map<std::string, std::string>{{"r/2", "two"}}));
}

// A started store of one producer whose writes a FaultSeam can fail.
struct FaultyStore {
  FaultyStore() {
    persist::StoreOptions options;
    options.faults = &faults;
    store = openOrFail(tmp.store(), options);
    if (!store) return;
    store->setWaker(0, wakeups.waker());
    store->start();
    link = std::make_unique<StoreLink>(store.get(), 0);
  }
  TempDir tmp;
  persist::FaultSeam faults;
  Wakeups wakeups;  // outlives the store: its thread calls the waker until close
  std::unique_ptr<persist::Store> store;
  std::unique_ptr<StoreLink> link;
  std::unique_ptr<Connection> connection = connectionOn(5);
};

TEST(StoreLink, AStorageErrorReachesTheAcknowledgementThatWaitedForIt) {
  FaultyStore f;
  ASSERT_TRUE(f.store);
  StoreLink& link = *f.link;
  Connection& c = *f.connection;

  f.faults.failNextWrites(1);
  HeldAck failed;
  failed.ticket = link.writeRetained(*common::Message::make("f/1", "x", true, 1));
  failed.after = failed.ticket - 1;
  link.hold(c, failed);
  Polled polled;
  pollUntil(link, f.wakeups, polled, 1);
  ASSERT_EQ(polled.acks.size(), 1u);
  EXPECT_FALSE(polled.acks[0].ok);

  // The next write succeeds: the store recovered by itself.
  HeldAck next;
  next.ticket = link.writeRetained(*common::Message::make("f/1", "y", true, 1));
  next.after = next.ticket - 1;
  link.hold(c, next);
  pollUntil(link, f.wakeups, polled, 2);
  ASSERT_EQ(polled.acks.size(), 2u);
  EXPECT_TRUE(polled.acks[1].ok);
}

persist::WriteRequest retainedWrite(const std::string& topic, const std::string& value) {
  persist::WriteRequest request;
  persist::RetainedRecord record;
  record.topic = topic;
  record.payload = value;
  record.qos = 1;
  request.put(record);
  return request;
}

// holdThen (a QoS 2 packet id after the publish's deliveries): the follow-up is submitted only
// once the acknowledgement's own writes and fence are durable, the acknowledgement waits for it
// in its place, and a failed, or cancelled, follow-up is not written.
TEST(StoreLink, AFollowUpIsWrittenOnlyOnceTheAcknowledgementsWritesAreDurable) {
  FaultyStore f;
  ASSERT_TRUE(f.store);
  StoreLink& link = *f.link;
  Connection& c = *f.connection;
  const auto pollOnce = [&](Polled& out) {
    link.poll([](unsigned, std::uint64_t, bool) {},
              [&](const HeldAck& a) { out.acks.push_back(a); }, [](net::SocketId) {});
  };

  // Waits for another worker's fence: nothing of its own is written before that.
  HeldAck first;
  first.packetId = 1;
  first.fence = link.turnFence();
  link.holdThen(c, first, retainedWrite("then/1", "id"));
  const std::uint64_t fence = link.postTurnFence(1);
  HeldAck behind;  // needs no write, but keeps its connection's order
  behind.packetId = 2;
  link.hold(c, behind);
  Polled polled;
  pollOnce(polled);
  EXPECT_TRUE(polled.acks.empty());
  EXPECT_EQ(link.lastTicket(), 0u) << "the follow-up went before the fence passed";
  link.fencePassed(fence, true);
  pollOnce(polled);
  EXPECT_EQ(link.lastTicket(), 1u) << "the fence passed: the follow-up is submitted";
  EXPECT_TRUE(polled.acks.empty()) << "released before its follow-up was durable";
  pollUntil(link, f.wakeups, polled, 2);
  ASSERT_EQ(polled.acks.size(), 2u);
  EXPECT_EQ(polled.acks[0].packetId, 1);
  EXPECT_TRUE(polled.acks[0].ok);
  EXPECT_EQ(polled.acks[1].packetId, 2);

  // Its own write fails: the follow-up is not written, the acknowledgement says so.
  f.faults.failNextWrites(1);
  HeldAck failed;
  failed.packetId = 3;
  failed.ticket = link.writeRetained(*common::Message::make("f/1", "x", true, 1));
  failed.after = failed.ticket - 1;
  link.holdThen(c, failed, retainedWrite("then/3", "id"));
  pollUntil(link, f.wakeups, polled, 3);
  ASSERT_EQ(polled.acks.size(), 3u);
  EXPECT_FALSE(polled.acks[2].ok);
  EXPECT_EQ(link.lastTicket(), failed.ticket);

  // Cancelled before its turn (the session ended): not written.
  HeldAck cancelled;
  cancelled.packetId = 4;
  cancelled.ticket = link.writeRetained(*common::Message::make("f/2", "y", true, 1));
  cancelled.after = cancelled.ticket - 1;
  link.holdThen(c, cancelled, retainedWrite("then/4", "id"));
  link.cancelThen(persist::retainedKey("then/4"));
  pollUntil(link, f.wakeups, polled, 4);
  ASSERT_EQ(polled.acks.size(), 4u);
  EXPECT_TRUE(polled.acks[3].ok);
  EXPECT_EQ(link.lastTicket(), cancelled.ticket);

  // Nothing to wait for first (no write, no fence, nothing held before it): submitted at once.
  HeldAck alone;
  alone.packetId = 5;
  link.holdThen(c, alone, retainedWrite("then/5", "id"));
  EXPECT_EQ(link.lastTicket(), cancelled.ticket + 1);
  pollUntil(link, f.wakeups, polled, 5);
  ASSERT_EQ(polled.acks.size(), 5u);
  EXPECT_TRUE(polled.acks[4].ok);

  // Two waiting for one fence: once it passes, one poll submits both follow-ups (not one per
  // batch behind the first: that would make a worker's QoS 2 publishes one per fdatasync).
  HeldAck a1;
  a1.packetId = 6;
  a1.fence = link.turnFence();
  link.holdThen(c, a1, retainedWrite("then/6", "id"));
  HeldAck a2;
  a2.packetId = 7;
  a2.fence = a1.fence;
  link.holdThen(c, a2, retainedWrite("then/7", "id"));
  const std::uint64_t second = link.postTurnFence(1);
  const std::uint64_t last = link.lastTicket();
  link.fencePassed(second, true);
  pollOnce(polled);
  EXPECT_EQ(link.lastTicket(), last + 2);
  pollUntil(link, f.wakeups, polled, 7);
  ASSERT_EQ(polled.acks.size(), 7u);
  EXPECT_EQ(polled.acks[5].packetId, 6);
  EXPECT_EQ(polled.acks[6].packetId, 7);
  EXPECT_TRUE(link.idle());

  f.store->close();
  f.store.reset();
  const auto disk = retainedOnDisk(f.tmp.store());
  EXPECT_EQ(disk.count("then/1"), 1u);
  EXPECT_EQ(disk.count("then/3"), 0u);
  EXPECT_EQ(disk.count("then/4"), 0u);
  EXPECT_EQ(disk.count("f/2"), 1u);
  EXPECT_EQ(disk.count("then/5"), 1u);
}

TEST(StoreLink, AFullQueueKeepsRequestsInOrderAndStallsTheirConnectionsUntilItDrains) {
  TempDir tmp;
  persist::StoreOptions options;
  options.queueCapacity = 2;
  Wakeups wakeups;  // outlives the store: its thread calls the waker until close
  auto store = openOrFail(tmp.store(), options);
  ASSERT_TRUE(store);
  store->setWaker(0, wakeups.waker());
  StoreLink link(store.get(), 0);
  auto cp = connectionOn(7);
  Connection& c = *cp;
  // Not started yet: the queue fills at 2, the rest waits in the backlog, in order.
  std::vector<std::uint64_t> tickets;
  for (int i = 0; i < 6; ++i) {
    tickets.push_back(link.writeRetained(
        *common::Message::make("q/" + std::to_string(i % 2), std::to_string(i), true, 1)));
    if (link.backlogged()) link.stall(c);
  }
  EXPECT_TRUE(link.backlogged());
  EXPECT_TRUE(c.heldByStore);
  HeldAck last;
  last.after = tickets.front() - 1;  // waits for all six
  last.ticket = tickets.back();
  link.hold(c, last);
  store->start();
  Polled polled;
  pollUntil(link, wakeups, polled, 1);
  ASSERT_EQ(polled.acks.size(), 1u);
  // The last ticket completed only after the backlog moved into the store.
  EXPECT_FALSE(link.backlogged());
  EXPECT_EQ(polled.released, std::vector<net::SocketId>{7});
  store->close();
  store.reset();
  // Order kept: the last value of each topic is the one written last.
  const auto disk = retainedOnDisk(tmp.store());
  EXPECT_EQ(disk, (std::map<std::string, std::string>{{"q/0", "4"}, {"q/1", "5"}}));
}

TEST(StoreLink, AnAcknowledgementWaitsForTheFenceOfAnotherWorkersWrites) {
  TempDir tmp;
  persist::FaultSeam faults;
  persist::StoreOptions options;
  options.producers = 2;
  options.faults = &faults;
  Wakeups wakeups0;  // outlive the store: its thread calls the wakers until close
  Wakeups wakeups1;
  auto store = openOrFail(tmp.store(), options);
  ASSERT_TRUE(store);
  store->setWaker(0, wakeups0.waker());
  store->setWaker(1, wakeups1.waker());
  store->start();
  StoreLink origin(store.get(), 0);
  StoreLink destination(store.get(), 1);
  auto cp = connectionOn(3);
  Connection& c = *cp;

  for (const bool fail : {false, true}) {
    SCOPED_TRACE(fail ? "a storage error on the other worker" : "ok");
    // The publisher's worker wrote nothing itself; its publish went to the other worker.
    HeldAck ack;
    ack.packetId = 9;
    ack.fence = origin.turnFence();
    origin.hold(c, ack);
    const std::uint64_t fence = origin.postTurnFence(1);
    EXPECT_EQ(fence, ack.fence);
    Polled atOrigin;
    origin.poll([&](unsigned, std::uint64_t, bool) { ADD_FAILURE(); },
                [&](const HeldAck& a) { atOrigin.acks.push_back(a); }, [](net::SocketId) {});
    EXPECT_TRUE(atOrigin.acks.empty()) << "released before the other worker answered";

    // The destination delivers the batch: one write, then answers once it is durable.
    const std::uint64_t before = destination.lastTicket();
    if (fail) faults.failNextWrites(1);
    destination.writeRetained(*common::Message::make("fenced", fail ? "b" : "a", true, 1));
    destination.fenceArrived(0, fence, before);
    Polled atDestination;
    const auto until = deadline();
    while (atDestination.answers.empty() && std::chrono::steady_clock::now() < until) {
      const std::uint64_t seen = wakeups1.count();
      destination.poll(
          [&](unsigned o, std::uint64_t f, bool ok) {
            atDestination.answers.push_back({o, f, ok});
          },
          [](const HeldAck&) {}, [](net::SocketId) {});
      if (atDestination.answers.empty()) {
        wakeups1.waitPast(seen, std::chrono::steady_clock::now() + std::chrono::milliseconds(100));
      }
    }
    ASSERT_EQ(atDestination.answers.size(), 1u);
    EXPECT_EQ(atDestination.answers[0].origin, 0u);
    EXPECT_EQ(atDestination.answers[0].fence, fence);
    EXPECT_EQ(atDestination.answers[0].ok, !fail);
    EXPECT_TRUE(destination.idle());

    origin.fencePassed(fence, atDestination.answers[0].ok);
    origin.poll([&](unsigned, std::uint64_t, bool) { ADD_FAILURE(); },
                [&](const HeldAck& a) { atOrigin.acks.push_back(a); }, [](net::SocketId) {});
    ASSERT_EQ(atOrigin.acks.size(), 1u);
    EXPECT_EQ(atOrigin.acks[0].packetId, 9);
    EXPECT_EQ(atOrigin.acks[0].ok, !fail);
    EXPECT_TRUE(origin.idle());
  }
}

TEST(StoreLink, AnAnswerWaitsForTheFenceOfDeliveriesHandedOn) {
  // A shared-subscription member on the destination declined, and the destination handed the
  // delivery on to a third worker: its answer to the origin's fence waits for its own fence
  // (onward) to pass, and carries that fence's failure.
  TempDir tmp;
  auto store = openOrFail(tmp.store());
  ASSERT_TRUE(store);
  StoreLink destination(store.get(), 0);
  for (const bool fail : {false, true}) {
    SCOPED_TRACE(fail ? "the third worker failed to write" : "ok");
    const std::uint64_t onward = destination.turnFence();
    destination.fenceArrived(1, 7, destination.lastTicket(), onward);
    std::vector<bool> answers;
    const auto poll = [&] {
      destination.poll([&](unsigned, std::uint64_t, bool ok) { answers.push_back(ok); },
                       [](const HeldAck&) {}, [](net::SocketId) {});
    };
    poll();
    EXPECT_TRUE(answers.empty()) << "answered before its onward fence was even posted";
    EXPECT_EQ(destination.postTurnFence(1), onward);
    poll();
    EXPECT_TRUE(answers.empty()) << "answered before the third worker did";
    EXPECT_FALSE(destination.idle());
    destination.fencePassed(onward, !fail);
    poll();
    ASSERT_EQ(answers.size(), 1u);
    EXPECT_EQ(answers[0], !fail);
    EXPECT_TRUE(destination.idle());
  }
}

TEST(StoreLink, AFenceNoBatchCarriedHasPassed) {
  TempDir tmp;
  auto store = openOrFail(tmp.store());
  ASSERT_TRUE(store);
  StoreLink link(store.get(), 0);
  EXPECT_EQ(link.postTurnFence(3), 0u) << "no publish asked for one this turn";
  auto cp = connectionOn(4);
  HeldAck ack;
  ack.fence = link.turnFence();
  EXPECT_EQ(link.turnFence(), ack.fence) << "one fence per turn";
  link.hold(*cp, ack);
  link.postTurnFence(0);
  std::vector<HeldAck> released;
  link.poll([](unsigned, std::uint64_t, bool) {}, [&](const HeldAck& a) { released.push_back(a); },
            [](net::SocketId) {});
  EXPECT_EQ(released.size(), 1u);
}

TEST(StoreLink, MessagesAreWrittenOnceAndErasedWithTheirLastReference) {
  TempDir tmp;
  auto store = openOrFail(tmp.store());
  ASSERT_TRUE(store);
  StoreLink link(store.get(), 0);
  std::atomic<std::uint64_t> ids{100};
  link.setMessageIds(&ids);
  common::MessageRef m = common::Message::make("m/1", "payload", false, 1);
  persist::WriteRequest first;
  const std::uint64_t id = link.referenceMessage(*m, first);
  EXPECT_EQ(id, 100u);
  EXPECT_EQ(first.ops().size(), 1u) << "the m/ record";
  persist::WriteRequest second;
  EXPECT_EQ(link.referenceMessage(*m, second), id);
  EXPECT_TRUE(second.ops().empty()) << "written once per worker";
  EXPECT_EQ(link.messageIdOf(*m), id);
  persist::WriteRequest release;
  link.releaseMessage(*m, release);
  EXPECT_TRUE(release.ops().empty()) << "one reference left";
  link.releaseMessage(*m, release);
  ASSERT_EQ(release.ops().size(), 1u);
  EXPECT_EQ(release.ops()[0].key, persist::messageKey(id));
  EXPECT_EQ(link.messageIdOf(*m), 0u);

  // Pinned at start-up (another worker's sessions name it too): never erased here.
  link.adoptMessage(*m, 7, true);
  persist::WriteRequest pinned;
  link.releaseMessage(*m, pinned);
  EXPECT_TRUE(pinned.ops().empty());
}

TEST(StoreLink, ALineTopicLongerThanTheStoreKeepsIsUnstorable) {
  TempDir tmp;
  auto store = openOrFail(tmp.store());
  ASSERT_TRUE(store);
  StoreLink link(store.get(), 0);
  const std::string topic(persist::kMaxStringBytes + 1, 't');
  EXPECT_EQ(link.writeRetained(*common::Message::make(topic, "v", true, 0)),
            StoreLink::kUnstorable);
  EXPECT_TRUE(link.idle());
}

TEST(StoreLink, ExpiryBecomesAWallClockDeadline) {
  EXPECT_EQ(StoreLink::unixMillisOf(0), 0u);
  const std::int64_t inAMinute = common::monotonicNanos() + 60'000'000'000;
  const auto nowMs =
      static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                     std::chrono::system_clock::now().time_since_epoch())
                                     .count());
  const std::uint64_t at = StoreLink::unixMillisOf(inAMinute);
  EXPECT_GE(at, nowMs + 59'000);
  EXPECT_LE(at, nowMs + 61'000);
  EXPECT_GE(StoreLink::unixMillisOf(1), 1u) << "a past deadline stays non-zero (expired)";
}

}  // namespace
}  // namespace tern::broker
