// Test support for event_loop_test.cpp: loopback sockets, a handler made of hooks, a thread that
// runs a loop and executes tasks on it, and a poll(2) driver for client sockets. Every wait has
// a deadline.
#pragma once

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <ostream>
#include <string>
#include <thread>
#include <vector>

#include "tern/common/clock.hpp"
#include "tern/net/event_loop.hpp"

namespace tern::net::testing {

inline constexpr std::int64_t kMillis = 1'000'000;
inline constexpr std::int64_t kSeconds = 1'000'000'000;

// Sanitizer builds run several times slower; deadlines (never expectations) scale with them.
inline std::int64_t scaled(std::int64_t nanos) {
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  return nanos * 4;
#else
  return nanos;
#endif
}

// The byte at `offset` of test stream `stream`: position-dependent, so that a lost, repeated or
// reordered chunk is caught by a byte-exact comparison.
inline char patternByte(std::uint64_t stream, std::uint64_t offset) {
  const std::uint64_t x = (offset + 1) * 0x9E3779B97F4A7C15ull + stream * 0xBF58476D1CE4E5B9ull;
  return static_cast<char>(x >> 56);
}
inline std::string pattern(std::uint64_t stream, std::size_t size, std::uint64_t from = 0) {
  std::string out(size, '\0');
  for (std::size_t i = 0; i < size; ++i)
    out[i] = patternByte(stream, from + i);
  return out;
}
// Offset of the first byte of `got` that differs from the stream at `from`, or -1.
inline std::int64_t firstMismatch(std::uint64_t stream, std::string_view got,
                                  std::uint64_t from = 0) {
  for (std::size_t i = 0; i < got.size(); ++i) {
    if (got[i] != patternByte(stream, from + i)) return static_cast<std::int64_t>(from + i);
  }
  return -1;
}

struct LoopbackListener {
  int fd = -1;
  std::uint16_t port = 0;
  LoopbackListener() {
    fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t length = sizeof a;
    if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(fd, 512) != 0 ||
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &length) != 0) {
      ADD_FAILURE() << "cannot listen on loopback: " << std::strerror(errno);
    }
    port = ntohs(a.sin_port);
  }
  ~LoopbackListener() {
    if (fd >= 0) ::close(fd);
  }
  LoopbackListener(const LoopbackListener&) = delete;
  LoopbackListener& operator=(const LoopbackListener&) = delete;
  sockaddr_in address() const {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(port);
    return a;
  }
};

// A connected client socket (non-blocking unless asked), or -1 with a test failure.
inline int connectClient(std::uint16_t port, bool nonBlocking = true) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(port);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ADD_FAILURE() << "connect: " << std::strerror(errno);
    ::close(fd);
    return -1;
  }
  const int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (nonBlocking) ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
  return fd;
}

// Reads what `fd` (non-blocking) has until `want` bytes are in `into`, EOF, an error or the
// deadline. Returns false unless `want` bytes arrived.
inline bool readAtLeast(int fd, std::string& into, std::size_t want, std::int64_t timeoutNanos) {
  const std::int64_t until = common::monotonicNanos() + scaled(timeoutNanos);
  char chunk[65536];
  while (into.size() < want) {
    const std::int64_t left = until - common::monotonicNanos();
    if (left <= 0) return false;
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left / kMillis) + 1) <= 0) continue;
    const ssize_t n = ::read(fd, chunk, sizeof chunk);
    if (n > 0) into.append(chunk, static_cast<std::size_t>(n));
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) return into.size() >= want;
  }
  return true;
}

// What the peer of `fd` did once its data is read: 0 for EOF, errno for an error, -1 when
// nothing happened before the deadline.
inline int waitForEnd(int fd, std::int64_t timeoutNanos) {
  const std::int64_t until = common::monotonicNanos() + scaled(timeoutNanos);
  char chunk[65536];
  for (;;) {
    const std::int64_t left = until - common::monotonicNanos();
    if (left <= 0) return -1;
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left / kMillis) + 1) <= 0) continue;
    const ssize_t n = ::read(fd, chunk, sizeof chunk);
    if (n == 0) return 0;
    if (n < 0 && errno != EAGAIN && errno != EINTR) return errno;
  }
}

