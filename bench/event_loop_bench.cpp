// event_loop_bench: system calls, context switches and CPU per echoed 64-byte message through
// net::EventLoop, io_uring against the epoll baseline, in one binary on the same workload.
//
// Workload: N loopback TCP connections inside one process; a client loop (one thread) sends
// 64-byte messages, a server loop (another thread) echoes them. Two modes:
//   - ping-pong: each connection keeps one message in flight (closed loop, as fast as it goes);
//   - rate R: the client sends R messages per second spread over the connections (open loop),
//     the load of a broker at R publishes per second.
// Per configuration it reports, per echoed message (one request and its reply: two socket
// messages), the median and the spread ((max - min) / median) over the repetitions of, for the
// server loop (what a broker pays) and for both loops: system calls
// (their counters(); perf stat -e raw_syscalls:sys_enter agrees), voluntary + involuntary
// context switches and CPU time of the two loop threads (getrusage RUSAGE_THREAD).
// Asserts nothing about speed; it checks that every echo arrives whole.
//
//   build/release/bench/event_loop_bench [--seconds S] [--repeat R] [--connections N]
//                                        [--rates 20000,100000] [--only NAME]
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "tern/common/clock.hpp"
#include "tern/net/event_loop.hpp"
#include "tern/net/socket.hpp"

namespace {

using tern::common::monotonicNanos;
using namespace tern::net;

constexpr std::size_t kMessage = 64;

struct Config {
  std::string name;
  IoChoice io;
  UringTaskRun taskRun = UringTaskRun::kAuto;
  std::int64_t spinNanos = 0;
};

struct Usage {
  double cpuSeconds = 0;
  double switches = 0;
  static Usage now() {
    rusage u{};
    ::getrusage(RUSAGE_THREAD, &u);
    Usage r;
    r.cpuSeconds = static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
                   static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
    r.switches = static_cast<double>(u.ru_nvcsw + u.ru_nivcsw);
    return r;
  }
};

// What one loop thread measured over the measurement window.
struct Window {
  Usage usage;
  EventLoop::Counters counters;
};

enum Phase : int { kWarmUp, kMeasure, kStop };

class Echo final : public EventLoopHandler {
 public:
  EventLoop* loop = nullptr;
  void onAccept(int, int fd, const sockaddr_storage&) override { loop->add(fd, this); }
  void onReceive(SocketId id, void*, std::span<const char> bytes) override {
    loop->output(id).append({bytes.data(), bytes.size()});
    loop->flush(id);
  }
  void onInputEnd(SocketId id, void*, int) override { loop->close(id); }
};

class Driver final : public EventLoopHandler {
 public:
  EventLoop* loop = nullptr;
  std::vector<SocketId> ids;
  std::vector<std::size_t> pending;  // reply bytes each connection still expects
  std::uint64_t receivedBytes = 0;
  std::uint64_t echoed = 0;  // whole messages back
  std::uint64_t corrupt = 0;
  bool pingPong = true;

