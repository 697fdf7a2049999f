// Helpers of the persist::Store tests: a temporary directory per test and a way to wait, with a
// bounded deadline, for a producer's completions.
#pragma once

#include <gtest/gtest.h>
#include <stdlib.h>

#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <filesystem>
#include <mutex>
#include <string>
#include <vector>

#include "tern/persist/store.hpp"

namespace tern::persist::testing {

// A fresh directory under $TMPDIR (or /tmp), removed with everything in it.
class TempDir {
 public:
  TempDir() {
    const char* base = std::getenv("TMPDIR");
    std::string pattern =
        std::string(base != nullptr && *base != 0 ? base : "/tmp") + "/tern-persist-XXXXXX";
    if (::mkdtemp(pattern.data()) == nullptr) ADD_FAILURE() << "mkdtemp failed";
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }
  std::string store() const { return path_ + "/store"; }

 private:
  std::string path_;
};

// A producer's waker: counts wake-ups and lets the producer thread sleep until the next one.
class Wakeups {
 public:
  std::function<void()> waker() {
    return [this] {
      {
        std::lock_guard lock(mutex_);
        ++count_;
      }
      cv_.notify_all();
    };
  }
  // Sleeps until the wake-up count differs from `seen` or `until` passes; returns the count.
  std::uint64_t waitPast(std::uint64_t seen, std::chrono::steady_clock::time_point until) {
    std::unique_lock lock(mutex_);
    cv_.wait_until(lock, until, [&] { return count_ != seen; });
    return count_;
  }
  std::uint64_t count() {
    std::lock_guard lock(mutex_);
    return count_;
  }

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  std::uint64_t count_ = 0;
};

// Deadline for waits: generous, since sanitizer builds are slow; no test asserts on timing.
inline std::chrono::steady_clock::time_point deadline(int seconds = 60) {
  return std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
}

// Pops producer `p`'s completions until `want` arrived in total or the deadline passed.
inline std::vector<Completion> awaitCompletions(Store& store, std::uint32_t p, Wakeups& wakeups,
                                                std::size_t want, int seconds = 60) {
  std::vector<Completion> got;
  const auto until = deadline(seconds);
  Completion buf[256];
  while (got.size() < want) {
    const std::uint64_t seen = wakeups.count();
    std::size_t n = 0;
    while ((n = store.popCompletions(p, buf, 256)) != 0)
      got.insert(got.end(), buf, buf + n);
    if (got.size() >= want) break;
    if (std::chrono::steady_clock::now() >= until) break;
    wakeups.waitPast(
        seen, std::min(until, std::chrono::steady_clock::now() + std::chrono::milliseconds(100)));
  }
  return got;
}

inline std::unique_ptr<Store> openOrFail(const std::string& dir, const StoreOptions& options = {}) {
  Store::OpenResult r = Store::open(dir, options);
  EXPECT_TRUE(r.store) << r.error;
  return std::move(r.store);
}

}  // namespace tern::persist::testing
