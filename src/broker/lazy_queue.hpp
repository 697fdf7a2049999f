// LazyQueue<T>: a FIFO that allocates nothing until its first push.
//
// libstdc++'s std::deque allocates its map and a first block (about 600 bytes) when constructed;
// every MQTT session has an offline queue that is almost always empty, so at 10k sessions that
// was 6 MB for nothing. Not thread-safe: owned by the session's worker like the session itself.
#pragma once

#include <cstddef>
#include <deque>
#include <memory>
#include <utility>

namespace tern::broker {

template <typename T>
class LazyQueue {
 public:
  bool empty() const noexcept { return items_ == nullptr || items_->empty(); }
  std::size_t size() const noexcept { return items_ == nullptr ? 0 : items_->size(); }
  void push_back(T&& item) {
    if (items_ == nullptr) items_ = std::make_unique<std::deque<T>>();
    items_->push_back(std::move(item));
  }
  // REQUIRES: !empty().
  T& front() noexcept { return items_->front(); }
  // Calls f(back()). REQUIRES: not empty.
  template <typename F>
  void forBack(F&& f) {
    f(items_->back());
  }
  // Visits every item, front to back.
  template <typename F>
  void forEach(F&& f) {
    if (items_ == nullptr) return;
    for (T& item : *items_)
      f(item);
  }
  void pop_front() noexcept { items_->pop_front(); }
  // Frees the storage too.
  void clear() noexcept { items_.reset(); }

 private:
  std::unique_ptr<std::deque<T>> items_;
};

}  // namespace tern::broker
