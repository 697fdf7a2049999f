// ByteBuffer: a growable byte queue for one socket's input or output.
//
// Bytes are appended at the back and consumed from the front; the live region is contiguous, so
// one read(2) fills it and one write(2) drains it. Memory is not zero-initialized, is compacted
// lazily (only when the back runs out of room), and can be given back when the buffer is idle
// (releaseIfIdle), so a burst does not pin megabytes to a quiet connection.
//
// Not thread-safe: owned by the connection, touched only by the thread that owns the connection.
#pragma once

#include <cstddef>
#include <cstring>
#include <memory>
#include <span>
#include <string_view>

namespace tern::net {

class ByteBuffer {
 public:
  ByteBuffer() = default;
  ByteBuffer(ByteBuffer&&) noexcept = default;
  ByteBuffer& operator=(ByteBuffer&&) noexcept = default;

  std::size_t size() const noexcept { return end_ - begin_; }
  bool empty() const noexcept { return end_ == begin_; }
  std::size_t capacity() const noexcept { return capacity_; }
  std::string_view view() const noexcept { return {data_.get() + begin_, size()}; }

  void append(std::string_view bytes) {
    if (bytes.empty()) return;
    std::memcpy(reserve(bytes.size()), bytes.data(), bytes.size());
    end_ += bytes.size();
  }
  // Appends the concatenation of two views with a single capacity check (frame prefix + body).
  void append(std::string_view a, std::string_view b) {
    char* out = reserve(a.size() + b.size());
    if (!a.empty()) std::memcpy(out, a.data(), a.size());
    if (!b.empty()) std::memcpy(out + a.size(), b.data(), b.size());
    end_ += a.size() + b.size();
  }

  // Returns at least `min` writable bytes at the back; call commit(n) with how many were written.
  std::span<char> writable(std::size_t min) {
    char* out = reserve(min);
    return {out, capacity_ - end_};
  }
  void commit(std::size_t n) noexcept { end_ += n; }

  // Drops `n` bytes from the front. REQUIRES: n <= size().
  void consume(std::size_t n) noexcept {
    begin_ += n;
    if (begin_ == end_) begin_ = end_ = 0;
  }

  // Frees the memory when the buffer is empty and holds more than `keep` bytes of capacity.
  void releaseIfIdle(std::size_t keep) noexcept {
    if (empty() && capacity_ > keep) {
      data_.reset();
      capacity_ = 0;
    }
  }

  // Moves all bytes of `other` to the back of this buffer; `other` is left empty.
  void takeFrom(ByteBuffer& other) {
    if (empty() && begin_ == 0) {
      std::swap(data_, other.data_);
      std::swap(capacity_, other.capacity_);
      std::swap(begin_, other.begin_);
      std::swap(end_, other.end_);
      other.begin_ = other.end_ = 0;
      return;
    }
    append(other.view());
    other.consume(other.size());
  }

 private:
  // Makes room for `n` more bytes at the back and returns where they go.
  char* reserve(std::size_t n) {
    if (capacity_ - end_ >= n) return data_.get() + end_;
    const std::size_t live = size();
    if (capacity_ - live >= n && begin_ >= live) {
      // Enough room once compacted, and the move is cheap relative to what was consumed.
      std::memcpy(data_.get(), data_.get() + begin_, live);
    } else {
      std::size_t fresh = capacity_ == 0 ? kInitial : capacity_ * 2;
      while (fresh < live + n)
        fresh *= 2;
      std::unique_ptr<char[]> grown(new char[fresh]);
      if (live != 0) std::memcpy(grown.get(), data_.get() + begin_, live);
      data_ = std::move(grown);
      capacity_ = fresh;
    }
    begin_ = 0;
    end_ = live;
    return data_.get() + end_;
  }

  // Small: most connections only ever hold a handshake reply or a few small frames (10k idle
  // connections are 10k buffers); busy ones double up to what they need.
  static constexpr std::size_t kInitial = 256;
  std::unique_ptr<char[]> data_;
  std::size_t capacity_ = 0;
  std::size_t begin_ = 0;
  std::size_t end_ = 0;
};

}  // namespace tern::net
