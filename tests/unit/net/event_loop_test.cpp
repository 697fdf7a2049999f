// net::EventLoop on both backends, the data path: every test runs once per backend
// (EventLoop/EventLoopBackends.<Test>/<backend>; the fixture is in event_loop_test_support.hpp,
// listeners and connect() are in event_loop_connect_test.cpp). Loopback TCP only; every wait has a
// deadline; everything is closed at the end.
#include "tern/net/event_loop.hpp"

#include <gtest/gtest.h>

#include <deque>
#include <set>

#include "unit/net/event_loop_test_support.hpp"

namespace tern::net {
namespace {

using namespace tern::net::testing;

INSTANTIATE_TEST_SUITE_P(EventLoop, EventLoopBackends, kBackends, backendName);

TEST_P(EventLoopBackends, EchoesThroughLoopbackInOrder) {
  Hooks hooks;
  std::unique_ptr<EventLoop> loop = make(hooks);
  LoopbackListener listener;
  std::deque<Conn> conns;
  hooks.accept = [&](int tag, int fd, const sockaddr_storage& peer) {
    EXPECT_EQ(tag, 7);
    EXPECT_EQ(peer.ss_family, AF_INET);
    Conn& c = conns.emplace_back();
    c.id = loop->add(fd, &c);
  };
  hooks.receive = [&](SocketId id, void*, std::span<const char> bytes) {
    loop->output(id).append({bytes.data(), bytes.size()});
    loop->flush(id);
  };
  hooks.inputEnd = [&](SocketId id, void* user, int) {
    static_cast<Conn*>(user)->closed = true;
    loop->close(id);
  };
  loop->addListener(listener.fd, 7);
  LoopThread thread(*loop);
  const std::vector<std::size_t> sizes = {
      1,     2,     63,     64,      1000,  4095, 4096,  4097,   16383,   16384,
      16385, 65536, 100000, 1 << 20, 12345, 3,    99999, 262144, 1 << 18, (3 << 20) + 7};
  std::vector<Flow> flows;
  for (std::size_t i = 0; i < sizes.size(); ++i) {
    Flow& f = flows.emplace_back();
    f.fd = connectClient(listener.port);
    f.out = pattern(i, sizes[i]);
    f.expect = sizes[i];
  }
  ASSERT_TRUE(drive(flows, 30 * kSeconds));
  for (std::size_t i = 0; i < sizes.size(); ++i) {
    EXPECT_EQ(flows[i].in.size(), sizes[i]) << "flow " << i;
    EXPECT_EQ(firstMismatch(i, flows[i].in), -1) << "flow " << i;
    ::close(flows[i].fd);
  }
  const std::int64_t until = common::monotonicNanos() + scaled(10 * kSeconds);
  bool allClosed = false;
  while (!allClosed && common::monotonicNanos() < until) {
    thread.call([&] {
      allClosed = conns.size() == sizes.size();
      for (const Conn& c : conns)
        allClosed = allClosed && c.closed;
    });
  }
  EXPECT_TRUE(allClosed) << "every end of input reported";
  thread.stop();
  EXPECT_EQ(hooks.staleCallbacks.load(), 0);
}

TEST_P(EventLoopBackends, SendsBigOutputToSlowReaderWhole) {
  constexpr std::size_t kFirst = 32 << 20;
  constexpr std::size_t kChunk = 8 << 20;
  constexpr int kChunks = 4;  // 64 MiB in all
  constexpr std::size_t kTotal = kFirst + kChunks * kChunk;
  MemoryAccount account;
  Hooks hooks;
  EventLoopOptions options;
  options.account = &account;
  std::unique_ptr<EventLoop> loop = make(hooks, options);
  LoopbackListener listener;
  Conn server;
  std::size_t appended = 0;
  std::vector<std::size_t> unsentAtAppend;
  bool drained = false;
  hooks.accept = [&](int, int fd, const sockaddr_storage&) {
    server.id = loop->add(fd, &server);
    loop->output(server.id).append(pattern(1, kFirst));
    appended = kFirst;
    loop->flush(server.id);
  };
  hooks.drained = [&](SocketId, void*) { drained = true; };
  loop->addListener(listener.fd, 0);
  LoopThread thread(*loop);
  const int client = connectClient(listener.port);
  std::string got;
  got.reserve(kTotal);
  for (int c = 0; c < kChunks; ++c) {
    thread.call([&] {
      ASSERT_NE(loop->user(server.id), nullptr);
      unsentAtAppend.push_back(loop->unsentBytes(server.id));
      loop->output(server.id).append(pattern(1, kChunk, appended));
      appended += kChunk;
      loop->flush(server.id);
      if (c == kChunks - 1) loop->notifyWhenDrained(server.id);
    });
    for (int k = 0; k < 8; ++k) {  // a slow reader: 64 KiB, then a pause
      ASSERT_TRUE(readAtLeast(client, got, got.size() + 65536, 10 * kSeconds));
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
  }
  ASSERT_TRUE(readAtLeast(client, got, kTotal, 60 * kSeconds));
  EXPECT_EQ(got.size(), kTotal);
  EXPECT_EQ(firstMismatch(1, got), -1);
  for (const std::size_t unsent : unsentAtAppend)
    EXPECT_GT(unsent, 0u) << "appended while output was still queued or in flight";
  const std::int64_t until = common::monotonicNanos() + scaled(10 * kSeconds);
  bool done = false;
  while (!done && common::monotonicNanos() < until)
    thread.call([&] { done = drained; });
  EXPECT_TRUE(done) << "onDrained after the last byte left";
  thread.call([&] {
    EXPECT_EQ(loop->unsentBytes(server.id), 0u);
    EXPECT_GT(loop->counters().sends, 1u) << "partial sends resubmit the rest";
    loop->close(server.id);
  });
  ::close(client);
  thread.stop();
  loop.reset();
  EXPECT_EQ(account.bytes, 0) << "every output buffer was charged and uncharged";
}

// The loop keeps a small output buffer between sends (no allocation per message); the owner's
// sweep of quiet connections gives it back, and the socket works on as before.
TEST_P(EventLoopBackends, IdleOutputMemoryIsReleasedOnRequest) {
  MemoryAccount account;
  Hooks hooks;
  EventLoopOptions options;
  options.account = &account;
  std::unique_ptr<EventLoop> loop = make(hooks, options);
  LoopbackListener listener;
  Conn server;
  bool drained = false;
  hooks.accept = [&](int, int fd, const sockaddr_storage&) {
    server.id = loop->add(fd, &server);
    loop->output(server.id).append(pattern(2, 3000));
    loop->flush(server.id);
    loop->notifyWhenDrained(server.id);
  };
  hooks.drained = [&](SocketId, void*) { drained = true; };
  loop->addListener(listener.fd, 0);
  LoopThread thread(*loop);
  const int client = connectClient(listener.port);
  std::string got;
  ASSERT_TRUE(readAtLeast(client, got, 3000, 10 * kSeconds));
  const std::int64_t until = common::monotonicNanos() + scaled(10 * kSeconds);
  bool done = false;
  while (!done && common::monotonicNanos() < until)
    thread.call([&] { done = drained; });
  ASSERT_TRUE(done) << "onDrained after the last byte left";
  thread.call([&] {
    EXPECT_GT(account.bytes, 0) << "the loop keeps its buffer between sends";
    loop->releaseIdleBuffers(server.id);
    EXPECT_EQ(account.bytes, 0) << "nothing queued or in flight: every output buffer freed";
    EXPECT_EQ(loop->unsentBytes(server.id), 0u);
    loop->output(server.id).append(pattern(2, 1000, 3000));
    loop->flush(server.id);
  });
  ASSERT_TRUE(readAtLeast(client, got, 4000, 10 * kSeconds));
  EXPECT_EQ(got.size(), 4000u);
  EXPECT_EQ(firstMismatch(2, got), -1);
  thread.call([&] { loop->close(server.id); });
  ::close(client);
  thread.stop();
  loop.reset();
  EXPECT_EQ(account.bytes, 0);
}

TEST_P(EventLoopBackends, PausedSocketReceivesNothingNewUntilResumed) {
  Hooks hooks;
  std::unique_ptr<EventLoop> loop = make(hooks);
  LoopbackListener listener;
  Conn server;
  std::atomic<std::size_t> received{0};
  hooks.accept = [&](int, int fd, const sockaddr_storage&) { server.id = loop->add(fd, &server); };
  hooks.receive = [&](SocketId, void*, std::span<const char> bytes) {
    server.in.append(bytes.data(), bytes.size());
    received.store(server.in.size());
  };
  loop->addListener(listener.fd, 0);
  LoopThread thread(*loop);
  const int client = connectClient(listener.port);
  const std::string data = pattern(3, 3 * 32768);
  const auto waitFor = [&](std::size_t n) {
    const std::int64_t until = common::monotonicNanos() + scaled(10 * kSeconds);
    while (received.load() < n && common::monotonicNanos() < until)
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    return received.load() >= n;
  };
  std::vector<Flow> flows(1);
  flows[0].fd = client;
  flows[0].out = data.substr(0, 32768);
  ASSERT_TRUE(drive(flows, 10 * kSeconds));
  ASSERT_TRUE(waitFor(32768));
  thread.call([&] { loop->pauseReceive(server.id); });
  // uring: the cancel leaves with the next turn's submit; give it a few turns.
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  const std::size_t atPause = received.load();
  flows[0].out = data;
  ASSERT_TRUE(drive(flows, 10 * kSeconds));  // 64 KiB more: the kernel's buffers hold them
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_EQ(received.load(), atPause) << "input reached the handler while paused";
  thread.call([&] { loop->resumeReceive(server.id); });
  ASSERT_TRUE(waitFor(data.size()));
  thread.call([&] {
    EXPECT_EQ(server.in.size(), data.size());
    EXPECT_EQ(firstMismatch(3, server.in), -1);
    loop->close(server.id);
  });
  ::close(client);
  thread.stop();
  EXPECT_EQ(hooks.staleCallbacks.load(), 0);
}

TEST_P(EventLoopBackends, PauseResumeTogglingLosesNothing) {
  constexpr std::size_t kBytes = 4 << 20;
  Hooks hooks;
  std::unique_ptr<EventLoop> loop = make(hooks);
  LoopbackListener listener;
  Conn server;
  std::atomic<std::size_t> received{0};
  std::int64_t mismatch = -1;
  hooks.accept = [&](int, int fd, const sockaddr_storage&) { server.id = loop->add(fd, &server); };
  hooks.receive = [&](SocketId, void*, std::span<const char> bytes) {
    const std::int64_t bad = firstMismatch(4, {bytes.data(), bytes.size()}, received.load());
    if (bad >= 0 && mismatch < 0) mismatch = bad;
    received.fetch_add(bytes.size());
  };
  loop->addListener(listener.fd, 0);
  LoopThread thread(*loop);
  const int client = connectClient(listener.port);
  std::thread writer([&] {
    std::vector<Flow> flows(1);
    flows[0].fd = client;
    flows[0].out = pattern(4, kBytes);
    EXPECT_TRUE(drive(flows, 30 * kSeconds));
  });
  const std::int64_t until = common::monotonicNanos() + scaled(30 * kSeconds);
  for (int i = 0; received.load() < kBytes && common::monotonicNanos() < until; ++i) {
    thread.call([&, i] {
      if (i % 2 == 0) {
        loop->pauseReceive(server.id);
      } else {
        loop->resumeReceive(server.id);
      }
    });
    std::this_thread::sleep_for(std::chrono::microseconds(500 + 700 * (i % 5)));
  }
  thread.call([&] { loop->resumeReceive(server.id); });
  writer.join();
  while (received.load() < kBytes && common::monotonicNanos() < until)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  thread.call([&] {
    EXPECT_EQ(received.load(), kBytes);
    EXPECT_EQ(mismatch, -1);
    loop->close(server.id);
  });
  ::close(client);
  thread.stop();
}

TEST_P(EventLoopBackends, ReportsEndOfInputAndReset) {
  Hooks hooks;
  std::unique_ptr<EventLoop> loop = make(hooks);
  LoopbackListener listener;
  std::deque<Conn> conns;
  hooks.accept = [&](int, int fd, const sockaddr_storage&) {
    Conn& c = conns.emplace_back();
    c.index = conns.size() - 1;
    c.id = loop->add(fd, &c);
  };
  hooks.receive = [&](SocketId, void* user, std::span<const char> bytes) {
    static_cast<Conn*>(user)->in.append(bytes.data(), bytes.size());
  };
  hooks.inputEnd = [&](SocketId id, void* user, int error) {
    Conn& c = *static_cast<Conn*>(user);
    EXPECT_FALSE(c.ended) << "end of input reported twice";
    c.ended = true;
    c.error = error;
    // A last reply, then close once it is sent.
    loop->output(id).append("bye");
    loop->flush(id);
    loop->notifyWhenDrained(id);
  };
  hooks.drained = [&](SocketId id, void* user) {
    static_cast<Conn*>(user)->closed = true;
    loop->close(id);
  };
  loop->addListener(listener.fd, 0);
  auto accepted = [&](std::size_t n) {
    return runUntil(
        *loop, [&] { return conns.size() >= n; }, 10 * kSeconds);
  };
  const int eof = connectClient(listener.port);
  ASSERT_TRUE(accepted(1));
  ASSERT_EQ(::send(eof, "hello", 5, MSG_NOSIGNAL), 5);
  ::shutdown(eof, SHUT_WR);
  ASSERT_TRUE(runUntil(
      *loop, [&] { return conns[0].closed; }, 10 * kSeconds));
  EXPECT_EQ(conns[0].in, "hello");
  EXPECT_EQ(conns[0].error, 0);
  std::string reply;
  EXPECT_TRUE(readAtLeast(eof, reply, 3, 10 * kSeconds));
  EXPECT_EQ(reply, "bye");
  EXPECT_EQ(waitForEnd(eof, 10 * kSeconds), 0) << "closed after the reply";
  ::close(eof);

  const int reset = connectClient(listener.port);
  ASSERT_TRUE(accepted(2));
  const linger abort{1, 0};
  ::setsockopt(reset, SOL_SOCKET, SO_LINGER, &abort, sizeof abort);
  ::close(reset);  // RST
  ASSERT_TRUE(runUntil(
      *loop, [&] { return conns[1].ended; }, 10 * kSeconds));
  EXPECT_EQ(conns[1].error, ECONNRESET);
  runUntil(
      *loop, [&] { return conns[1].closed; }, 2 * kSeconds);
  if (!conns[1].closed) loop->close(conns[1].id);  // the reply to a reset peer may not drain
  EXPECT_EQ(hooks.staleCallbacks.load(), 0);
}

TEST_P(EventLoopBackends, ClosesWithOutputInFlightAndReusesSlots) {
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  constexpr int kRounds = 60;
#else
  constexpr int kRounds = 240;
#endif
  constexpr int kInFlight = 4;
  Hooks hooks;
  std::unique_ptr<EventLoop> loop = make(hooks);
  LoopbackListener listener;
  std::deque<Conn> conns;
  const std::string big = pattern(5, 1 << 20);
  hooks.accept = [&](int, int fd, const sockaddr_storage&) {
    Conn& c = conns.emplace_back();
    c.id = loop->add(fd, &c);
    loop->output(c.id).append(big);  // more than the socket takes: a send stays in flight
    loop->flush(c.id);
  };
  const auto stale = [](void* user) { EXPECT_FALSE(static_cast<Conn*>(user)->closed); };
  hooks.receive = [&](SocketId id, void* user, std::span<const char>) {
    stale(user);
    static_cast<Conn*>(user)->closed = true;
    loop->close(id);  // output in flight, the receive armed, the peer still sending
    EXPECT_EQ(loop->user(id), nullptr);
  };
  hooks.inputEnd = [&](SocketId id, void* user, int) {
    stale(user);
    static_cast<Conn*>(user)->closed = true;
    loop->close(id);
  };
  hooks.drained = [&](SocketId, void* user) { stale(user); };
  loop->addListener(listener.fd, 0);
  LoopThread thread(*loop);
  const std::string ping = pattern(6, 65536);
  std::deque<int> clients;
  for (int round = 0; round < kRounds; ++round) {
    const int fd = connectClient(listener.port);
    ::send(fd, ping.data(), ping.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    clients.push_back(fd);
    if (clients.size() < kInFlight) continue;
    EXPECT_NE(waitForEnd(clients.front(), 10 * kSeconds), -1) << "round " << round;
    ::close(clients.front());
    clients.pop_front();
  }
  for (const int fd : clients) {
    EXPECT_NE(waitForEnd(fd, 10 * kSeconds), -1);
    ::close(fd);
  }
  thread.call([&] {
    EXPECT_EQ(conns.size(), static_cast<std::size_t>(kRounds));
    std::set<SocketId> ids;
    std::set<std::uint32_t> slots;
    for (const Conn& c : conns) {
      EXPECT_TRUE(c.closed);
      EXPECT_EQ(loop->user(c.id), nullptr);
      ids.insert(c.id);
      slots.insert(static_cast<std::uint32_t>(c.id >> 32));
    }
    EXPECT_EQ(ids.size(), conns.size()) << "an id is never reused";
    EXPECT_LT(slots.size(), conns.size() / 4) << "slots are reused";
  });
  thread.stop();
  EXPECT_EQ(hooks.staleCallbacks.load(), 0);
}

// A socket starts on loop A (thread A), which queues output and detaches it while the peer is
// sending; loop B (thread B) adds it with A's unsent output and the bytes A received after
// detach(). Judged by: the peer reads A's output then B's, each byte once, in order; A's input,
// then `received`, then B's input are the peer's bytes, each once, in order.
TEST_P(EventLoopBackends, DetachedSocketContinuesOnAnotherLoopExactlyOnce) {
  constexpr std::size_t kOutA = 8 << 20;
  constexpr std::size_t kOutB = 1 << 20;
  constexpr std::size_t kIn = 4 << 20;
  constexpr std::size_t kDetachAfter = 256 << 10;
  Hooks hooksA;
  Hooks hooksB;
  std::unique_ptr<EventLoop> loopA = make(hooksA);
  std::unique_ptr<EventLoop> loopB = make(hooksB);
  LoopbackListener listener;
  Conn a;
  Conn b;
  std::size_t unsentAtDetach = 0;
  std::atomic<std::size_t> inputs{0};  // a.in + b.in sizes, for the wait below
  struct Moved {
    int fd = -1;
    ByteBuffer unsent;
    std::string received;
  };
  LoopThread* threadB = nullptr;
  hooksA.accept = [&](int, int fd, const sockaddr_storage&) {
    a.id = loopA->add(fd, &a);
    loopA->output(a.id).append(pattern(10, kOutA));
    loopA->flush(a.id);
  };
  hooksA.receive = [&](SocketId id, void*, std::span<const char> bytes) {
    a.in.append(bytes.data(), bytes.size());
    inputs.fetch_add(bytes.size());
    if (a.in.size() >= kDetachAfter) loopA->detach(id);
  };
  hooksA.detached = [&](SocketId id, void* user, int fd, ByteBuffer& unsent, ByteBuffer& received) {
    EXPECT_EQ(id, a.id);
    EXPECT_EQ(user, &a);
    auto moved = std::make_shared<Moved>();
    moved->fd = fd;
    moved->unsent.takeFrom(unsent);
    moved->received.assign(received.view());
    received.consume(received.size());
    unsentAtDetach = moved->unsent.size();
    threadB->post([&, moved] {
      b.in = moved->received;  // handled before anything B reads
      inputs.fetch_add(moved->received.size());
      b.id = loopB->add(moved->fd, &b, &moved->unsent);
      loopB->output(b.id).append(pattern(10, kOutB, kOutA));
      loopB->flush(b.id);
    });
  };
  hooksB.receive = [&](SocketId, void*, std::span<const char> bytes) {
    b.in.append(bytes.data(), bytes.size());
    inputs.fetch_add(bytes.size());
  };
  loopA->addListener(listener.fd, 0);
  LoopThread threadBRunner(*loopB);
  threadB = &threadBRunner;  // before thread A starts: it reads the pointer
  LoopThread threadA(*loopA);
  const int client = connectClient(listener.port);
  std::thread writer([&] {
    const std::string data = pattern(11, kIn);
    std::vector<Flow> flows(1);
    flows[0].fd = client;
    for (std::size_t at = 0; at < kIn; at += 16384) {
      flows[0].out = data.substr(at, 16384);
      flows[0].sent = 0;
      ASSERT_TRUE(drive(flows, 30 * kSeconds));
      if (at % (256 << 10) == 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  });
  std::string got;
  for (int k = 0; k < 32; ++k) {  // slow at first, so that A's output is in flight at detach
    ASSERT_TRUE(readAtLeast(client, got, got.size() + 65536, 20 * kSeconds));
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  ASSERT_TRUE(readAtLeast(client, got, kOutA + kOutB, 60 * kSeconds));
  writer.join();
  EXPECT_EQ(got.size(), kOutA + kOutB);
  EXPECT_EQ(firstMismatch(10, got), -1);
  const std::int64_t until = common::monotonicNanos() + scaled(30 * kSeconds);
  while (inputs.load() < kIn && common::monotonicNanos() < until)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  std::string inA;
  threadA.call([&] {
    inA = a.in;
    EXPECT_EQ(loopA->user(a.id), nullptr);
    EXPECT_GT(unsentAtDetach, 0u) << "output still queued at detach() moved along";
  });
  threadBRunner.call([&] {
    EXPECT_EQ(inA.size() + b.in.size(), kIn);
    EXPECT_EQ(firstMismatch(11, inA + b.in), -1);
    loopB->close(b.id);
  });
  ::close(client);
  threadA.stop();
  threadBRunner.stop();
  EXPECT_EQ(hooksA.staleCallbacks.load() + hooksB.staleCallbacks.load(), 0);
}

TEST_P(EventLoopBackends, ExhaustedReceiveBuffersLoseNothing) {
  constexpr std::size_t kClients = 32;
  constexpr std::size_t kBytes = 256 << 10;
  Hooks hooks;
  EventLoopOptions options;
  options.receiveBuffers = 4;  // far fewer than sockets receiving at once
  options.receiveBufferBytes = 4096;
  std::unique_ptr<EventLoop> loop = make(hooks, options);
  LoopbackListener listener;
  std::deque<Conn> conns;
  std::atomic<std::size_t> total{0};
  int mismatches = 0;
  hooks.accept = [&](int, int fd, const sockaddr_storage&) {
    Conn& c = conns.emplace_back();
    c.id = loop->add(fd, &c);
  };
  hooks.receive = [&](SocketId, void* user, std::span<const char> bytes) {
    Conn& c = *static_cast<Conn*>(user);
    // The stream is named by its first bytes' pattern: find it once, then check every byte.
    if (c.in.empty()) c.index = static_cast<std::size_t>(static_cast<unsigned char>(bytes[0]));
    c.in.append(bytes.data(), bytes.size());
    total.fetch_add(bytes.size());
  };
  loop->addListener(listener.fd, 0);
  LoopThread thread(*loop);
  std::vector<Flow> flows(kClients);
  for (std::size_t i = 0; i < kClients; ++i) {
    flows[i].fd = connectClient(listener.port);
    flows[i].out = pattern(100 + i, kBytes);
    flows[i].out[0] = static_cast<char>(i);  // names the stream
  }
  ASSERT_TRUE(drive(flows, 30 * kSeconds));
  const std::int64_t until = common::monotonicNanos() + scaled(30 * kSeconds);
  while (total.load() < kClients * kBytes && common::monotonicNanos() < until)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  thread.call([&] {
    ASSERT_EQ(conns.size(), kClients);
    for (Conn& c : conns) {
      ASSERT_EQ(c.in.size(), kBytes);
      ASSERT_LT(c.index, kClients);
      if (c.in.substr(1) != flows[c.index].out.substr(1)) ++mismatches;
      loop->close(c.id);
    }
  });
  EXPECT_EQ(total.load(), kClients * kBytes);
  EXPECT_EQ(mismatches, 0);
  for (Flow& f : flows)
    ::close(f.fd);
  thread.stop();
}

// Structure, not speed: io_uring submits every send of a turn with one io_uring_enter (and
// the blocking turn's wait is the same enter); epoll reads a socket again only after a full read.
TEST_P(EventLoopBackends, SystemCallsPerTurnFollowTheDesign) {
  constexpr std::size_t kSockets = 16;
  Hooks hooks;
  std::unique_ptr<EventLoop> loop = make(hooks);
  LoopbackListener listener;
  std::deque<Conn> conns;
  std::size_t receives = 0;
  std::size_t bytesIn = 0;
  hooks.accept = [&](int, int fd, const sockaddr_storage&) {
    Conn& c = conns.emplace_back();
    c.id = loop->add(fd, &c);
  };
  hooks.receive = [&](SocketId, void*, std::span<const char> bytes) {
    ++receives;
    bytesIn += bytes.size();
  };
  loop->addListener(listener.fd, 0);
  std::vector<int> clients;
  for (std::size_t i = 0; i < kSockets; ++i)
    clients.push_back(connectClient(listener.port));
  ASSERT_TRUE(runUntil(
      *loop, [&] { return conns.size() == kSockets; }, 10 * kSeconds));
  loop->runOnce(0);
  const std::string message = pattern(7, 100);
  EventLoop::Counters before = loop->counters();
  for (const int fd : clients)
    ASSERT_EQ(::send(fd, message.data(), message.size(), MSG_NOSIGNAL), 100);
  ASSERT_TRUE(runUntil(
      *loop, [&] { return bytesIn == kSockets * 100; }, 10 * kSeconds));
  EventLoop::Counters after = loop->counters();
  EXPECT_EQ(after.reads - before.reads, receives) << "a read that returned no data";

  const auto flushAll = [&] {
    for (const Conn& c : conns) {
      loop->output(c.id).append(message);
      loop->flush(c.id);
    }
  };
  before = loop->counters();
  flushAll();
  loop->runOnce(0);
  after = loop->counters();
  EXPECT_EQ(after.sends - before.sends, kSockets);
  if (uring()) {
    EXPECT_EQ(after.submits - before.submits, 1u) << "one io_uring_enter for the turn's sends";
    EXPECT_EQ(after.waits - before.waits, 0u);
  } else {
    EXPECT_EQ(after.waits - before.waits, 1u) << "one epoll_wait per turn";
    EXPECT_EQ(after.submits - before.submits, 0u) << "no epoll_ctl: the sends did not block";
  }
  before = loop->counters();
  flushAll();
  loop->runOnce(uring() ? 5 * kSeconds : 50 * kMillis);
  after = loop->counters();
  EXPECT_EQ(after.sends - before.sends, kSockets);
  EXPECT_EQ(after.waits - before.waits, 1u);
  if (uring()) {
    EXPECT_EQ(after.submits - before.submits, 1u) << "the wait submits the sends";
  }
  for (const int fd : clients) {
    std::string got;
    EXPECT_TRUE(readAtLeast(fd, got, 200, 10 * kSeconds));
    EXPECT_EQ(got, message + message);
    ::close(fd);
  }
  for (const Conn& c : conns)
    loop->close(c.id);
  loop->runOnce(0);
}

}  // namespace
}  // namespace tern::net
