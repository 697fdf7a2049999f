// Acceptor: the threads that accept TCP connections and hand each one to a worker.
//
// Ownership: created and owned by the Broker. The listening descriptors are owned by the Acceptor
// from construction and closed by stop(). Threads: start() and stop() are called by the thread
// that owns the Acceptor; the dispatch callback runs on an acceptor thread and must be thread-safe
// (the broker's pushes the descriptor into a worker's lock-free inbox); accepted() and shed() are
// safe anywhere.
//
// Each acceptor thread runs an EventLoop (event_loop.hpp) with every listener in it: a multishot
// accept per listener with io_uring, accept4 until EAGAIN on readiness with epoll (the kernel
// spreads connections over the threads). Out of descriptors (EMFILE/ENFILE) the loop gives up a
// spare descriptor it keeps for this, accepts the waiting connection and closes it at once (the
// peer sees a clean close instead of hanging in the backlog), takes the spare back, and logs once
// per interval.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

#include "tern/net/connection_limiter.hpp"
#include "tern/net/event_loop.hpp"

namespace tern::net {

struct ListenSocket {
  int fd = -1;
  int kind = 0;  // opaque to the acceptor, passed back to dispatch (the broker's protocol tag)
};

class Acceptor {
 public:
  // Receives each accepted socket (non-blocking, TCP_NODELAY) with its listener's kind and the
  // peer's address; owns the descriptor from then on.
  using Dispatch = std::function<void(int fd, int kind, const PeerAddress& peer)>;

  // Takes ownership of the listening descriptors (non-blocking).
  Acceptor(std::vector<ListenSocket> listeners, Dispatch dispatch);
  ~Acceptor();
  Acceptor(const Acceptor&) = delete;
  Acceptor& operator=(const Acceptor&) = delete;

  // Starts `threads` acceptor threads on the I/O backend `io`. Throws std::runtime_error when an
  // event loop cannot be made (start-up).
  void start(unsigned threads, IoChoice io);
  // Stops accepting: wakes and joins the threads and closes the listening sockets. Idempotent.
  void stop();

  std::uint64_t accepted() const noexcept { return accepted_.load(std::memory_order_relaxed); }
  // Connections accepted only to be closed because the process was out of descriptors.
  std::uint64_t shed() const noexcept;

 private:
  class Thread;

  std::vector<ListenSocket> listeners_;
  Dispatch dispatch_;
  std::vector<std::unique_ptr<Thread>> threads_;
  std::atomic<std::uint64_t> accepted_{0};  // statistics only: relaxed
};

}  // namespace tern::net