// Drives client sockets with poll(2): writes each flow's `out`, reads until `expect` bytes are
// in `in`. Returns false on the deadline.
struct Flow {
  int fd = -1;
  std::string out;
  std::size_t sent = 0;
  std::size_t expect = 0;
  std::string in;
};
inline bool drive(std::vector<Flow>& flows, std::int64_t timeoutNanos) {
  const std::int64_t until = common::monotonicNanos() + scaled(timeoutNanos);
  std::vector<pollfd> polls(flows.size());
  char chunk[65536];
  for (;;) {
    bool done = true;
    for (std::size_t i = 0; i < flows.size(); ++i) {
      Flow& f = flows[i];
      const bool writing = f.sent < f.out.size();
      const bool reading = f.in.size() < f.expect;
      done = done && !writing && !reading;
      polls[i] = {writing || reading ? f.fd : -1,
                  static_cast<short>((writing ? POLLOUT : 0) | (reading ? POLLIN : 0)), 0};
    }
    if (done) return true;
    const std::int64_t left = until - common::monotonicNanos();
    if (left <= 0) return false;
    if (::poll(polls.data(), polls.size(), static_cast<int>(left / kMillis) + 1) <= 0) continue;
    for (std::size_t i = 0; i < flows.size(); ++i) {
      Flow& f = flows[i];
      if ((polls[i].revents & POLLOUT) != 0) {
        const ssize_t n = ::send(f.fd, f.out.data() + f.sent, f.out.size() - f.sent, MSG_NOSIGNAL);
        if (n > 0) f.sent += static_cast<std::size_t>(n);
      }
      if ((polls[i].revents & (POLLIN | POLLHUP | POLLERR)) != 0) {
        const ssize_t n = ::read(f.fd, chunk, sizeof chunk);
        if (n > 0) f.in.append(chunk, static_cast<std::size_t>(n));
        if (n == 0) f.expect = f.in.size();  // EOF: stop waiting (the comparison will fail)
      }
    }
  }
}

// A handler made of hooks; unset hooks do nothing (an accepted descriptor is closed). Every
// callback that names a live socket checks that the loop agrees it is live with that user
// pointer: a stale completion reaching a new socket fails the test here.
struct Hooks : EventLoopHandler {
  EventLoop* loop = nullptr;
  std::function<void(SocketId, void*, std::span<const char>)> receive;
  std::function<void(SocketId, void*, int)> inputEnd;
  std::function<void(SocketId, void*)> drained;
  std::function<void(SocketId, void*, int, ByteBuffer&, ByteBuffer&)> detached;
  std::function<void(int, int, const sockaddr_storage&)> accept;
  std::function<void(SocketId, void*, int)> connected;
  std::function<void()> wake;
  std::atomic<int> staleCallbacks{0};

  void check(SocketId id, void* user) {
    if (loop != nullptr && loop->user(id) != user) staleCallbacks.fetch_add(1);
  }
  void onReceive(SocketId id, void* user, std::span<const char> bytes) override {
    check(id, user);
    if (receive) receive(id, user, bytes);
  }
  void onInputEnd(SocketId id, void* user, int error) override {
    check(id, user);
    if (inputEnd) inputEnd(id, user, error);
  }
  void onDrained(SocketId id, void* user) override {
    check(id, user);
    if (drained) drained(id, user);
  }
  void onDetached(SocketId id, void* user, int fd, ByteBuffer& unsent,
                  ByteBuffer& received) override {
    if (loop != nullptr && loop->user(id) != nullptr) staleCallbacks.fetch_add(1);
    if (detached) {
      detached(id, user, fd, unsent, received);
    } else {
      ::close(fd);
    }
  }
  void onAccept(int tag, int fd, const sockaddr_storage& peer) override {
    if (accept) {
      accept(tag, fd, peer);
    } else {
      ::close(fd);
    }
  }
  void onConnected(SocketId id, void* user, int error) override {
    check(id, user);
    if (connected) connected(id, user, error);
  }
  void onWake() override {
    if (wake) wake();
  }
};

// A test parameter: the backend, and for io_uring how its ring runs completion work (the default,
// kCooperative, and the two other modes, so that each is tested as well).
struct Backend {
  IoChoice io;
  UringTaskRun taskRun;
  const char* name;
  EventLoopOptions options(EventLoopOptions base = {}) const {
    base.io = io;
    base.uringTaskRun = taskRun;
    return base;
  }
};
inline void PrintTo(const Backend& b, std::ostream* out) {
  *out << b.name;
}
inline const auto kBackends =
    ::testing::Values(Backend{IoChoice::kUring, UringTaskRun::kAuto, "uring"},  // cooperative
                      Backend{IoChoice::kUring, UringTaskRun::kInterrupt, "uring_interrupt"},
                      Backend{IoChoice::kUring, UringTaskRun::kDeferred, "uring_defer_taskrun"},
                      Backend{IoChoice::kEpoll, UringTaskRun::kAuto, "epoll"});
