// net::EventLoop on both backends, connections in and out: listeners (and shedding when out of
// descriptors) and connect(). The fixture and its instantiation are shared with
// event_loop_test.cpp.
#include <gtest/gtest.h>
#include <sys/resource.h>

#include "tern/common/log.hpp"
#include "tern/net/event_loop.hpp"
#include "unit/net/event_loop_test_support.hpp"

namespace tern::net {
namespace {

using namespace tern::net::testing;

TEST(EventLoopChoice, ParsesAndNames) {
  EXPECT_EQ(parseIoChoice("auto"), IoChoice::kAuto);
  EXPECT_EQ(parseIoChoice("uring"), IoChoice::kUring);
  EXPECT_EQ(parseIoChoice("io_uring"), IoChoice::kUring);
  EXPECT_EQ(parseIoChoice("epoll"), IoChoice::kEpoll);
  EXPECT_EQ(parseIoChoice("poll"), std::nullopt);
  EXPECT_EQ(name(IoBackend::kUring), "io_uring");
  EXPECT_EQ(name(IoBackend::kEpoll), "epoll");
}

TEST_P(EventLoopBackends, ShedsConnectionsWhenOutOfDescriptors) {
  constexpr int kClients = 3;
  Hooks hooks;
  std::unique_ptr<EventLoop> loop = make(hooks);
  LoopbackListener listener;
  int accepted = 0;
  hooks.accept = [&](int, int fd, const sockaddr_storage&) {
    ++accepted;
    ::close(fd);
  };
  int clients[kClients];
  for (int& fd : clients)
    fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);  // before the limit: no fd needed later
  rlimit saved{};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &saved), 0);
  int highest = 0;
  for (int fd = 0; fd < 4096; ++fd) {
    if (::fcntl(fd, F_GETFD) >= 0) highest = fd;
  }
  // UBSan's vptr check needs a descriptor (a pipe) the first time it meets a dynamic type and
  // reports a false error without one: meet the loop's and the handler's types before the limit
  // (a blocking turn calls beforeBlock/afterBlock), and keep the log (fmt) quiet meanwhile.
  loop->runOnce(kMillis);
  loop->runOnce(kMillis);
  EXPECT_EQ(loop->shedConnections(), 0u);
  const common::LogLevel level = common::logLevel();
  common::setLogLevel(common::LogLevel::kOff);
  rlimit low = saved;
  low.rlim_cur = static_cast<rlim_t>(highest + 1);
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &low), 0);
  std::vector<int> fillers;  // the holes below the limit
  for (int fd; (fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC)) >= 0;)
    fillers.push_back(fd);
  // Added with the limit in force (io_uring reads it when the accept is submitted).
  loop->addListener(listener.fd, 0);
  const sockaddr_in address = listener.address();
  for (const int fd : clients)
    ASSERT_EQ(::connect(fd, reinterpret_cast<const sockaddr*>(&address), sizeof address), 0);
  const bool shed = runUntil(
      *loop, [&] { return loop->shedConnections() >= kClients; }, 10 * kSeconds);
  for (const int fd : fillers)
    ::close(fd);
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &saved), 0);
  common::setLogLevel(level);
  ASSERT_TRUE(shed) << "shed " << loop->shedConnections();
  EXPECT_EQ(accepted, 0);
  for (const int fd : clients) {
    EXPECT_NE(waitForEnd(fd, 5 * kSeconds), -1) << "the shed peer sees its connection end";
    ::close(fd);
  }
  // With descriptors again, connections are accepted (io_uring: the re-armed accept reads the
  // restored limit when it is submitted).
  const int later = connectClient(listener.port);
  EXPECT_TRUE(runUntil(
      *loop, [&] { return accepted == 1; }, 10 * kSeconds));
  EXPECT_EQ(loop->shedConnections(), static_cast<std::uint64_t>(kClients));
  ::close(later);
}

TEST_P(EventLoopBackends, ConnectsThenReceivesAndReportsRefusal) {
  Hooks hooks;
  std::unique_ptr<EventLoop> loop = make(hooks);
  LoopbackListener listener;
  Conn c;
  hooks.connected = [&](SocketId, void* user, int error) {
    static_cast<Conn*>(user)->error = error;
  };
  hooks.receive = [&](SocketId, void* user, std::span<const char> bytes) {
    static_cast<Conn*>(user)->in.append(bytes.data(), bytes.size());
  };
  const sockaddr_in address = listener.address();
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  c.id = loop->connect(fd, &c, reinterpret_cast<const sockaddr*>(&address), sizeof address);
  loop->output(c.id).append("early");  // flushed before the connection is up: sent once it is
  loop->flush(c.id);
  ASSERT_TRUE(runUntil(
      *loop, [&] { return c.error != -1; }, 10 * kSeconds));
  EXPECT_EQ(c.error, 0);
  int server = -1;
  const std::int64_t until = common::monotonicNanos() + scaled(10 * kSeconds);
  while (server < 0 && common::monotonicNanos() < until) {
    server = ::accept4(listener.fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    loop->runOnce(kMillis);
  }
  ASSERT_GE(server, 0);
  ASSERT_EQ(::send(server, "hi", 2, MSG_NOSIGNAL), 2);
  ASSERT_TRUE(runUntil(
      *loop, [&] { return c.in == "hi"; }, 10 * kSeconds));
  std::string got;
  const std::int64_t readUntil = common::monotonicNanos() + scaled(10 * kSeconds);
  while (got.size() < 5 && common::monotonicNanos() < readUntil) {
    loop->runOnce(kMillis);
    char chunk[16];
    const ssize_t n = ::read(server, chunk, sizeof chunk);
    if (n > 0) got.append(chunk, static_cast<std::size_t>(n));
  }
  EXPECT_EQ(got, "early");
  loop->close(c.id);
  ::close(server);

  // A port nobody listens on.
  const int probe = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in unused = address;
  unused.sin_port = 0;
  socklen_t length = sizeof unused;
  ::bind(probe, reinterpret_cast<sockaddr*>(&unused), sizeof unused);
  ::getsockname(probe, reinterpret_cast<sockaddr*>(&unused), &length);
  ::close(probe);
  Conn refused;
  const int fd2 = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  refused.id = loop->connect(fd2, &refused, reinterpret_cast<const sockaddr*>(&unused), length);
  ASSERT_TRUE(runUntil(
      *loop, [&] { return refused.error != -1; }, 10 * kSeconds));
  EXPECT_EQ(refused.error, ECONNREFUSED);
  loop->close(refused.id);
  loop->runOnce(0);
  EXPECT_EQ(hooks.staleCallbacks.load(), 0);
}

}  // namespace
}  // namespace tern::net
