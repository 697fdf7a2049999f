// Inbox<T>: a multi-producer queue into one event-loop thread, with an eventfd wake-up that fires
// only when the consumer may be asleep.
//
// Ownership: owned by the consumer (a worker). Producers are any threads (acceptors, other
// workers); consumer calls (popBulk, prepareToSleep, finishSleep) are made by the owner only.
//
// Ordering: items pushed by one thread are popped in the order that thread pushed them (moodycamel
// ConcurrentQueue keeps per-producer FIFO order); items of different producers interleave freely.
//
// Wake-up protocol: before blocking, the consumer sets `sleeping_` and re-checks the queue; after
// pushing, a producer clears `sleeping_` and writes the eventfd only if it was set. Both sides use
// a read-modify-write on the same flag, so the two RMWs are totally ordered: if the producer's
// comes first, the consumer's RMW acquires it and its re-check sees the item; if the consumer's
// comes first, the producer sees the flag and wakes it. No lost wake-up, and a busy consumer costs
// a producer one uncontended RMW per push (per batch with pushBulk) instead of a write(2). RMWs
// rather than fences because ThreadSanitizer does not model fences.
#pragma once

#include <concurrentqueue/concurrentqueue.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <functional>
#include <system_error>

#include "tern/common/cache_line.hpp"

namespace tern::sync {

template <typename T>
class Inbox {
 public:
  // Creates the eventfd. Throws std::system_error when the process is out of descriptors
  // (start-up).
  Inbox() : wakeFd_(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) {
    if (wakeFd_ < 0) throw std::system_error(errno, std::generic_category(), "eventfd");
  }
  ~Inbox() { ::close(wakeFd_); }
  Inbox(const Inbox&) = delete;
  Inbox& operator=(const Inbox&) = delete;

  // The descriptor the consumer adds to its epoll set; readable after a wake-up (unless a waker
  // is set).
  int wakeFd() const noexcept { return wakeFd_; }

  // Makes wake-ups call `waker` (e.g. the consumer's event loop's wake) instead of writing the
  // eventfd. Consumer only, before any producer may push. The waker must be callable from any
  // thread.
  void setWaker(std::function<void()> waker) { waker_ = std::move(waker); }

  // Enqueues one item and wakes the consumer if it may be asleep. Any thread. Allocates only when
  // the queue grows a block (amortized, not per item).
  void push(T&& item) {
    queue_.enqueue(std::move(item));
    wakeIfSleeping();
  }

  // Enqueues `count` items from `first` (moved from) as one batch, with at most one wake-up.
  template <typename It>
  void pushBulk(It first, std::size_t count) {
    if (count == 0) return;
    queue_.enqueue_bulk(std::make_move_iterator(first), count);
    wakeIfSleeping();
  }

  // Moves up to `max` items into `out`; returns how many. Consumer only. Never blocks.
  std::size_t popBulk(T* out, std::size_t max) { return queue_.try_dequeue_bulk(out, max); }

  // Consumer only: announces that it is about to block. Returns false (and stays awake) when items
  // are already waiting, in which case the consumer must not block.
  bool prepareToSleep() noexcept {
    // acq_rel RMW: acquires a producer RMW that came before it (with that producer's enqueue).
    sleeping_.value.exchange(true, std::memory_order_acq_rel);
    if (queue_.size_approx() != 0) {
      sleeping_.value.store(false, std::memory_order_relaxed);
      return false;
    }
    return true;
  }

  // Consumer only: back from blocking. Clears the flag and consumes a pending wake-up.
  void finishSleep() noexcept {
    sleeping_.value.store(false, std::memory_order_relaxed);
    if (waker_) return;  // the waker's owner consumes its own wake-ups
    std::uint64_t ignored = 0;
    [[maybe_unused]] ssize_t n = ::read(wakeFd_, &ignored, sizeof ignored);
  }

  // Wakes the consumer unconditionally (used to ask it to stop). Any thread.
  void wake() noexcept {
    if (waker_) {
      waker_();
      return;
    }
    const std::uint64_t one = 1;
    [[maybe_unused]] ssize_t n = ::write(wakeFd_, &one, sizeof one);
  }

  std::size_t sizeApprox() const noexcept { return queue_.size_approx(); }

 private:
  void wakeIfSleeping() noexcept {
    // acq_rel RMW: releases the enqueue to a consumer RMW that comes after it; the exchange also
    // makes sure only one producer writes the eventfd per sleep.
    if (sleeping_.value.exchange(false, std::memory_order_acq_rel)) wake();
  }

  moodycamel::ConcurrentQueue<T> queue_;
  int wakeFd_;
  std::function<void()> waker_;  // constant once producers push
  // Written by the consumer and read by every producer: a cache line of its own, away from the
  // queue's hot fields.
  common::CacheAligned<std::atomic<bool>> sleeping_;
};

}  // namespace tern::sync
