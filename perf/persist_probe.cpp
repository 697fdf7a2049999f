// persist_probe: what durability costs on this machine's disk, in one run.
//   1. the baseline: fdatasync latency of a 4 KiB append to a file in the data directory (p50,
//      p99), the floor under every sync-mode commit;
//   2. persist::Store in sync mode with 1, 10 and 100 concurrent producers, each a closed loop
//      (submit one request, wait for its completion, repeat) like a publisher waiting for its
//      PUBACK: requests/s, submit-to-completion latency p50/p99, requests per batch, and the
//      ratios to the fdatasync baseline.
// No thresholds: it prints a table.
//   build/release/persist_probe [--dir DIR] [--seconds S] [--producers 1,10,100]
// DIR defaults to a fresh directory under /tmp (use a directory on the disk the broker's
// --data-dir will use); it is removed at the end.
#include <fcntl.h>
#include <fmt/format.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "tern/common/clock.hpp"
#include "tern/persist/store.hpp"

namespace {

using tern::common::monotonicNanos;
using namespace tern::persist;

double percentile(std::vector<std::int64_t>& v, double p) {
  if (v.empty()) return 0;
  const std::size_t i = std::min(v.size() - 1, static_cast<std::size_t>(p * (v.size() - 1) + 0.5));
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(i), v.end());
  return static_cast<double>(v[i]);
}

struct Fsync {
  double p50 = 0, p99 = 0;
  std::size_t samples = 0;
};

Fsync measureFdatasync(const std::string& dir, double seconds) {
  const std::string path = dir + "/fdatasync-probe";
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) {
    std::perror("persist_probe: open");
    std::exit(2);
  }
  std::string block(4096, 'x');
  std::vector<std::int64_t> samples;
  const std::int64_t end = monotonicNanos() + static_cast<std::int64_t>(seconds * 1e9);
  while (monotonicNanos() < end || samples.size() < 20) {
    if (::write(fd, block.data(), block.size()) != static_cast<ssize_t>(block.size())) break;
    const std::int64_t t0 = monotonicNanos();
    if (::fdatasync(fd) != 0) break;
    samples.push_back(monotonicNanos() - t0);
  }
  ::close(fd);
  ::unlink(path.c_str());
  Fsync f;
  f.samples = samples.size();
  f.p50 = percentile(samples, 0.50);
  f.p99 = percentile(samples, 0.99);
  return f;
}

struct Run {
  std::uint32_t producers = 0;
  double rate = 0, p50 = 0, p99 = 0, perBatch = 0, avgCommit = 0;
  std::uint64_t requests = 0, errors = 0;
};

Run measureStore(const std::string& dir, std::uint32_t producers, double seconds) {
  std::filesystem::remove_all(dir);
  StoreOptions options;
  options.producers = producers;
  Store::OpenResult opened = Store::open(dir, options);
  if (!opened.store) {
    fmt::print(stderr, "persist_probe: {}\n", opened.error);
    std::exit(2);
  }
  Store& store = *opened.store;
  struct Slot {
    std::mutex m;
    std::condition_variable cv;
    bool woken = false;
  };
  std::vector<std::unique_ptr<Slot>> slots;
  for (std::uint32_t p = 0; p < producers; ++p) {
    slots.push_back(std::make_unique<Slot>());
    Slot* s = slots.back().get();
    store.setWaker(p, [s] {
      {
        std::lock_guard lock(s->m);
        s->woken = true;
      }
      s->cv.notify_one();
    });
  }
  store.start();
  std::atomic<bool> stop{false};
  std::vector<std::vector<std::int64_t>> latencies(producers);
  std::vector<std::thread> threads;
  const std::string payload(64, 'p');
  for (std::uint32_t p = 0; p < producers; ++p) {
    threads.emplace_back([&, p] {
      Slot& slot = *slots[p];
      std::uint64_t seq = 0;
      while (!stop.load(std::memory_order_relaxed)) {
        WriteRequest r({p, seq});
        r.put(RetainedRecord{fmt::format("probe/{}/{}", p, seq % 1000), payload, 1, "", 0});
        const std::int64_t t0 = monotonicNanos();
        while (!store.tryPush(std::move(r)))
          std::this_thread::yield();
        Completion c;
        while (store.popCompletions(p, &c, 1) == 0) {
          std::unique_lock lock(slot.m);
          slot.cv.wait_for(lock, std::chrono::milliseconds(10), [&] { return slot.woken; });
          slot.woken = false;
        }
        latencies[p].push_back(monotonicNanos() - t0);
        ++seq;
      }
    });
  }
  const std::uint64_t batches0 = store.counters().batches.load();
  const std::int64_t begin = monotonicNanos();
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  stop = true;
  for (auto& t : threads)
    t.join();
  const double elapsed = static_cast<double>(monotonicNanos() - begin) / 1e9;
  std::vector<std::int64_t> all;
  for (auto& v : latencies)
    all.insert(all.end(), v.begin(), v.end());
  Run run;
  run.producers = producers;
  run.requests = all.size();
  run.rate = static_cast<double>(all.size()) / elapsed;
  run.p50 = percentile(all, 0.50);
  run.p99 = percentile(all, 0.99);
  const StoreCounters& c = store.counters();
  const std::uint64_t batches = c.batches.load() - batches0;
  run.perBatch = batches ? static_cast<double>(c.commits.load()) / static_cast<double>(batches) : 0;
  run.avgCommit = c.batches.load() ? static_cast<double>(c.totalCommitNanos.load()) /
                                         static_cast<double>(c.batches.load())
                                   : 0;
  run.errors = c.errors.load();
  store.close();
  return run;
}

}  // namespace

