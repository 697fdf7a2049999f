// Crash recovery: a child process writes retained records in sync mode and reports every
// acknowledged one through a pipe; the parent SIGKILLs it mid-stream, reopens the store and checks
// that every record the child saw acknowledged is there.
//
// The child is this test binary again (fork, then exec of /proc/self/exe running only
// PersistStoreCrashChild.DISABLED_WriteUntilKilled), so that it starts with a fresh RocksDB
// environment: a fork without exec would inherit a RocksDB thread pool whose threads do not exist
// in the child.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <set>
#include <string>
#include <vector>

#include "unit/persist/store_test_support.hpp"

namespace tern::persist {
namespace {

using testing::TempDir;
using testing::Wakeups;

constexpr const char* kDirEnv = "TERN_PERSIST_CRASH_DIR";
constexpr const char* kFdEnv = "TERN_PERSIST_CRASH_FD";

std::string topicOf(std::uint64_t i) {
  return "crash/" + std::to_string(i);
}
std::string payloadOf(std::uint64_t i) {
  return "payload-" + std::to_string(i * 7919);
}

// Runs only in the child (the parent passes --gtest_also_run_disabled_tests): writes until
// killed, up to 16 requests in flight, each acknowledged index written to the pipe as 8 bytes
// once its completion arrived.
TEST(PersistStoreCrashChild, DISABLED_WriteUntilKilled) {
  const char* dir = std::getenv(kDirEnv);
  const char* fdText = std::getenv(kFdEnv);
  if (dir == nullptr || fdText == nullptr) GTEST_SKIP() << "run by PersistStoreCrash only";
  const int fd = std::atoi(fdText);
  Wakeups w;  // outlives the store, whose thread calls it
  Store::OpenResult opened = Store::open(dir, {});
  ASSERT_TRUE(opened.store) << opened.error;
  Store& store = *opened.store;
  store.setWaker(0, w.waker());
  store.start();
  constexpr std::uint64_t kLimit = 1'000'000;
  constexpr std::uint64_t kWindow = 16;
  std::uint64_t next = 0;
  std::uint64_t inFlight = 0;
  Completion buf[64];
  while (next < kLimit) {
    while (inFlight < kWindow) {
      WriteRequest r({0, next});
      r.put(RetainedRecord{topicOf(next), payloadOf(next), 1, "", 0});
      if (!store.tryPush(std::move(r))) break;
      ++next;
      ++inFlight;
    }
    const std::uint64_t seen = w.count();
    const std::size_t n = store.popCompletions(0, buf, 64);
    for (std::size_t i = 0; i < n; ++i) {
      if (buf[i].status != WriteStatus::kOk) ::_exit(3);
      if (::write(fd, &buf[i].cookie, sizeof buf[i].cookie) != sizeof buf[i].cookie) ::_exit(4);
    }
    inFlight -= n;
    if (n == 0) w.waitPast(seen, testing::deadline(1));
  }
  ::_exit(0);
}

TEST(PersistStoreCrash, EveryAcknowledgedRecordSurvivesSigkill) {
  TempDir tmp;
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  // Everything the child needs is built before fork: between fork and exec only async-signal-safe
  // calls (other threads of this process may hold the allocator's locks).
  std::vector<std::string> env;
  for (char** e = environ; *e != nullptr; ++e)
    env.emplace_back(*e);
  env.push_back(std::string(kDirEnv) + "=" + tmp.store());
  env.push_back(std::string(kFdEnv) + "=" + std::to_string(fds[1]));
  std::vector<char*> envp;
  for (std::string& e : env)
    envp.push_back(e.data());
  envp.push_back(nullptr);
  const char* argv[] = {"unit_tests", "--gtest_filter=PersistStoreCrashChild.*",
                        "--gtest_also_run_disabled_tests", nullptr};
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    ::close(fds[0]);
    ::execve("/proc/self/exe", const_cast<char* const*>(argv), envp.data());
    ::_exit(127);
  }
  ::close(fds[1]);

  // Read acknowledgements until 300 arrived (the child is then well into its stream), kill it
  // without warning, then read what it had acknowledged before dying (still in the pipe).
  constexpr std::size_t kKillAfter = 300;
  std::set<std::uint64_t> acked;
  auto readSome = [&](int timeoutMs) {
    pollfd p{fds[0], POLLIN, 0};
    if (::poll(&p, 1, timeoutMs) <= 0) return false;
    std::uint64_t buf[128];
    const ssize_t n = ::read(fds[0], buf, sizeof buf);
    if (n <= 0) return false;
    EXPECT_EQ(n % 8, 0);
    for (ssize_t i = 0; i < n / 8; ++i)
      acked.insert(buf[i]);
    return true;
  };
  const auto until = testing::deadline(120);
  while (acked.size() < kKillAfter && std::chrono::steady_clock::now() < until) {
    if (!readSome(1000)) {
      int status = 0;
      if (::waitpid(child, &status, WNOHANG) == child) {
        ADD_FAILURE() << "the child ended early with status " << status;
        break;
      }
    }
  }
  ::kill(child, SIGKILL);
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  while (readSome(0)) {
  }
  ::close(fds[0]);
  ASSERT_GE(acked.size(), kKillAfter) << "the child did not get far enough";
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << "killed mid-stream";

  Store::OpenResult reopened = Store::open(tmp.store(), {});
  ASSERT_TRUE(reopened.store) << reopened.error;
  std::set<std::uint64_t> found;
  const LoadStats stats = reopened.store->loadRetained([&](RetainedRecord&& r) {
    const std::uint64_t i = std::stoull(r.topic.substr(6));
    EXPECT_EQ(r.payload, payloadOf(i));
    found.insert(i);
  });
  ASSERT_TRUE(stats.ok()) << stats.error;
  std::size_t missing = 0;
  for (const std::uint64_t i : acked)
    missing += found.count(i) == 0 ? 1 : 0;
  EXPECT_EQ(missing, 0u) << "acknowledged records lost, of " << acked.size();
  EXPECT_GE(found.size(), acked.size());
}

}  // namespace
}  // namespace tern::persist