inline std::string backendName(const ::testing::TestParamInfo<Backend>& info) {
  return info.param.name;
}

// Whether this kernel (or sandbox) gives the loop io_uring; `why` says why not.
inline bool uringAvailable(std::string& why) {
  Hooks probe;
  EventLoopOptions options;
  options.io = IoChoice::kUring;
  options.receiveBuffers = 8;
  return EventLoop::create(options, probe, &why) != nullptr;
}

// The fixture of EventLoop/EventLoopBackends (instantiated in event_loop_test.cpp over
// kBackends): skips io_uring where the kernel refuses it.
class EventLoopBackends : public ::testing::TestWithParam<Backend> {
 protected:
  void SetUp() override {
    std::string why;
    if (uring() && !uringAvailable(why)) GTEST_SKIP() << why;
  }
  std::unique_ptr<EventLoop> make(Hooks& hooks, EventLoopOptions base = {}) {
    const EventLoopOptions options = GetParam().options(base);
    std::string why;
    std::unique_ptr<EventLoop> loop = EventLoop::create(options, hooks, &why);
    if (loop == nullptr) {
      ADD_FAILURE() << why;
      std::abort();
    }
    EXPECT_EQ(loop->backend(), uring() ? IoBackend::kUring : IoBackend::kEpoll);
    hooks.loop = loop.get();
    return loop;
  }
  bool uring() const { return GetParam().io == IoChoice::kUring; }
};

// A server-side socket's state, named by the user pointer (touched on the loop thread only).
struct Conn {
  std::size_t index = 0;
  SocketId id = 0;
  std::string in;
  bool closed = false;
  bool ended = false;
  int error = -1;
};

// Runs a loop on a thread of its own (turns of at most 20 ms) and runs tasks on that thread.
class LoopThread {
 public:
  explicit LoopThread(EventLoop& loop) : loop_(loop), thread_([this] { run(); }) {}
  ~LoopThread() { stop(); }
  LoopThread(const LoopThread&) = delete;
  LoopThread& operator=(const LoopThread&) = delete;

  // Runs `task` on the loop thread after the current turn (wakes the loop). Any thread.
  void post(std::function<void()> task) {
    {
      std::lock_guard lock(mutex_);
      tasks_.push_back(std::move(task));
    }
    loop_.wake();
  }
  // post() and wait (at most 20 s) until it ran.
  void call(std::function<void()> task) {
    auto done = std::make_shared<std::atomic<bool>>(false);
    post([task = std::move(task), done] {
      task();
      done->store(true, std::memory_order_release);
    });
    const std::int64_t until = common::monotonicNanos() + scaled(20 * kSeconds);
    while (!done->load(std::memory_order_acquire) && common::monotonicNanos() < until)
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    ASSERT_TRUE(done->load(std::memory_order_acquire)) << "the loop thread did not run a task";
  }
  void stop() {
    if (!thread_.joinable()) return;
    stopping_.store(true, std::memory_order_release);
    loop_.wake();
    thread_.join();
  }

 private:
  void run() {
    while (!stopping_.load(std::memory_order_acquire)) {
      loop_.runOnce(20 * kMillis);
      std::vector<std::function<void()>> tasks;
      {
        std::lock_guard lock(mutex_);
        tasks.swap(tasks_);
      }
      for (auto& t : tasks)
        t();
    }
  }

  EventLoop& loop_;
  std::mutex mutex_;
  std::vector<std::function<void()>> tasks_;
  std::atomic<bool> stopping_{false};
  std::thread thread_;
};

// Turns `loop` (on the calling thread) until `done()` or the deadline; true when done.
template <typename Done>
bool runUntil(EventLoop& loop, Done done, std::int64_t timeoutNanos) {
  const std::int64_t until = common::monotonicNanos() + scaled(timeoutNanos);
  while (!done()) {
    if (common::monotonicNanos() >= until) return false;
    loop.runOnce(5 * kMillis);
  }
  return true;
}

}  // namespace tern::net::testing