  void send(std::size_t k) {
    char message[kMessage];
    std::memset(message, static_cast<int>('a' + k % 26), sizeof message);
    loop->output(ids[k]).append({message, sizeof message});
    loop->flush(ids[k]);
    pending[k] += kMessage;
  }
  void onReceive(SocketId id, void* user, std::span<const char> bytes) override {
    const auto k = reinterpret_cast<std::uintptr_t>(user);
    for (const char c : bytes)
      corrupt += c != static_cast<char>('a' + k % 26);
    pending[k] -= std::min(pending[k], bytes.size());
    receivedBytes += bytes.size();
    echoed = receivedBytes / kMessage;
    if (pingPong && pending[k] == 0) send(k);
    (void)id;
  }
  void onInputEnd(SocketId id, void*, int) override { loop->close(id); }
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

struct Row {
  std::vector<double> rate;
  // Per echo: the server loop alone (what a broker pays), then both loops.
  std::vector<double> serverSyscalls, serverSwitches, serverCpu, syscalls, switches, cpu;
};

// One run of one configuration; false when the loop could not be made.
bool runOnce(const Config& config, unsigned connections, std::uint64_t rate, double seconds,
             Row& row) {
  Echo echo;
  Driver driver;
  EventLoopOptions options;
  options.io = config.io;
  options.uringTaskRun = config.taskRun;
  options.spinNanos = config.spinNanos;
  std::string why;
  std::unique_ptr<EventLoop> server = EventLoop::create(options, echo, &why);
  std::unique_ptr<EventLoop> client = EventLoop::create(options, driver, &why);
  if (server == nullptr || client == nullptr) {
    std::printf("%-28s unavailable: %s\n", config.name.c_str(), why.c_str());
    return false;
  }
  echo.loop = server.get();
  driver.loop = client.get();
  driver.pingPong = rate == 0;
  const ListenResult listener = listenTcp("127.0.0.1", 0, 1024);
  if (listener.fd < 0) {
    std::printf("listen: %s\n", listener.error.c_str());
    std::exit(2);
  }
  server->addListener(listener.fd, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = htons(listener.port);
  driver.pending.assign(connections, 0);
  for (unsigned k = 0; k < connections; ++k) {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) {
      std::perror("connect");
      std::exit(2);
    }
    setNonBlocking(fd);
    setNoDelay(fd);
    driver.ids.push_back(client->add(fd, reinterpret_cast<void*>(std::uintptr_t{k})));
  }

  std::atomic<int> phase{kWarmUp};
  Window serverWindow;
  Window clientWindow;
  std::uint64_t echoedAtStart = 0;
  std::uint64_t echoedAtEnd = 0;
  const auto measure = [&](EventLoop& loop, Window& window, auto&& turn, auto&& edge) {
    int seen = kWarmUp;
    while (seen != kStop) {
      turn();
      const int now = phase.load(std::memory_order_acquire);
      if (now == seen) continue;
      if (now == kMeasure || seen == kWarmUp) {
        window.usage = Usage::now();
        window.counters = loop.counters();
        edge(true);
      }
      if (now == kStop) {
        const Usage u = Usage::now();
        const EventLoop::Counters c = loop.counters();
        window.usage.cpuSeconds = u.cpuSeconds - window.usage.cpuSeconds;
        window.usage.switches = u.switches - window.usage.switches;
        window.counters.syscalls = c.syscalls - window.counters.syscalls;
        window.counters.wakeWrites = c.wakeWrites - window.counters.wakeWrites;
        edge(false);
      }
      seen = now;
    }
  };
  std::thread serverThread([&] {
    measure(
        *server, serverWindow, [&] { server->runOnce(-1); }, [](bool) {});
  });
  std::thread clientThread([&] {
    const std::int64_t start = monotonicNanos();
    std::uint64_t sent = 0;
    std::size_t next = 0;
    if (rate == 0) {
      for (unsigned k = 0; k < connections; ++k)
        driver.send(k);
    }
    const auto turn = [&] {
      if (rate == 0) {
        client->runOnce(-1);
        return;
      }
      // Open loop: what is due by now, round robin; then wait until the next one is due.
      const std::int64_t now = monotonicNanos();
      const auto due = static_cast<std::uint64_t>(static_cast<double>(now - start) * 1e-9 *
                                                  static_cast<double>(rate));
      for (; sent < due; ++sent, next = (next + 1) % connections)
        driver.send(next);
      const std::int64_t nextAt =
          start + static_cast<std::int64_t>(static_cast<double>(sent + 1) * 1e9 /
                                            static_cast<double>(rate));
      client->runOnce(std::max<std::int64_t>(0, nextAt - monotonicNanos()));
    };
    measure(*client, clientWindow, turn,
            [&](bool starting) { (starting ? echoedAtStart : echoedAtEnd) = driver.echoed; });
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  phase.store(kMeasure, std::memory_order_release);
  server->wake();
  client->wake();
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  phase.store(kStop, std::memory_order_release);
  server->wake();
  client->wake();
  serverThread.join();
  clientThread.join();
  ::close(listener.fd);
  if (driver.corrupt != 0) {
    std::printf("%s: %llu corrupt bytes\n", config.name.c_str(),
                static_cast<unsigned long long>(driver.corrupt));
    std::exit(1);
  }
  const double echoed = static_cast<double>(echoedAtEnd - echoedAtStart);
  const auto calls = [](const Window& w) {
    return static_cast<double>(w.counters.syscalls + w.counters.wakeWrites);
  };
  if (std::getenv("TERN_BENCH_VERBOSE") != nullptr) {
    std::fprintf(stderr, "  run: %.0f echoes/s, server %.0f + client %.0f system calls\n",
                 echoed / seconds, calls(serverWindow), calls(clientWindow));
  }
  row.rate.push_back(echoed / seconds);
  row.serverSyscalls.push_back(calls(serverWindow) / echoed);
  row.serverSwitches.push_back(serverWindow.usage.switches / echoed);
  row.serverCpu.push_back(serverWindow.usage.cpuSeconds * 1e6 / echoed);
  row.syscalls.push_back((calls(serverWindow) + calls(clientWindow)) / echoed);
  row.switches.push_back((serverWindow.usage.switches + clientWindow.usage.switches) / echoed);
  row.cpu.push_back((serverWindow.usage.cpuSeconds + clientWindow.usage.cpuSeconds) * 1e6 / echoed);
  return true;
}

// "median (spread)", the spread being (max - min) / median.
std::string cell(const std::vector<double>& v, const char* format) {
  const auto [lo, hi] = std::minmax_element(v.begin(), v.end());
  const double m = median(v);
  char value[32];
  std::snprintf(value, sizeof value, format, m);
  char out[64];
  std::snprintf(out, sizeof out, "%s (%.0f%%)", value, m > 0 ? (*hi - *lo) * 100 / m : 0.0);
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  double seconds = 3;
  int repeat = 3;
  unsigned connections = 100;
  std::vector<std::uint64_t> rates = {0, 20000, 100000};
  std::string only;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    const char* value = argv[i + 1];
    if (flag == "--seconds") {
      seconds = std::atof(value);
    } else if (flag == "--repeat") {
      repeat = std::atoi(value);
    } else if (flag == "--connections") {
      connections = static_cast<unsigned>(std::atoi(value));
    } else if (flag == "--rates") {
      rates.clear();
      for (const char* p = value; *p != '\0';) {
        rates.push_back(std::strtoull(p, const_cast<char**>(&p), 10));
        if (*p == ',') ++p;
      }
    } else if (flag == "--only") {
      only = value;
    } else {
      std::fprintf(stderr, "unknown flag %s\n", flag.c_str());
      return 2;
    }
  }
  const std::vector<Config> configs = {
      {"epoll (baseline)", IoChoice::kEpoll},
      {"io_uring interrupt", IoChoice::kUring, UringTaskRun::kInterrupt},
      {"io_uring coop (default)", IoChoice::kUring, UringTaskRun::kCooperative},
      {"io_uring defer_taskrun", IoChoice::kUring, UringTaskRun::kDeferred},
      {"io_uring coop spin 20us", IoChoice::kUring, UringTaskRun::kCooperative, 20'000},
  };
  std::printf(
      "%u connections, %zu-byte messages, %.1f s x %d; per echo (request + reply), "
      "median [min..max]\n",
      connections, kMessage, seconds, repeat);
  for (const std::uint64_t rate : rates) {
    std::printf("\n%s\n", rate == 0
                              ? "ping-pong (one message in flight per connection)"
                              : ("open loop at " + std::to_string(rate) + " echoes/s").c_str());
    std::printf("%-26s %-14s | server: %-13s %-13s %-13s | both: %-13s %-13s %-13s\n", "backend",
                "echoes/s", "syscalls", "ctx sw", "CPU us", "syscalls", "ctx sw", "CPU us");
    // Repetitions interleave the configurations, so that a noisy moment of the machine
    // spreads over all of them instead of skewing one.
    std::vector<Row> rows(configs.size());
    std::vector<bool> usable(configs.size(), true);
    for (int r = 0; r < repeat; ++r) {
      for (std::size_t c = 0; c < configs.size(); ++c) {
        if (!only.empty() && configs[c].name.find(only) == std::string::npos) usable[c] = false;
        if (usable[c]) usable[c] = runOnce(configs[c], connections, rate, seconds, rows[c]);
      }
    }
    for (std::size_t c = 0; c < configs.size(); ++c) {
      if (!usable[c]) continue;
      const Config& config = configs[c];
      const Row& row = rows[c];
      std::printf("%-26s %-14s |         %-13s %-13s %-13s |       %-13s %-13s %-13s\n",
                  config.name.c_str(), cell(row.rate, "%.0f").c_str(),
                  cell(row.serverSyscalls, "%.3f").c_str(),
                  cell(row.serverSwitches, "%.3f").c_str(), cell(row.serverCpu, "%.2f").c_str(),
                  cell(row.syscalls, "%.3f").c_str(), cell(row.switches, "%.3f").c_str(),
                  cell(row.cpu, "%.2f").c_str());
      std::fflush(stdout);
    }
  }
  return 0;
}
