// QsbrDomain: quiescent-state-based read-copy-update (QSBR RCU), the reclamation scheme behind the
// topic trie and the retained store.
//
// Overview
//   Readers (the worker threads) traverse shared structures with plain acquire loads: no lock, no
//   atomic read-modify-write, no per-read bookkeeping at all. Writers never change a node a reader
//   may be looking at; they publish a new version with a release store and hand the old one to
//   retire(). The old version is freed only after a grace period: once every registered reader has
//   passed a quiescent state (a point where it holds no pointer into the structure).
//
// Worked example (a worker loop)
//   QsbrDomain::Reader reader(domain);  // register this thread
//   for (;;) {
//     reader.offline();   // about to block: a sleeping reader never delays writers
//     epoll_wait(...);
//     reader.online();
//     handleEvents();     // reads the trie freely; pointers die with this turn
//     reader.quiescent(); // "I hold no pointers now": one load and one store
//   }
//
// Rules for readers
//   - A thread must hold a Reader (be registered) to read RCU-protected data.
//   - Pointers obtained while online are valid until this thread's next quiescent() or offline();
//     never keep one across them. Take a reference (e.g. Message::addRefs) to keep an object
//     longer.
//   - Never read protected data while offline.
// Rules for writers
//   - Writers serialize among themselves (a mutex of the data structure, not of this domain).
//   - Unlink with a release store, then retire() the old object; never free it directly.
//   - retire() may be called from any thread, registered or not, online or offline.
// Reclamation
//   Retired objects collect in a list; a reclaimer thread owned by the domain wakes when objects
//   are pending, waits one grace period for the whole batch and runs their deleters. A grace period
//   costs the writer nothing; the reclaimer's wait is bounded by the longest reader turn. barrier()
//   waits until everything retired so far has been freed.
// Overheads (see bench/ and docs/architecture.md for the measured numbers)
//   Read side: zero instructions per read; one load and one store per quiescent(); one store before
//   and one store plus a seq_cst fence after a blocking call (a read-modify-write on the shared
//   counter instead of the fence under ThreadSanitizer, which does not model fences). Writer side:
//   one mutex-protected push per retire().
//
// Why not liburcu's urcu-qsbr: ThreadSanitizer cannot see the ordering liburcu establishes with
// inline assembly barriers, so every concurrency test would drown in false reports. This domain is
// built from std::atomic only, so TSan checks the real thing.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <thread>
#include <vector>

#include "tern/common/cache_line.hpp"

namespace tern::sync {

class QsbrDomain {
 public:
  using Deleter = void (*)(void*);

  QsbrDomain();
  // REQUIRES: no Reader of this domain is alive. Frees everything still pending.
  ~QsbrDomain();
  QsbrDomain(const QsbrDomain&) = delete;
  QsbrDomain& operator=(const QsbrDomain&) = delete;

  // The process-wide domain the broker's trie and retained store use.
  static QsbrDomain& global();

  // Registration of one thread as a reader; starts online. Owned by that thread, which is the only
  // one that may call its methods. A thread holds at most one Reader per domain.
  class Reader {
   public:
    explicit Reader(QsbrDomain& domain);
    ~Reader();
    Reader(const Reader&) = delete;
    Reader& operator=(const Reader&) = delete;

    // Announces that this thread holds no protected pointers. Never blocks; one load, one store.
    void quiescent() noexcept {
      // Release: every read of protected data this thread did happens-before a grace period
      // that observes this value (the reclaimer loads it with acquire).
      record_->value.store(domain_.period_.load(std::memory_order_acquire),
                           std::memory_order_release);
    }
    // Leaves the read side (before blocking). REQUIRES: online.
    void offline() noexcept;
    // Re-enters the read side. REQUIRES: offline.
    void online() noexcept;
    bool isOnline() const noexcept { return record_->value.load(std::memory_order_relaxed) != 0; }

   private:
    QsbrDomain& domain_;
    common::CacheAligned<std::atomic<std::uint64_t>>* record_;
  };

  // Frees `object` with `deleter` after a grace period. Any thread. Never blocks on readers.
  void retire(void* object, Deleter deleter);
  template <typename T>
  void retire(T* object) {
    retire(static_cast<void*>(object), [](void* p) { delete static_cast<T*>(p); });
  }

  // Waits until every reader has passed a quiescent state (or been offline) since the call began.
  // A registered caller counts as quiescent for itself. May block; never call it while holding a
  // lock a reader could need.
  void synchronize();

  // Waits until every object retired before the call has been freed.
  // REQUIRES: the caller is not an online reader of this domain (the grace period would wait for
  // the caller itself): go offline() around it.
  void barrier();

  // Objects retired and not yet freed (approximate while writers run). Thread-safe.
  std::size_t pending() const;

 private:
  struct Retired {
    void* object;
    Deleter deleter;
  };
  using Record = common::CacheAligned<std::atomic<std::uint64_t>>;

  void reclaimerLoop();
  void waitForReaders(std::uint64_t target);

  // Grace-period counter; starts at 1 because a record value of 0 means "offline". Every reader
  // loads it at every online() and quiescent(); only grace periods write it: a cache line of its
  // own, so that the writers' mutexes and lists beside it never invalidate the readers' copy.
  alignas(common::kCacheLine) std::atomic<std::uint64_t> period_{1};

  alignas(common::kCacheLine) mutable std::mutex readersMutex_;  // guards readers_
  std::vector<Record*> readers_;

  std::mutex synchronizeMutex_;  // one grace period at a time

  mutable std::mutex retiredMutex_;  // guards retired_, reclaimed_, retiredCount_, stopping_
  std::condition_variable retiredChanged_;
  std::vector<Retired> retired_;
  std::uint64_t retiredCount_ = 0;    // objects ever retired
  std::uint64_t reclaimedCount_ = 0;  // objects ever freed
  std::size_t inFlight_ = 0;          // taken by the reclaimer, not yet freed
  bool stopping_ = false;
  std::thread reclaimer_;
};

}  // namespace tern::sync
