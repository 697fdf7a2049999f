#include "tern/sync/qsbr.hpp"

#include <algorithm>
#include <chrono>

namespace tern::sync {
namespace {

// The record of the calling thread in the domain it registered with (one domain per thread in
// practice; synchronize() uses it to skip the caller).
thread_local const void* t_domain = nullptr;
thread_local const void* t_record = nullptr;

// The reclaimer batches: it waits this long for more retirements before starting a grace period,
// so that one grace period frees many objects.
constexpr auto kBatchDelay = std::chrono::milliseconds(2);

}  // namespace

QsbrDomain::QsbrDomain() : reclaimer_([this] { reclaimerLoop(); }) {}

QsbrDomain::~QsbrDomain() {
  {
    std::lock_guard lock(retiredMutex_);
    stopping_ = true;
  }
  retiredChanged_.notify_all();
  reclaimer_.join();
  // No readers are left (precondition), so everything pending can go now.
  for (const Retired& r : retired_)
    r.deleter(r.object);
}

QsbrDomain& QsbrDomain::global() {
  // Leaked on purpose: worker threads may still be unwinding during static destruction.
  static QsbrDomain* domain = new QsbrDomain();
  return *domain;
}

QsbrDomain::Reader::Reader(QsbrDomain& domain) : domain_(domain), record_(new Record()) {
  {
    std::lock_guard lock(domain_.readersMutex_);
    domain_.readers_.push_back(record_);
  }
  online();
  t_domain = &domain_;
  t_record = record_;
}

QsbrDomain::Reader::~Reader() {
  record_->value.store(0, std::memory_order_release);
  {
    std::lock_guard lock(domain_.readersMutex_);
    auto& readers = domain_.readers_;
    readers.erase(std::remove(readers.begin(), readers.end(), record_), readers.end());
  }
  if (t_record == record_) t_domain = t_record = nullptr;
  delete record_;
}

void QsbrDomain::Reader::offline() noexcept {
  // Release: reads done while online happen-before a grace period that sees "offline".
  record_->value.store(0, std::memory_order_release);
}

void QsbrDomain::Reader::online() noexcept {
  // First announce "online" with a period that is certainly not newer than the next grace period.
  record_->value.store(domain_.period_.load(std::memory_order_relaxed), std::memory_order_relaxed);
  // Then order that store against the grace period's announcement of its new period
  // (synchronize()), so that one of them sees the other:
  //  - if the grace period comes first, this thread's following reads see every unlink the writer
  //    made before starting it;
  //  - if this thread comes first, the grace period's scan sees the store above (non-zero, below
  //    its target) and waits for this thread.
#if defined(__SANITIZE_THREAD__)
  // ThreadSanitizer does not model fences: a read-modify-write on period_ (a fetch_add of 0),
  // ordered against the grace period's own fetch_add in period_'s modification order, says the
  // same in terms it checks.
  domain_.period_.fetch_add(0, std::memory_order_acq_rel);
#else
  // A seq_cst fence here and one after the grace period's fetch_add: whichever comes first in the
  // single total order of seq_cst fences, the other side sees its writes. Unlike the RMW, it does
  // not write period_'s cache line, which every worker would otherwise take in turn at every
  // wake-up.
  std::atomic_thread_fence(std::memory_order_seq_cst);
#endif
}

void QsbrDomain::retire(void* object, Deleter deleter) {
  bool wake = false;
  {
    std::lock_guard lock(retiredMutex_);
    wake = retired_.empty();
    retired_.push_back({object, deleter});
    ++retiredCount_;
  }
  if (wake) retiredChanged_.notify_one();
}

void QsbrDomain::synchronize() {
  std::lock_guard serial(synchronizeMutex_);
  // acq_rel RMW: releases the unlinks made before this call to readers that acquire the new period,
  // and acquires a reader's online() RMW that came before it (see Reader::online()).
  const std::uint64_t target = period_.fetch_add(1, std::memory_order_acq_rel) + 1;
  // Pairs with the fence in Reader::online() (see there).
  std::atomic_thread_fence(std::memory_order_seq_cst);
  waitForReaders(target);
}

void QsbrDomain::waitForReaders(std::uint64_t target) {
  std::lock_guard lock(readersMutex_);
  for (Record* record : readers_) {
    if (t_domain == this && t_record == record) continue;  // the caller is quiescent right here
    int spins = 0;
    for (;;) {
      // Acquire pairs with the reader's release store in quiescent()/offline().
      const std::uint64_t seen = record->value.load(std::memory_order_acquire);
      if (seen == 0 || seen >= target) break;
      if (++spins < 64) {
        std::this_thread::yield();
      } else {
        std::this_thread::sleep_for(std::chrono::microseconds(50));
      }
    }
  }
}

void QsbrDomain::barrier() {
  std::unique_lock lock(retiredMutex_);
  const std::uint64_t goal = retiredCount_;
  retiredChanged_.notify_all();
  retiredChanged_.wait(lock, [&] { return reclaimedCount_ >= goal; });
}

std::size_t QsbrDomain::pending() const {
  std::lock_guard lock(retiredMutex_);
  return retired_.size() + inFlight_;
}

void QsbrDomain::reclaimerLoop() {
  std::vector<Retired> batch;
  std::unique_lock lock(retiredMutex_);
  for (;;) {
    retiredChanged_.wait(lock, [&] { return stopping_ || !retired_.empty(); });
    if (stopping_) return;
    // Let a burst of retirements accumulate so that one grace period covers all of them.
    retiredChanged_.wait_for(lock, kBatchDelay, [&] { return stopping_; });
    if (stopping_) return;
    batch.swap(retired_);
    inFlight_ = batch.size();
    lock.unlock();
    synchronize();
    for (const Retired& r : batch)
      r.deleter(r.object);
    const std::size_t freed = batch.size();
    batch.clear();
    lock.lock();
    inFlight_ = 0;
    reclaimedCount_ += freed;
    retiredChanged_.notify_all();
  }
}

}  // namespace tern::sync
