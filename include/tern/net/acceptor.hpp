// Acceptor: the threads that accept TCP connections and hand each one to a worker.
//
// Ownership: created and owned by the Broker. The listening descriptors are owned by the Acceptor
// from construction and closed by stop(). Threads: start() and stop() are called by the thread
// that owns the Acceptor; the dispatch callback runs on an acceptor thread and must be thread-safe
// (the broker's pushes the descriptor into a worker's lock-free inbox).
//
// Each acceptor thread waits on every listening socket with EPOLLEXCLUSIVE, so one connection wakes
// one thread, and accepts in a loop until EAGAIN (one wake-up per burst of connections). When the
// process runs out of descriptors (EMFILE/ENFILE), the acceptor gives up a spare descriptor it keeps
// for this, accepts the waiting connection and closes it at once (the peer sees a clean close
// instead of hanging in the backlog), takes the spare back, and logs once per interval.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <thread>
#include <vector>

#include "tern/common/log_limiter.hpp"
#include "tern/net/connection_limiter.hpp"

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

  // Takes ownership of the listening descriptors.
  Acceptor(std::vector<ListenSocket> listeners, Dispatch dispatch);
  ~Acceptor();
  Acceptor(const Acceptor&) = delete;
  Acceptor& operator=(const Acceptor&) = delete;

  // Starts `threads` acceptor threads. Throws std::system_error if epoll/eventfd cannot be made.
  void start(unsigned threads);
  // Stops accepting: wakes and joins the threads and closes the listening sockets. Idempotent.
  void stop();

  std::uint64_t accepted() const noexcept { return accepted_.load(std::memory_order_relaxed); }
  // Connections accepted only to be closed because the process was out of descriptors.
  std::uint64_t shed() const noexcept { return shed_.load(std::memory_order_relaxed); }

 private:
  void run();
  // Out of descriptors: frees the spare, accepts and closes one pending connection, retakes the
  // spare; false when there was no spare to free. Any acceptor thread (the spare is swapped
  // atomically).
  bool shedOne(int listenFd);

  std::vector<ListenSocket> listeners_;
  Dispatch dispatch_;
  int stopFd_ = -1;
  std::vector<std::thread> threads_;
  std::atomic<std::uint64_t> accepted_{0};  // statistics only: relaxed
  std::atomic<std::uint64_t> shed_{0};      // statistics only: relaxed
  // The spare descriptor (an open /dev/null) or -1 while a thread uses it; exchanged atomically
  // so that two acceptor threads never close it twice.
  std::atomic<int> spareFd_{-1};
  common::LogLimiter outOfDescriptors_;
};

}  // namespace tern::net
