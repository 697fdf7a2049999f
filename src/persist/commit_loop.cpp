#include "commit_loop.hpp"

#include <sys/statvfs.h>

#include <poll.h>
#include <rocksdb/db.h>

#include <algorithm>
#include <cassert>
#include <ctime>
#include <utility>

#include "tern/common/clock.hpp"
#include "tern/common/log.hpp"

namespace tern::persist {

CommitLoop::CommitLoop(rocksdb::DB& db, const StoreOptions& options, std::string dir)
    : db_(db), options_(options), dir_(std::move(dir)) {
  producers_.reserve(options_.producers);
  for (std::uint32_t p = 0; p < options_.producers; ++p)
    producers_.push_back(std::make_unique<Producer>());
  taken_.resize(options_.maxRequestsPerBatch == 0 ? 1 : options_.maxRequestsPerBatch);
}

CommitLoop::~CommitLoop() {
  stop();
}

void CommitLoop::setWaker(std::uint32_t producer, std::function<void()> wake) {
  assert(!thread_.joinable() && producer < producers_.size());
  if (producer < producers_.size()) producers_[producer]->wake = std::move(wake);
}

void CommitLoop::start() {
  assert(!thread_.joinable());
  thread_ = std::thread([this] { run(); });
}

bool CommitLoop::tryPush(WriteRequest&& request) {
  if (request.token().producer >= producers_.size()) return false;
  // Acquire pairs with stop()'s release only to make a late push refuse rather than be lost; the
  // owner's contract (no pushes after close begins) is what guarantees nothing is in flight.
  if (stopping_.load(std::memory_order_acquire)) return false;
  // Relaxed: the counter only bounds the queue; the request itself is published by the queue's
  // own release/acquire. A refused reservation inflates the count for an instant, which can only
  // refuse another push early, never admit one past the capacity.
  auto& depth = counters_.queueDepth.value;
  if (depth.fetch_add(1, std::memory_order_relaxed) >= options_.queueCapacity) {
    depth.fetch_sub(1, std::memory_order_relaxed);
    counters_.refused.value.fetch_add(1, std::memory_order_relaxed);
    return false;
  }
  queue_.push(std::move(request));
  return true;
}

std::size_t CommitLoop::popCompletions(std::uint32_t producer, Completion* out, std::size_t max) {
  if (producer >= producers_.size()) return 0;
  return producers_[producer]->completions.try_dequeue_bulk(out, max);
}

void CommitLoop::stop() {
  if (stopping_.exchange(true, std::memory_order_acq_rel)) {
    if (thread_.joinable()) thread_.join();
    return;
  }
  if (!thread_.joinable()) start();  // nobody started it: still drain what was queued
  queue_.wake();
  thread_.join();
}

void CommitLoop::run() {
  const std::int64_t gather = options_.durability == Durability::kAsync
                                  ? std::min(std::chrono::nanoseconds(options_.asyncBatchInterval),
                                             std::chrono::nanoseconds(options_.flushInterval))
                                        .count()
                                  : 0;
  std::int64_t nextBatchNanos = 0;  // async mode: no batch write before this, unless full
  while (true) {
    if (gather > 0 && queue_.sizeApprox() != 0 && queue_.sizeApprox() < taken_.size() &&
        !stopping_.load(std::memory_order_acquire)) {
      // Async mode under load: let this batch gather (StoreOptions::asyncBatchInterval). The
      // queue's flag is left clear, so producers do not write the eventfd meanwhile.
      if (const std::int64_t wait = nextBatchNanos - common::monotonicNanos(); wait > 0) {
        const timespec ts{0, static_cast<long>(std::min<std::int64_t>(wait, 999'999'999))};
        ::nanosleep(&ts, nullptr);
      }
    }
    const std::size_t n = queue_.popBulk(taken_.data(), taken_.size());
    if (n > 0) {
      counters_.queueDepth.value.fetch_sub(n, std::memory_order_relaxed);
      nextBatchNanos = common::monotonicNanos() + gather;
      commit(n);
      continue;
    }
    const std::int64_t now = common::monotonicNanos();
    if (dirty_ && now >= nextSyncNanos_) {
      syncLog();
      continue;
    }
    if (stopping_.load(std::memory_order_acquire)) {
      // Pushes made before stop() are visible now; one more pass finds any that raced with the
      // empty pop above.
      if (queue_.sizeApprox() != 0) continue;
      if (dirty_) syncLog();
      return;
    }
    int timeoutMs = -1;
    if (dirty_) timeoutMs = static_cast<int>((nextSyncNanos_ - now + 999'999) / 1'000'000);
    if (queue_.prepareToSleep()) {
      pollfd p{queue_.wakeFd(), POLLIN, 0};
      ::poll(&p, 1, timeoutMs);
      queue_.finishSleep();
    }
  }
}

std::string CommitLoop::lowOnSpace(std::size_t batchBytes) const {
  struct statvfs fs {};
  if (options_.minFreeBytes == 0 || ::statvfs(dir_.c_str(), &fs) != 0) return {};
  const std::uint64_t free = std::uint64_t{fs.f_bavail} * fs.f_frsize;
  // The batch goes to the log, and later once more to a table file.
  const std::uint64_t needed = options_.minFreeBytes + 2 * std::uint64_t{batchBytes};
  if (free >= needed) return {};
  return fmt::format("{} bytes free in {}, fewer than the {} kept free for the store", free, dir_,
                     options_.minFreeBytes);
}

void CommitLoop::commit(std::size_t count) {
  batch_.Clear();
  rocksdb::Status status;
  const std::uint64_t added = coalescer_.added(), dropped = coalescer_.dropped();
  // Point writes are folded per key (WriteCoalescer); a range erasure first emits what came
  // before it, so it still applies after those writes and before the later ones.
  for (std::size_t r = 0; r < count && status.ok(); ++r) {
    for (const WriteOp& op : taken_[r].ops()) {
      if (options_.faults != nullptr) options_.faults->checkCrash(op);
      if (op.kind != WriteOp::Kind::kEraseRange) {
        coalescer_.add(op);
        continue;
      }
      status = coalescer_.flushInto(batch_);
      if (status.ok()) status = batch_.DeleteRange(op.key, op.value);
      if (!status.ok()) break;
    }
  }
  // Always flushed (also after an error): the coalescer's pointers into taken_ end here.
  if (rocksdb::Status last = coalescer_.flushInto(batch_); status.ok()) status = last;
  counters_.keyWrites.fetch_add(coalescer_.added() - added, std::memory_order_relaxed);
  counters_.foldedKeyWrites.fetch_add(coalescer_.dropped() - dropped, std::memory_order_relaxed);

  const bool sync = options_.durability == Durability::kSync;
  const std::int64_t begin = common::monotonicNanos();
  if (status.ok()) {
    // A failed write may have put RocksDB in its read-only background-error state; Resume()
    // leaves it once the cause is gone (and is a no-op when there is none).
    if (lastFailed_) db_.Resume();
    if (batch_.Count() == 0) {
      // Everything in it cancelled out: nothing to write, and nothing new to make durable (a
      // sync-mode batch is synced before the next is taken).
    } else if (options_.faults != nullptr && options_.faults->takeFailure()) {
      status = rocksdb::Status::IOError("injected fault (persist::FaultSeam)");
    } else if (const std::string low = lowOnSpace(batch_.GetDataSize()); !low.empty()) {
      // Refused before RocksDB sees it: a log append that hits ENOSPC leaves RocksDB's writer in
      // a state that Debian's build (assertions on) aborts on at the next write.
      status = rocksdb::Status::NoSpace(low);
    } else {
      rocksdb::WriteOptions wo;
      wo.sync = sync;
      status = db_.Write(wo, &batch_);
    }
  }
  const auto elapsed = static_cast<std::uint64_t>(common::monotonicNanos() - begin);

  // Relaxed counters: statistics only (see StoreCounters).
  counters_.batches.fetch_add(1, std::memory_order_relaxed);
  counters_.lastCommitNanos.store(elapsed, std::memory_order_relaxed);
  counters_.totalCommitNanos.fetch_add(elapsed, std::memory_order_relaxed);
  const WriteStatus result = status.ok() ? WriteStatus::kOk : WriteStatus::kStorageError;
  lastFailed_ = !status.ok();
  if (status.ok()) {
    counters_.commits.fetch_add(count, std::memory_order_relaxed);
    if (batch_.Count() == 0) {
      // Nothing was written: nothing to sync.
    } else if (sync) {
      counters_.syncs.fetch_add(1, std::memory_order_relaxed);
    } else if (!dirty_) {
      dirty_ = true;
      nextSyncNanos_ =
          common::monotonicNanos() +
          std::chrono::duration_cast<std::chrono::nanoseconds>(options_.flushInterval).count();
    }
  } else {
    counters_.failedRequests.fetch_add(count, std::memory_order_relaxed);
    counters_.errors.fetch_add(1, std::memory_order_relaxed);
    reportError("write", status.ToString());
  }

  touched_.clear();
  for (std::size_t r = 0; r < count; ++r) {
    const CompletionToken token = taken_[r].token();
    Producer& p = *producers_[token.producer];
    if (p.pending.empty()) touched_.push_back(token.producer);
    p.pending.push_back({token.cookie, result});
    taken_[r] = WriteRequest();  // frees its ops on this thread, now rather than at the next pop
  }
  for (const std::uint32_t index : touched_) {
    Producer& p = *producers_[index];
    p.completions.enqueue_bulk(std::make_move_iterator(p.pending.begin()), p.pending.size());
    p.pending.clear();
    if (p.wake) p.wake();
  }
}

void CommitLoop::syncLog() {
  const rocksdb::Status status = db_.SyncWAL();
  dirty_ = false;
  if (status.ok()) {
    counters_.syncs.fetch_add(1, std::memory_order_relaxed);
  } else {
    counters_.errors.fetch_add(1, std::memory_order_relaxed);
    reportError("log sync", status.ToString());
    // Unsynced writes may still be in the OS buffer: try again at the next interval.
    dirty_ = true;
    nextSyncNanos_ =
        common::monotonicNanos() +
        std::chrono::duration_cast<std::chrono::nanoseconds>(options_.flushInterval).count();
  }
}

void CommitLoop::reportError(const char* what, const std::string& reason) {
  if (const std::uint64_t n = errorLog_.admit(common::monotonicNanos()); n != 0) {
    TERN_LOG_ERROR("persist: {} to {} failed ({} failure(s) since the last report): {}", what, dir_,
                   n, reason);
  }
}

}  // namespace tern::persist