int main(int argc, char** argv) {
  std::string dir;
  double seconds = 3;
  std::vector<std::uint32_t> producers = {1, 10, 100};
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--dir" && i + 1 < argc) {
      dir = argv[++i];
    } else if (a == "--seconds" && i + 1 < argc) {
      seconds = std::atof(argv[++i]);
    } else if (a == "--producers" && i + 1 < argc) {
      producers.clear();
      std::string list = argv[++i];
      for (std::size_t pos = 0; pos <= list.size();) {
        const std::size_t comma = std::min(list.find(',', pos), list.size());
        producers.push_back(static_cast<std::uint32_t>(std::stoul(list.substr(pos, comma - pos))));
        pos = comma + 1;
      }
    } else {
      fmt::print(stderr, "usage: persist_probe [--dir DIR] [--seconds S] [--producers 1,10,100]\n");
      return 2;
    }
  }
  bool temporary = false;
  if (dir.empty()) {
    std::string pattern = "/tmp/tern-persist-probe-XXXXXX";
    if (::mkdtemp(pattern.data()) == nullptr) return 2;
    dir = pattern;
    temporary = true;
  }
  std::filesystem::create_directories(dir);
  const Fsync f = measureFdatasync(dir, seconds);
  fmt::print("data dir {}\n", dir);
  fmt::print("fdatasync (4 KiB append): p50 {:.1f} us, p99 {:.1f} us ({} samples)\n", f.p50 / 1e3,
             f.p99 / 1e3, f.samples);
  fmt::print("{:>9} {:>12} {:>10} {:>10} {:>10} {:>12} {:>12} {:>14} {:>7}\n", "producers",
             "requests/s", "p50 us", "p99 us", "req/batch", "commit us", "p50/fsync",
             "p99/fsync p50", "errors");
  double base = 0;
  for (const std::uint32_t p : producers) {
    const Run r = measureStore(dir + "/store", p, seconds);
    if (base == 0) base = r.rate;
    fmt::print(
        "{:>9} {:>12.0f} {:>10.1f} {:>10.1f} {:>10.1f} {:>12.1f} {:>12.2f} {:>14.2f} {:>7}\n",
        r.producers, r.rate, r.p50 / 1e3, r.p99 / 1e3, r.perBatch, r.avgCommit / 1e3,
        f.p50 > 0 ? r.p50 / f.p50 : 0, f.p50 > 0 ? r.p99 / f.p50 : 0, r.errors);
  }
  fmt::print(
      "throughput ratio to {} producer(s) is the group-commit gain; req/batch is requests "
      "per fdatasync\n",
      producers.empty() ? 0 : producers.front());
  if (temporary) std::filesystem::remove_all(dir);
  return 0;
}
