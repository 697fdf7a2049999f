// Fifo<T>: a growable ring of trivially copyable values (the intended times of publishes waiting
// for their acknowledgement, in request order).
//
// Capacity is a power of two and doubles when full, so pushes allocate only while the queue reaches
// its working depth. Owned by one session on one thread. Not thread-safe.
#pragma once

#include <cassert>
#include <cstddef>
#include <memory>
#include <type_traits>

namespace tern::loadgen {

template <typename T>
class Fifo {
  static_assert(std::is_trivially_copyable_v<T>);

 public:
  std::size_t size() const noexcept { return size_; }
  bool empty() const noexcept { return size_ == 0; }

  void push(T value) {
    if (size_ == capacity_) grow();
    storage_[(head_ + size_) & (capacity_ - 1)] = value;
    ++size_;
  }
  // REQUIRES: !empty().
  T pop() noexcept {
    assert(size_ != 0);
    T value = storage_[head_];
    head_ = (head_ + 1) & (capacity_ - 1);
    --size_;
    return value;
  }
  void clear() noexcept { head_ = size_ = 0; }

 private:
  void grow() {
    const std::size_t capacity = capacity_ == 0 ? 64 : capacity_ * 2;
    auto grown = std::make_unique_for_overwrite<T[]>(capacity);
    for (std::size_t i = 0; i < size_; ++i)
      grown[i] = storage_[(head_ + i) & (capacity_ - 1)];
    storage_ = std::move(grown);
    capacity_ = capacity;
    head_ = 0;
  }

  std::unique_ptr<T[]> storage_;
  std::size_t capacity_ = 0;
  std::size_t head_ = 0;
  std::size_t size_ = 0;
};

}  // namespace tern::loadgen
