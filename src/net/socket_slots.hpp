// SocketSlots: the socket table of one event loop (EpollLoop, UringLoop), which hands out the
// SocketIds of event_loop.hpp and recognizes stale ones. Private to net/.
//
// A SocketId is (slot << 32) | generation. A slot's generation names the socket in it; when that
// socket is closed or detached, the backend calls makeStale() and the generation moves on (never
// to 0, which is no socket), so that its id, and every tag the backend made with the old
// generation (epoll data, io_uring user_data), no longer matches. live(id) finds only a socket
// that is open or connecting and of the id's generation.
//
// Reuse: a slot goes back to the free list only when the backend calls release(), and claim()
// reuses freed slots first (last freed, first reused). The backend decides when a slot may be
// reused: epoll as soon as the socket is closed or handed over (an event fetched earlier in the
// turn carries the old generation and is dropped), io_uring only once the kernel has completed
// every operation of the slot (it may still read the buffer in flight until then), so a stale
// slot can stay out of the free list for a while.
//
// The backend's Slot type must have `int fd`, `std::uint32_t generation` (1 at first), a `state`
// of an enum with kFree, kOpen and kConnecting, `SocketId id` and `void* user`. Slots never move
// (std::deque), so a Slot& stays valid across claim().
//
// Threads: the loop's owner thread only. Not copyable.
#pragma once

#include <cstdint>
#include <deque>
#include <new>
#include <vector>

#include "tern/net/event_loop.hpp"

namespace tern::net {

// At most 2^24 slots per loop: the backends' tags, (kind << 56) | (slot << 32) | generation, keep
// the top byte for the kind.
inline constexpr std::uint32_t kSlotMask = (1u << 24) - 1;

constexpr std::uint32_t slotOf(SocketId id) noexcept {
  return static_cast<std::uint32_t>(id >> 32);
}
constexpr std::uint32_t generationOf(SocketId id) noexcept {
  return static_cast<std::uint32_t>(id);
}

template <class Slot>
class SocketSlots {
 public:
  using State = decltype(Slot::state);

  SocketSlots() = default;
  SocketSlots(const SocketSlots&) = delete;
  SocketSlots& operator=(const SocketSlots&) = delete;

  // REQUIRES: `index` was claimed before (the slot may be free or stale by now).
  Slot& operator[](std::uint32_t index) noexcept { return slots_[index]; }
  auto begin() noexcept { return slots_.begin(); }
  auto end() noexcept { return slots_.end(); }

  // The open or connecting socket `id` names; null for a stale or unknown id.
  Slot* live(SocketId id) noexcept {
    const std::uint32_t index = slotOf(id);
    if (index >= slots_.size()) return nullptr;
    Slot& s = slots_[index];
    const bool up = s.state == State::kOpen || s.state == State::kConnecting;
    return up && s.generation == generationOf(id) ? &s : nullptr;
  }
  const Slot* live(SocketId id) const noexcept { return const_cast<SocketSlots*>(this)->live(id); }
  // The user pointer of a live id; null for a stale one.
  void* user(SocketId id) const noexcept {
    const Slot* s = live(id);
    return s != nullptr ? s->user : nullptr;
  }

  // Puts the socket `fd` into a free slot (a new one when none is free: `setUpFresh(slot)` runs
  // once for it, before its first use) with `state`, and returns its id. Throws std::bad_alloc
  // beyond kSlotMask + 1 slots, or when out of memory.
  template <class SetUpFresh>
  SocketId claim(int fd, void* user, State state, SetUpFresh&& setUpFresh) {
    std::uint32_t index;
    if (!free_.empty()) {
      index = free_.back();
      free_.pop_back();
    } else {
      if (slots_.size() > kSlotMask) throw std::bad_alloc();
      index = static_cast<std::uint32_t>(slots_.size());
      setUpFresh(slots_.emplace_back());
    }
    Slot& s = slots_[index];
    s.fd = fd;
    s.user = user;
    s.state = state;
    s.id = (SocketId{index} << 32) | s.generation;
    return s.id;
  }

  // Moves the slot's generation on: its current id and tags are stale from now on. Never
  // allocates.
  static void makeStale(Slot& s) noexcept {
    if (++s.generation == 0) s.generation = 1;
  }

  // Frees slot `index` (state kFree, no descriptor, no user) for claim() to reuse; the backend
  // resets its own fields. REQUIRES: makeStale() was called since the slot was claimed, and
  // nothing will use the slot any more but tags of an old generation, which are dropped
  // (io_uring: no operation of the slot is left in the kernel).
  void release(std::uint32_t index) {
    Slot& s = slots_[index];
    s.state = State::kFree;
    s.fd = -1;
    s.user = nullptr;
    free_.push_back(index);
  }

 private:
  std::deque<Slot> slots_;           // stable addresses; indexes are SocketId slots
  std::vector<std::uint32_t> free_;  // released slots, reused last first
};

}  // namespace tern::net
