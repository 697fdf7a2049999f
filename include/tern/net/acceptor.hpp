// Acceptor: the threads that accept TCP connections and hand each one to a worker.
//
// Ownership: created and owned by the Broker. The listening descriptors are owned by the Acceptor
// from construction and closed by stop(). Threads: start() and stop() are called by the thread
// that owns the Acceptor; the dispatch callback runs on an acceptor thread and must be thread-safe
// (the broker's pushes the descriptor into a worker's lock-free inbox).
//
// Each acceptor thread waits on every listening socket with EPOLLEXCLUSIVE, so one connection wakes
// one thread, and accepts in a loop until EAGAIN (one wake-up per burst of connections). When the
// process runs out of descriptors (EMFILE/ENFILE) accepting pauses briefly instead of spinning; the
// pending connections wait in the kernel's backlog.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <thread>
#include <vector>

namespace tern::net {

struct ListenSocket {
  int fd = -1;
  int kind = 0;  // opaque to the acceptor, passed back to dispatch (the broker's protocol tag)
};

class Acceptor {
 public:
  using Dispatch = std::function<void(int fd, int kind)>;

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

 private:
  void run();

  std::vector<ListenSocket> listeners_;
  Dispatch dispatch_;
  int stopFd_ = -1;
  std::vector<std::thread> threads_;
  std::atomic<std::uint64_t> accepted_{0};  // statistics only: relaxed
};

}  // namespace tern::net
