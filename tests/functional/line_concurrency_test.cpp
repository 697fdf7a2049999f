// Many concurrent three-socket clients against one broker with several workers: exact delivery
// counts. Also runs under ThreadSanitizer (the broker binary is then built with TSan).
//
// How correctness is judged: every publish carries (publisher, sequence). Each subscriber knows
// exactly which publishers it listens to and how many messages each sends, so it must receive each
// (publisher, sequence) exactly once, and each publisher's messages in increasing sequence order
// (the per-publishing-socket order guarantee). Anything else (loss, duplicate, reorder, a stray
// message) fails the test.
#include <gtest/gtest.h>

#include <atomic>
#include <barrier>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "harness.hpp"

namespace tern::test {
namespace {

struct Expectation {
  std::map<int, int> nextSequence;  // publisher -> next sequence expected
  int remaining = 0;
};

// Parses "MESSAGE@load/<publisher>@<publisher>:<sequence>" and checks it against `e`.
::testing::AssertionResult accept(const std::string& frame, Expectation& e) {
  const std::size_t colon = frame.rfind(':');
  const std::size_t at = frame.rfind('@');
  if (frame.rfind("MESSAGE@load/", 0) != 0 || colon == std::string::npos || at > colon) {
    return ::testing::AssertionFailure() << "unexpected frame " << frame;
  }
  const int publisher = std::stoi(frame.substr(at + 1, colon - at - 1));
  const int sequence = std::stoi(frame.substr(colon + 1));
  auto it = e.nextSequence.find(publisher);
  if (it == e.nextSequence.end()) {
    return ::testing::AssertionFailure() << "message from a publisher not subscribed: " << frame;
  }
  if (sequence != it->second) {
    return ::testing::AssertionFailure()
           << "publisher " << publisher << ": expected sequence " << it->second << ", got "
           << sequence << " (loss, duplicate or reorder)";
  }
  ++it->second;
  --e.remaining;
  return ::testing::AssertionSuccess();
}

TEST(LineProtocolConcurrent, HundredsOfClientsExactDelivery) {
  constexpr int kThreads = 4;
  constexpr int kClientsPerThread = 60;  // 240 sessions, 720 sockets
  constexpr int kClients = kThreads * kClientsPerThread;
  constexpr int kMessages = 40;  // per publisher
  constexpr int kFanout = 2;     // client i listens to i+1 and i+2

  BrokerProcess broker({"--workers", "4"});
  std::vector<std::unique_ptr<LineClient>> clients(kClients);
  std::unique_ptr<LineClient> everything;  // a wildcard subscriber that sees all traffic
  std::barrier sync(kThreads);
  std::atomic<int> failures{0};

  auto worker = [&](int t) {
    const int first = t * kClientsPerThread;
    const int last = first + kClientsPerThread;
    try {
      for (int i = first; i < last; ++i) {
        clients[i] = std::make_unique<LineClient>(broker.port(), "c" + std::to_string(i));
      }
    } catch (const std::exception& e) {
      ADD_FAILURE() << e.what();
      ++failures;
    }
    sync.arrive_and_wait();
    if (failures != 0) return;
    for (int i = first; i < last; ++i) {
      for (int k = 1; k <= kFanout; ++k) {
        const std::string reply =
            clients[i]->request.request("SUBSCRIBE@load/" + std::to_string((i + k) % kClients));
        if (reply != "SUBACK") ++failures;
      }
    }
    sync.arrive_and_wait();  // every SUBACK is in before anyone publishes
    // Pipeline every publish of this thread's clients; each publisher uses one socket, since order
    // is guaranteed per publishing socket.
    for (int m = 0; m < kMessages; ++m) {
      for (int i = first; i < last; ++i) {
        clients[i]->request.send("PUBLISH@load/" + std::to_string(i) + "@" + std::to_string(i) +
                                 ":" + std::to_string(m));
      }
    }
    for (int i = first; i < last; ++i) {
      for (int m = 0; m < kMessages; ++m) {
        const auto reply = clients[i]->request.readLine();
        if (reply.value_or("") != "PUBACK") {
          ADD_FAILURE() << "client " << i << " reply " << m << ": " << reply.value_or("<none>");
          ++failures;
          return;
        }
      }
    }
    for (int i = first; i < last; ++i) {
      Expectation e;
      for (int k = 1; k <= kFanout; ++k)
        e.nextSequence[(i + k) % kClients] = 0;
      e.remaining = kFanout * kMessages;
      while (e.remaining > 0) {
        const auto frame = clients[i]->push.readLine();
        if (!frame) {
          ADD_FAILURE() << "client " << i << " is missing " << e.remaining << " messages";
          ++failures;
          break;
        }
        const auto ok = accept(*frame, e);
        if (!ok) {
          ADD_FAILURE() << "client " << i << ": " << ok.message();
          ++failures;
          break;
        }
      }
      if (!clients[i]->push.silentFor(Millis(1))) {
        ADD_FAILURE() << "client " << i << " received more than expected";
        ++failures;
      }
    }
  };

  everything = std::make_unique<LineClient>(broker.port(), "everything");
  ASSERT_EQ(everything->request.request("SUBSCRIBE@load/#"), "SUBACK");
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t)
    threads.emplace_back(worker, t);
  for (auto& th : threads)
    th.join();
  ASSERT_EQ(failures.load(), 0);

