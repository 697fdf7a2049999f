// retained_cursor_bench: what slicing costs. For each store shape: one RetainedCursor::resume(256)
// (median, p99 and worst of the fastest of 5 walks; the first slice of a '#' walk takes the root's
// snapshot), a complete '#' walk in slices of 256 (a quiescent state between slices) and in one
// unbounded resume, against the baseline forEachMatch("#") on the same store (each the best of 5),
// and the cursor's peak memoryBytes(). Prints a table; asserts nothing about speed.
//   build/release/bench/retained_cursor_bench
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "tern/common/message.hpp"
#include "tern/routing/retained_cursor.hpp"
#include "tern/routing/retained_store.hpp"
#include "tern/sync/qsbr.hpp"

int main() {
  using namespace tern;
  using namespace tern::routing;
  using common::Message;
  using Clock = std::chrono::steady_clock;
  auto ns = [](Clock::duration d) {
    return static_cast<double>(std::chrono::duration_cast<std::chrono::nanoseconds>(d).count());
  };
  struct Shape {
    const char* name;
    std::vector<std::string> topics;
  };
  std::vector<Shape> shapes;
  for (const std::size_t n : {10'000, 100'000}) {
    Shape s{n == 10'000 ? "10k first-level topics" : "100k first-level topics", {}};
    for (std::size_t i = 0; i < n; ++i)
      s.topics.push_back("t" + std::to_string(i));
    shapes.push_back(std::move(s));
  }
  {
    Shape s{"deep tree: 8 levels x fan-out 4 (87k nodes, a message on each)", {}};
    std::vector<std::string> level{""};
    for (int d = 0; d < 8; ++d) {
      std::vector<std::string> next;
      for (const std::string& p : level)
        for (int k = 0; k < 4; ++k)
          next.push_back(p.empty() ? "l" + std::to_string(k) : p + "/l" + std::to_string(k));
      s.topics.insert(s.topics.end(), next.begin(), next.end());
      level.swap(next);
    }
    shapes.push_back(std::move(s));
  }
  {
    Shape s{"deep chain: 2000 levels, a message on each", {}};
    std::string t = "c";
    for (int d = 0; d < 2000; ++d) {
      s.topics.push_back(t);
      t += "/c";
    }
    shapes.push_back(std::move(s));
  }
  for (const Shape& shape : shapes) {
    sync::QsbrDomain domain;
    RetainedStore store(domain);
    sync::QsbrDomain::Reader reader(domain);
    for (const std::string& t : shape.topics)
      store.set(Message::make(t, "{\"t\":21.5,\"u\":\"C\"}", true));
    std::size_t sink = 0;
    auto take = [&](const Message& m) {
      sink += m.topic().size();
      return true;
    };
    auto best = [](auto run) {
      double b = 1e300;
      for (int rep = 0; rep < 5; ++rep)
        b = std::min(b, run());
      return b;
    };
    const double forEachNs = best([&] {
      const auto t0 = Clock::now();
      store.forEachMatch("#", [&](const Message& m) { sink += m.topic().size(); });
      return ns(Clock::now() - t0);
    });
    const double unboundedNs = best([&] {
      const auto t0 = Clock::now();
      RetainedCursor cursor("#");
      cursor.resume(store, SIZE_MAX, take);
      return ns(Clock::now() - t0);
    });
    std::vector<double> slices;  // of the fastest complete walk
    std::size_t peak = 0;
    std::size_t maxUnits = 0;
    double bestWalk = 1e300;
    const double slicedNs = best([&] {
      std::vector<double> these;
      const auto t0 = Clock::now();
      RetainedCursor cursor("#");
      for (bool complete = false; !complete;) {
        const auto s0 = Clock::now();
        complete = cursor.resume(store, 256, take);
        these.push_back(ns(Clock::now() - s0));
        peak = std::max(peak, cursor.memoryBytes());
        maxUnits = std::max(maxUnits, cursor.lastSlice().units);
        reader.quiescent();
      }
      const double total = ns(Clock::now() - t0);
      if (total < bestWalk) {
        bestWalk = total;
        slices.swap(these);
      }
      return total;
    });
    std::vector<double> sorted = slices;
    std::sort(sorted.begin(), sorted.end());
    std::printf(
        "%s (%zu topics)\n"
        "  forEachMatch(#)                 %10.3f ms\n"
        "  cursor, one unbounded resume    %10.3f ms\n"
        "  cursor, slices of 256           %10.3f ms in %zu slices\n"
        "  one resume(256): median %.1f us, p99 %.1f us, worst %.1f us (first %.1f us)\n"
        "  most units in a slice %zu, peak memoryBytes %zu\n",
        shape.name, shape.topics.size(), forEachNs / 1e6, unboundedNs / 1e6, slicedNs / 1e6,
        slices.size(), sorted[sorted.size() / 2] / 1e3, sorted[sorted.size() * 99 / 100] / 1e3,
        sorted.back() / 1e3, slices.front() / 1e3, maxUnits, peak);
    if (sink == 0) return 1;  // the walks saw nothing: the store was not built
  }
  return 0;
}
