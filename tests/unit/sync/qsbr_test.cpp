#include "tern/sync/qsbr.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

namespace tern::sync {
namespace {

using namespace std::chrono_literals;

TEST(Qsbr, SynchronizeWaitsForAnOnlineReaderToPassAQuiescentState) {
  QsbrDomain domain;
  std::atomic<bool> readerRegistered{false};
  std::atomic<bool> releaseReader{false};
  std::thread reader([&] {
    QsbrDomain::Reader r(domain);
    readerRegistered = true;
    while (!releaseReader)
      std::this_thread::sleep_for(1ms);  // online, never quiescent
    r.quiescent();
  });
  while (!readerRegistered)
    std::this_thread::sleep_for(1ms);

  std::atomic<bool> done{false};
  std::thread writer([&] {
    domain.synchronize();
    done = true;
  });
  std::this_thread::sleep_for(50ms);
  EXPECT_FALSE(done) << "a grace period ended while a reader was still inside its read section";
  releaseReader = true;
  writer.join();
  EXPECT_TRUE(done);
  reader.join();
}

TEST(Qsbr, OfflineReadersDoNotDelayGracePeriods) {
  QsbrDomain domain;
  std::atomic<bool> ready{false};
  std::atomic<bool> stop{false};
  std::thread reader([&] {
    QsbrDomain::Reader r(domain);
    r.offline();
    ready = true;
    while (!stop)
      std::this_thread::sleep_for(1ms);
    r.online();
  });
  while (!ready)
    std::this_thread::sleep_for(1ms);
  domain.synchronize();  // would hang if the offline reader were waited for
  stop = true;
  reader.join();
}

TEST(Qsbr, RegisteredCallerDoesNotWaitForItself) {
  QsbrDomain domain;
  QsbrDomain::Reader self(domain);
  domain.synchronize();  // would deadlock if the caller waited for its own quiescent state
  SUCCEED();
}

TEST(Qsbr, RetiredObjectsAreFreedAfterAGracePeriod) {
  QsbrDomain domain;
  static std::atomic<int> freed{0};
  freed = 0;
  for (int i = 0; i < 100; ++i) {
    domain.retire(new int(i), [](void* p) {
      delete static_cast<int*>(p);
      ++freed;
    });
  }
  domain.barrier();
  EXPECT_EQ(freed.load(), 100);
  EXPECT_EQ(domain.pending(), 0u);
}

// Readers walk a shared pointer while a writer keeps replacing the object it points to and retiring
// the old one. Correctness is judged by the sanitizers and by a canary: each object carries a magic
// value that its deleter overwrites before freeing, so a reader that could see a freed object would
// see the poison (and ASan/TSan would report the access).
TEST(QsbrConcurrent, ReadersNeverSeeReclaimedObjects) {
  struct Box {
    std::atomic<std::uint64_t> magic{0xC0FFEE};
    std::uint64_t value = 0;
  };
  QsbrDomain domain;
  std::atomic<Box*> shared{new Box()};
  std::atomic<bool> stop{false};
  std::atomic<std::uint64_t> reads{0};
  std::atomic<int> poisonSeen{0};

  std::vector<std::thread> readers;
  for (int t = 0; t < 3; ++t) {
    readers.emplace_back([&, t] {
      QsbrDomain::Reader r(domain);
      std::uint64_t local = 0;
      while (!stop.load(std::memory_order_relaxed)) {
        for (int i = 0; i < 64; ++i) {
          Box* box = shared.load(std::memory_order_acquire);
          if (box->magic.load(std::memory_order_relaxed) != 0xC0FFEE) ++poisonSeen;
          local += box->value & 1;
        }
        ++reads;
        if (t == 0 && (reads % 16) == 0) {
          r.offline();  // exercise the blocking path too
          std::this_thread::yield();
          r.online();
        } else {
          r.quiescent();
        }
      }
      (void)local;
    });
  }

  std::thread writer([&] {
    for (std::uint64_t i = 1; i <= 20000; ++i) {
      Box* fresh = new Box();
      fresh->value = i;
      Box* old = shared.exchange(fresh, std::memory_order_acq_rel);
      domain.retire(old, [](void* p) {
        auto* b = static_cast<Box*>(p);
        b->magic.store(0xDEAD, std::memory_order_relaxed);
        delete b;
      });
    }
  });
  writer.join();
  domain.barrier();
  stop = true;
  for (auto& t : readers)
    t.join();
  delete shared.load();
  EXPECT_EQ(poisonSeen.load(), 0);
  EXPECT_GT(reads.load(), 0u);
}

}  // namespace
}  // namespace tern::sync