  Expectation all;
  for (int i = 0; i < kClients; ++i)
    all.nextSequence[i] = 0;
  all.remaining = kClients * kMessages;
  while (all.remaining > 0) {
    const auto frame = everything->push.readLine();
    ASSERT_TRUE(frame) << "wildcard subscriber is missing " << all.remaining << " messages";
    ASSERT_TRUE(accept(*frame, all));
  }
  EXPECT_TRUE(everything->push.silentFor(Millis(100)));

  const std::string stats = everything->request.request("STATS");
  EXPECT_NE(stats.find("\"messages_received\":" + std::to_string(kClients * kMessages)),
            std::string::npos)
      << stats;
  EXPECT_NE(stats.find("\"messages_dropped\":0"), std::string::npos) << stats;
  EXPECT_EQ(broker.stop(), 0);
}

TEST(LineProtocolConcurrent, ConcurrentTakeoversAndChurnKeepTheBrokerConsistent) {
  // Clients connect, subscribe, take each other's ids over and disconnect from several threads at
  // once. Judged by: every request gets its documented reply, the broker never dies, and at the end
  // STATS shows exactly the sessions and subscriptions that are still open.
  BrokerProcess broker({"--workers", "3"});
  constexpr int kThreads = 4;
  constexpr int kRounds = 40;
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int r = 0; r < kRounds; ++r) {
        try {
          // Ids are shared between threads on purpose, so takeovers race with everything else.
          LineClient c(broker.port(), "shared" + std::to_string(r % 5));
          if (c.request.request("SUBSCRIBE@churn/" + std::to_string(t)) != "SUBACK" &&
              !c.request.eof()) {
            ++failures;
          }
          c.request.request("PUBLISH@churn/" + std::to_string(r) + "@x");
          if (r % 3 == 0) c.request2.request("DISCONNECT");
        } catch (const std::exception&) {
          // A takeover can close this session's sockets in the middle of its handshake: that is
          // the documented behaviour, not a failure.
        }
      }
    });
  }
  for (auto& th : threads)
    th.join();
  EXPECT_EQ(failures.load(), 0);
  LineClient observer(broker.port(), "observer");
  std::string stats;
  for (int i = 0; i < 100; ++i) {
    stats = observer.request.request("STATS");
    if (stats.find("\"sessions\":1,") != std::string::npos &&
        stats.find("\"subscriptions\":0") != std::string::npos) {
      break;
    }
    std::this_thread::sleep_for(Millis(20));
  }
  EXPECT_NE(stats.find("\"sessions\":1,"), std::string::npos) << stats;
  EXPECT_NE(stats.find("\"subscriptions\":0"), std::string::npos) << stats;
  EXPECT_NE(stats.find("\"sockets\":3,"), std::string::npos) << stats;
  EXPECT_EQ(broker.stop(), 0);
}

}  // namespace
}  // namespace tern::test
