// ByteBuffer: a growable byte queue for one socket's input or output.
//
// Bytes are appended at the back and consumed from the front; the live region is contiguous, so
// one read(2) fills it and one write(2) drains it. Memory is not zero-initialized, is compacted
// lazily (only when the back runs out of room), and can be given back when the buffer is idle
// (releaseIfIdle), so a burst does not pin megabytes to a quiet connection.
//
// Bounds: growth doubles, but never past the growth limit (setGrowthLimit) unless the live bytes
// themselves need more, so the capacity of a buffer whose owner keeps it under N bytes stays
// under N (doubling alone would reach 2N). Every change of capacity is added to the MemoryAccount
// the buffer is charged to, if any (setAccount), so the owner knows what its buffers hold.
//
// Not thread-safe: owned by the connection, touched only by the thread that owns the connection.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <span>
#include <string_view>

namespace tern::net {

// Bytes held by the buffers (and other memory) charged to it. Owned by one thread (a worker), as
// are the buffers charged to it; not thread-safe.
struct MemoryAccount {
  std::int64_t bytes = 0;
};

class ByteBuffer {
 public:
  ByteBuffer() = default;
  ~ByteBuffer() { charge(-static_cast<std::int64_t>(capacity_)); }
  ByteBuffer(ByteBuffer&&) = delete;  // would move the charge too; buffers stay where they are
  ByteBuffer& operator=(ByteBuffer&&) = delete;

  // Charges this buffer's capacity (now and from now on) to `account` instead of the previous
  // one; null charges nothing. The account must outlive the buffer or the next setAccount.
  void setAccount(MemoryAccount* account) noexcept {
    charge(-static_cast<std::int64_t>(capacity_));
    account_ = account;
    charge(static_cast<std::int64_t>(capacity_));
  }
  // Growth by doubling stops at `limit` bytes of capacity (it still grows as far as the live
  // bytes need).
  void setGrowthLimit(std::size_t limit) noexcept { growthLimit_ = limit; }

  std::size_t size() const noexcept { return end_ - begin_; }
  bool empty() const noexcept { return end_ == begin_; }
  std::size_t capacity() const noexcept { return capacity_; }
  // How many bytes of capacity appending `n` bytes would add (0 when they fit): what a bound on
  // memory must judge, since capacity doubles.
  std::size_t growthFor(std::size_t n) const noexcept { return capacityFor(n) - capacity_; }
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
      charge(-static_cast<std::int64_t>(capacity_));
      data_.reset();
      capacity_ = 0;
    }
  }

  // Moves all bytes of `other` to the back of this buffer; `other` is left empty.
  void takeFrom(ByteBuffer& other) {
    if (empty()) {
      // Swap the memory itself; each buffer's account is charged for what it now holds.
      charge(-static_cast<std::int64_t>(capacity_));
      other.charge(-static_cast<std::int64_t>(other.capacity_));
      std::swap(data_, other.data_);
      std::swap(capacity_, other.capacity_);
      std::swap(begin_, other.begin_);
      std::swap(end_, other.end_);
      other.begin_ = other.end_ = 0;
      charge(static_cast<std::int64_t>(capacity_));
      other.charge(static_cast<std::int64_t>(other.capacity_));
      return;
    }
    append(other.view());
    other.consume(other.size());
  }

 private:
  void charge(std::int64_t delta) noexcept {
    if (account_ != nullptr) account_->bytes += delta;
  }

  // The capacity that appending `n` more bytes leaves the buffer with (its current capacity when
  // they fit, or compacting makes room for them).
  std::size_t capacityFor(std::size_t n) const noexcept {
    if (capacity_ - end_ >= n) return capacity_;
    const std::size_t live = size();
    const std::size_t needed = live + n;
    // Compact when that makes room and either the move is cheap relative to what was consumed or
    // growing would pass the growth limit.
    if (capacity_ >= needed && (begin_ >= live || capacity_ * 2 > growthLimit_)) return capacity_;
    std::size_t fresh = capacity_ == 0 ? kInitial : capacity_ * 2;
    while (fresh < needed)
      fresh *= 2;
    if (fresh > growthLimit_) fresh = growthLimit_ > needed ? growthLimit_ : needed;
    return fresh;
  }

  // Makes room for `n` more bytes at the back and returns where they go.
  char* reserve(std::size_t n) {
    if (capacity_ - end_ >= n) return data_.get() + end_;
    const std::size_t live = size();
    const std::size_t fresh = capacityFor(n);
    if (fresh == capacity_) {
      std::memmove(data_.get(), data_.get() + begin_, live);
    } else {
      std::unique_ptr<char[]> grown(new char[fresh]);
      if (live != 0) std::memcpy(grown.get(), data_.get() + begin_, live);
      data_ = std::move(grown);
      charge(static_cast<std::int64_t>(fresh) - static_cast<std::int64_t>(capacity_));
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
  std::size_t growthLimit_ = ~std::size_t{0};
  MemoryAccount* account_ = nullptr;
};

}  // namespace tern::net
