// CommitLoop: the persistence thread of a persist::Store and the queues around it (private to
// src/persist; the contract callers see is in include/tern/persist/store.hpp).
//
// Producers push WriteRequests into one multi-producer queue (sync::Inbox: moodycamel
// ConcurrentQueue plus an eventfd wake-up that costs a busy thread nothing). A capacity counter
// bounds it: tryPush reserves a slot with one relaxed fetch_add and gives it back when over. The
// thread takes everything queued (up to maxRequestsPerBatch) into one rocksdb::WriteBatch (each
// key written once, by WriteCoalescer, and not at all when created and erased in it), writes
// it (sync mode: WriteOptions::sync, one fdatasync for the whole batch), then posts a Completion
// for every request to its producer's completion queue (a single-producer use of a moodycamel
// queue, one bulk enqueue per producer per batch) and calls that producer's waker once.
//
// In async mode a batch is written at most once per StoreOptions::asyncBatchInterval while
// requests keep coming (the first after a quiet spell at once); the thread sleeps meanwhile
// without arming the queue's wake-up, so producers pay nothing for it.
//
// Threads: the constructor, setWaker, start and stop run on the owner's thread; tryPush on any
// thread; popCompletions on the producer's thread; run() is the persistence thread.
#pragma once

#include <concurrentqueue/concurrentqueue.h>
#include <rocksdb/write_batch.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

#include "tern/common/cache_line.hpp"
#include "tern/common/log_limiter.hpp"
#include "tern/persist/store.hpp"
#include "tern/sync/inbox.hpp"
#include "write_coalescer.hpp"

namespace tern::persist {

class CommitLoop {
 public:
  CommitLoop(rocksdb::DB& db, const StoreOptions& options, std::string dir);
  ~CommitLoop();  // stop()

  void setWaker(std::uint32_t producer, std::function<void()> wake);
  void start();
  bool tryPush(WriteRequest&& request);
  std::size_t popCompletions(std::uint32_t producer, Completion* out, std::size_t max);
  // Refuses further pushes, lets the thread drain and sync what is queued, joins it. Idempotent.
  void stop();

  const StoreCounters& counters() const noexcept { return counters_; }

 private:
  struct alignas(common::kCacheLine) Producer {
    moodycamel::ConcurrentQueue<Completion> completions;
    std::function<void()> wake;       // constant once the thread runs
    std::vector<Completion> pending;  // persistence thread only: this batch's completions
  };

  void run();
  // Writes requests_[0..count) as one batch and posts their completions.
  void commit(std::size_t count);
  void syncLog();
  void reportError(const char* what, const std::string& reason);
  // Why a batch of `batchBytes` must not be written now (the file system is nearly full), or
  // empty when it may.
  std::string lowOnSpace(std::size_t batchBytes) const;

  rocksdb::DB& db_;
  const StoreOptions options_;
  const std::string dir_;
  sync::Inbox<WriteRequest> queue_;
  std::vector<std::unique_ptr<Producer>> producers_;  // constant size
  StoreCounters counters_;
  // Set by stop() on the owner's thread, read by producers and the thread. Release/acquire: the
  // thread that sees it set also sees every push made before stop() (the owner's contract is that
  // producers stopped before it), and the drain after it finds them in the queue.
  std::atomic<bool> stopping_{false};
  std::thread thread_;

  // Persistence thread only.
  std::vector<WriteRequest> taken_;
  rocksdb::WriteBatch batch_;
  WriteCoalescer coalescer_;
  std::vector<std::uint32_t> touched_;
  bool dirty_ = false;       // async mode: written and not yet synced
  bool lastFailed_ = false;  // the previous write failed: try DB::Resume before the next
  std::int64_t nextSyncNanos_ = 0;
  common::LogLimiter errorLog_{1'000'000'000};  // once per second
};

}  // namespace tern::persist
