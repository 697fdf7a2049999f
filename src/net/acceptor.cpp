#include "tern/net/acceptor.hpp"

#include <unistd.h>

#include <stdexcept>
#include <string>

namespace tern::net {

// One acceptor thread and its event loop. The thread is the loop's owner; stop() from the
// Acceptor's owner sets `stopping_` and wakes the loop (both safe from any thread).
class Acceptor::Thread final : private EventLoopHandler {
 public:
  Thread(Acceptor& acceptor, IoChoice io) : acceptor_(acceptor) {
    EventLoopOptions options;
    options.io = io;
    // Accepting needs no receive buffers: the smallest ring will do.
    options.receiveBuffers = 8;
    options.receiveBufferBytes = 4096;
    options.ringEntries = 64;
    std::string why;
    loop_ = EventLoop::create(options, *this, &why);
    if (!loop_) throw std::runtime_error("acceptor: cannot start an event loop: " + why);
  }

  void start() {
    thread_ = std::thread([this] {
      for (const ListenSocket& l : acceptor_.listeners_)
        loop_->addListener(l.fd, l.kind);
      while (!stopping_.load(std::memory_order_acquire))
        loop_->runOnce(-1);
      for (const ListenSocket& l : acceptor_.listeners_)
        loop_->removeListener(l.fd);
      loop_->runOnce(0);
    });
  }

  void stop() {
    // Release: pairs with the acquire above; the wake makes a blocked runOnce() return.
    stopping_.store(true, std::memory_order_release);
    loop_->wake();
    if (thread_.joinable()) thread_.join();
  }

  std::uint64_t shed() const noexcept { return loop_->shedConnections(); }

 private:
  void onReceive(SocketId, void*, std::span<const char>) override {}
  void onInputEnd(SocketId, void*, int) override {}
  void onAccept(int tag, int fd, const sockaddr_storage& peer) override {
    acceptor_.accepted_.fetch_add(1, std::memory_order_relaxed);
    acceptor_.dispatch_(fd, tag, peerAddressOf(peer));
  }

  Acceptor& acceptor_;
  std::unique_ptr<EventLoop> loop_;
  std::thread thread_;
  std::atomic<bool> stopping_{false};
};

Acceptor::Acceptor(std::vector<ListenSocket> listeners, Dispatch dispatch)
    : listeners_(std::move(listeners)), dispatch_(std::move(dispatch)) {}

Acceptor::~Acceptor() {
  stop();
}

void Acceptor::start(unsigned threads, IoChoice io) {
  for (unsigned i = 0; i < threads; ++i)
    threads_.push_back(std::make_unique<Thread>(*this, io));
  for (auto& t : threads_)
    t->start();
}

void Acceptor::stop() {
  for (auto& t : threads_)
    t->stop();
  for (ListenSocket& l : listeners_) {
    if (l.fd >= 0) ::close(l.fd);
    l.fd = -1;
  }
}

std::uint64_t Acceptor::shed() const noexcept {
  std::uint64_t total = 0;
  for (const auto& t : threads_)
    total += t->shed();
  return total;
}

}  // namespace tern::net
