// ByteQueue: a socket's pending output, contiguous so that one send() takes all of it.
//
// Appends go at the tail, sends consume from the head; the bytes are moved back to the front only
// when the tail runs out of room, and the storage doubles only when the bytes themselves do not
// fit. So a steady stream of frames costs no allocation once the queue has reached its working
// size. Owned by one session on one thread. Not thread-safe.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <memory>
#include <string_view>

namespace tern::loadgen {

class ByteQueue {
 public:
  std::size_t size() const noexcept { return tail_ - head_; }
  bool empty() const noexcept { return tail_ == head_; }
  const char* data() const noexcept { return storage_.get() + head_; }

  // Room for `bytes` more at the tail; write them, then commit(bytes). Allocates only on growth.
  char* reserve(std::size_t bytes) {
    if (capacity_ - tail_ < bytes) makeRoom(bytes);
    return storage_.get() + tail_;
  }
  void commit(std::size_t bytes) noexcept { tail_ += bytes; }

  void append(std::string_view text) {
    std::memcpy(reserve(text.size()), text.data(), text.size());
    commit(text.size());
  }

  // Drops `bytes` from the head (they were sent).
  void consume(std::size_t bytes) noexcept {
    head_ += bytes;
    if (head_ == tail_) head_ = tail_ = 0;
  }

  void clear() noexcept { head_ = tail_ = 0; }

 private:
  void makeRoom(std::size_t bytes) {
    const std::size_t used = size();
    if (used + bytes <= capacity_ && head_ >= capacity_ / 2) {
      // Half the buffer is already-sent bytes: sliding is cheaper than growing.
      std::memmove(storage_.get(), storage_.get() + head_, used);
    } else {
      std::size_t capacity = std::max<std::size_t>(capacity_ * 2, 1024);
      while (capacity < used + bytes)
        capacity *= 2;
      auto grown = std::make_unique_for_overwrite<char[]>(capacity);
      if (used != 0) std::memcpy(grown.get(), storage_.get() + head_, used);
      storage_ = std::move(grown);
      capacity_ = capacity;
    }
    head_ = 0;
    tail_ = used;
  }

  std::unique_ptr<char[]> storage_;
  std::size_t capacity_ = 0;
  std::size_t head_ = 0;
  std::size_t tail_ = 0;
};

}  // namespace tern::loadgen
