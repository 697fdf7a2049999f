// Functional-test harness: real processes on loopback.
//
// - Process: spawns a binary with pipes on stdin/stdout/stderr, reads its output with timeouts, and
//   stops it by its PID (SIGTERM, then SIGKILL after a grace period). The destructor always reaps
//   what it started, so a failing test never leaves a broker behind.
// - BrokerProcess: starts build/<preset>/broker on a free port (--port 0; the port is read from the
//   start-up line) and stops it.
// - LineSocket: one TCP connection to 127.0.0.1 speaking frames (send a line, read a line with a
//   timeout, detect the peer closing).
// - LineClient: the three sockets of one session, with the handshake done.
// - runProcess(): runs a command to completion with given stdin, returns exit code and output.
//
// Every wait is bounded (default 5 s), so a broken broker fails a test instead of hanging it.
// Single-threaded use by one test; header-only so each functional test file just includes it.
#pragma once

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

extern char** environ;

namespace tern::test {

using Millis = std::chrono::milliseconds;

// The one deadline every wait in the functional tests derives from: 5 s, times the environment's
// TERN_TEST_TIMEOUT_SCALE (tests/CMakeLists.txt sets 3 for sanitizer builds, whose broker is
// several times slower). A deadline only bounds a wait; no test asserts how fast anything is.
inline double timeoutScale() {
  const char* scale = std::getenv("TERN_TEST_TIMEOUT_SCALE");
  const double value = scale != nullptr ? std::atof(scale) : 1.0;
  return value >= 1.0 ? value : 1.0;
}
inline Millis scaled(Millis base) {
  return Millis(static_cast<std::int64_t>(static_cast<double>(base.count()) * timeoutScale()));
}
inline const Millis kDefaultTimeout = scaled(Millis(5000));

// The broker under test: the build's own, or TERN_TEST_BROKER (to check that a regression test
// fails against an older build).
inline std::string brokerBinary() {
  const char* other = std::getenv("TERN_TEST_BROKER");
  return other != nullptr && *other != '\0' ? other : TERN_BROKER_BIN;
}

inline std::int64_t nowMillis() {
  return std::chrono::duration_cast<Millis>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// Reads bytes from `fd` into `buffer` until it holds a LF; returns the line without LF (and
// without a trailing CR), or nullopt on timeout or EOF (then `eof` says which).
inline std::optional<std::string> readLineFrom(int fd, std::string& buffer, Millis timeout,
                                               bool* eof = nullptr) {
  const std::int64_t deadline = nowMillis() + timeout.count();
  if (eof != nullptr) *eof = false;
  for (;;) {
    const std::size_t lf = buffer.find('\n');
    if (lf != std::string::npos) {
      std::string line = buffer.substr(0, lf);
      buffer.erase(0, lf + 1);
      if (!line.empty() && line.back() == '\r') line.pop_back();
      return line;
    }
    const std::int64_t left = deadline - nowMillis();
    if (left <= 0) return std::nullopt;
    pollfd p{fd, POLLIN, 0};
    const int r = ::poll(&p, 1, static_cast<int>(left));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return std::nullopt;
    char chunk[65536];
    const ssize_t n = ::read(fd, chunk, sizeof chunk);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n <= 0) {
      if (eof != nullptr) *eof = true;
      return std::nullopt;
    }
    buffer.append(chunk, static_cast<std::size_t>(n));
  }
}

// A port on 127.0.0.1 where nothing listens: a connection to it is refused. The port stays bound
// (not listening) while this object lives, so that the kernel cannot give it to a broker another
// test starts meanwhile (released at once, it was: a client of one test then reached the broker
// of another, and both failed).
class ClosedPort {
 public:
  ClosedPort() : fd_(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) {
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
    socklen_t length = sizeof addr;
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &length);
    port_ = ntohs(addr.sin_port);
  }
  ~ClosedPort() { ::close(fd_); }
  ClosedPort(const ClosedPort&) = delete;
  ClosedPort& operator=(const ClosedPort&) = delete;
  std::uint16_t port() const noexcept { return port_; }
  std::string text() const { return std::to_string(port_); }

 private:
  int fd_;
  std::uint16_t port_ = 0;
};

class Process {
 public:
  Process() = default;
  // Starts argv[0] with the given arguments. Throws std::runtime_error if it cannot be spawned.
  explicit Process(const std::vector<std::string>& argv) {
    int in[2], out[2];
    if (::pipe2(in, O_CLOEXEC) != 0 || ::pipe2(out, O_CLOEXEC) != 0) {
      throw std::runtime_error("pipe2 failed");
    }
    // stderr goes to an unlinked temporary file, not a pipe: a child that logs a lot must never
    // block on a full pipe that the test does not read.
    char errPath[] = "/tmp/tern-test-stderr-XXXXXX";
    const int errFd = ::mkostemp(errPath, O_CLOEXEC);
    if (errFd < 0) throw std::runtime_error("mkostemp failed");
    ::unlink(errPath);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, in[0], 0);
    posix_spawn_file_actions_adddup2(&actions, out[1], 1);
    posix_spawn_file_actions_adddup2(&actions, errFd, 2);
    std::vector<char*> args;
    for (const std::string& a : argv)
      args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    const int rc = ::posix_spawn(&pid_, args[0], &actions, nullptr, args.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    ::close(in[0]);
    ::close(out[1]);
    stdin_ = in[1];
    stdout_ = out[0];
    stderr_ = errFd;
    if (rc != 0) {
      pid_ = -1;
      throw std::runtime_error("cannot spawn " + argv[0] + ": " + std::strerror(rc));
    }
  }
  Process(Process&& o) noexcept { *this = std::move(o); }
  Process& operator=(Process&& o) noexcept {
    std::swap(pid_, o.pid_);
    std::swap(stdin_, o.stdin_);
    std::swap(stdout_, o.stdout_);
    std::swap(stderr_, o.stderr_);
    std::swap(outBuffer_, o.outBuffer_);
    std::swap(status_, o.status_);
    return *this;
  }
  ~Process() {
    if (pid_ > 0 && !status_) stop(SIGKILL, Millis(2000));
    for (int fd : {stdin_, stdout_, stderr_}) {
      if (fd >= 0) ::close(fd);
    }
  }

  pid_t pid() const { return pid_; }

  std::optional<std::string> readStdoutLine(Millis timeout = kDefaultTimeout) {
    return readLineFrom(stdout_, outBuffer_, timeout);
  }
  void writeStdin(std::string_view text) {
    while (!text.empty()) {
      const ssize_t n = ::write(stdin_, text.data(), text.size());
      if (n <= 0) return;
      text.remove_prefix(static_cast<std::size_t>(n));
    }
  }
  void closeStdin() {
    if (stdin_ >= 0) ::close(stdin_);
    stdin_ = -1;
  }
  // Everything the process wrote to stderr so far.
  std::string drainStderr() {
    std::string text;
    char chunk[4096];
    off_t offset = 0;
    for (;;) {
      const ssize_t n = ::pread(stderr_, chunk, sizeof chunk, offset);
      if (n <= 0) break;
      text.append(chunk, static_cast<std::size_t>(n));
      offset += n;
    }
    return text;
  }

  // Waits up to `timeout` for the process to exit; returns its wait status, or nullopt.
  std::optional<int> wait(Millis timeout = kDefaultTimeout) {
    if (status_) return status_;
    const std::int64_t deadline = nowMillis() + timeout.count();
    for (;;) {
      int status = 0;
      const pid_t r = ::waitpid(pid_, &status, WNOHANG);
      if (r == pid_) {
        status_ = status;
        return status_;
      }
      if (nowMillis() >= deadline) return std::nullopt;
      std::this_thread::sleep_for(Millis(5));
    }
  }
  // Sends `signal`, waits up to `timeout`, then SIGKILLs. Returns the wait status.
  int stop(int signal = SIGTERM, Millis timeout = kDefaultTimeout) {
    if (status_) return *status_;
    ::kill(pid_, signal);
    if (auto s = wait(timeout)) return *s;
    ::kill(pid_, SIGKILL);
    return wait(Millis(5000)).value_or(-1);
  }

 private:
  pid_t pid_ = -1;
  int stdin_ = -1;
  int stdout_ = -1;
  int stderr_ = -1;
  std::string outBuffer_;
  std::optional<int> status_;
};

inline int exitCodeOf(int status) {
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

class BrokerProcess {
 public:
  // Starts the broker on 127.0.0.1 with a free port; extra arguments are appended. `wrapper`, if
  // any, is a command line the broker runs under (e.g. prlimit with its options).
  explicit BrokerProcess(std::vector<std::string> extra = {},
                         std::vector<std::string> wrapper = {}) {
    std::vector<std::string> argv = wrapper;
    argv.insert(argv.end(),
                {brokerBinary(), "--port", "0", "--bind", "127.0.0.1", "--log-level", "warn"});
    // The I/O backend under test: TERN_TEST_IO (uring or epoll; tools/test runs the suite with
    // each), unless the test chooses.
    const char* io = std::getenv("TERN_TEST_IO");
    if (io != nullptr && *io != '\0' &&
        std::find(extra.begin(), extra.end(), "--io") == extra.end()) {
      argv.insert(argv.end(), {"--io", io});
    }
    // MQTT is off unless the test asks for it (e.g. {"--mqtt-port", "auto"}): two test brokers
    // must never compete for port 1883.
    if (std::find(extra.begin(), extra.end(), "--mqtt-port") == extra.end()) {
      argv.insert(argv.end(), {"--mqtt-port", "0"});
    }
    // The $SYS topics are off unless the test asks for them: the retained messages, LISTs and
    // message counts a test sees are then its own.
    if (std::find(extra.begin(), extra.end(), "--sys-interval") == extra.end()) {
      argv.insert(argv.end(), {"--sys-interval", "0"});
    }
    argv.insert(argv.end(), extra.begin(), extra.end());
    process_ = Process(argv);
    // The start-up line: "tern broker listening on 127.0.0.1:<port> (line protocol)".
    for (int i = 0; i < 4; ++i) {
      auto line = process_.readStdoutLine(scaled(Millis(10000)));
      if (!line) break;
      const std::string key = "listening on 127.0.0.1:";
      const std::size_t at = line->find(key);
      if (at == std::string::npos) continue;
      const std::size_t digits = at + key.size();
      const int port = std::stoi(line->substr(digits));
      if (line->find("(line protocol)") != std::string::npos) port_ = port;
      if (line->find("(mqtt)") != std::string::npos) mqttPort_ = port;
      if (port_ != 0 && (mqttPort_ != 0 || !expectsMqtt(extra))) break;
    }
    if (port_ == 0) {
      throw std::runtime_error("broker did not report its port; stderr: " + process_.drainStderr());
    }
  }
  BrokerProcess(const BrokerProcess&) = delete;
  BrokerProcess& operator=(const BrokerProcess&) = delete;
  // Stops the broker if the test did not, and fails the test when it did not exit cleanly: a
  // crash, or a sanitizer report (ASan/UBSan exit 1, TSan 66), shows up here.
  ~BrokerProcess() {
    if (stopped_) return;
    const int code = stop();
    if (code != 0) {
      ADD_FAILURE() << "broker exited with " << code << "; stderr:\n" << process_.drainStderr();
    }
  }
  std::uint16_t port() const { return static_cast<std::uint16_t>(port_); }
  std::uint16_t mqttPort() const { return static_cast<std::uint16_t>(mqttPort_); }
  pid_t pid() const { return process_.pid(); }
  Process& process() { return process_; }
  // SIGTERM and wait; returns the exit code (-1 if killed by a signal).
  int stop() {
    stopped_ = true;
    return exitCodeOf(process_.stop(SIGTERM, scaled(Millis(10000))));
  }

 private:
  static bool expectsMqtt(const std::vector<std::string>& extra) {
    for (std::size_t i = 0; i + 1 < extra.size(); ++i) {
      if (extra[i] == "--mqtt-port") return extra[i + 1] != "0" && extra[i + 1] != "off";
    }
    return false;
  }
  Process process_;
  int port_ = 0;
  int mqttPort_ = 0;
  bool stopped_ = false;
};

class LineSocket {
 public:
  // Connects to 127.0.0.1:port, from `source` (another loopback address, e.g. 127.0.0.2) if given.
  explicit LineSocket(std::uint16_t port, const char* source = nullptr) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (source != nullptr) {
      sockaddr_in from{};
      from.sin_family = AF_INET;
      ::inet_pton(AF_INET, source, &from.sin_addr);
      ::bind(fd_, reinterpret_cast<sockaddr*>(&from), sizeof from);
    }
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
      const std::string why = std::strerror(errno);
      ::close(fd_);
      fd_ = -1;
      throw std::runtime_error("connect to 127.0.0.1:" + std::to_string(port) + ": " + why);
    }
    const int one = 1;
    ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  }
  LineSocket(LineSocket&& o) noexcept : fd_(o.fd_), buffer_(std::move(o.buffer_)) { o.fd_ = -1; }
  LineSocket& operator=(LineSocket&& o) noexcept {
    std::swap(fd_, o.fd_);
    std::swap(buffer_, o.buffer_);
    return *this;
  }
  ~LineSocket() { close(); }

  int fd() const { return fd_; }
  void close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }
  // Sends raw bytes (no LF added). False if the connection is gone.
  bool sendRaw(std::string_view bytes) {
    while (!bytes.empty()) {
      const ssize_t n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return false;
      bytes.remove_prefix(static_cast<std::size_t>(n));
    }
    return true;
  }
  bool send(std::string_view line) { return sendRaw(std::string(line) + "\n"); }
  std::optional<std::string> readLine(Millis timeout = kDefaultTimeout) {
    return readLineFrom(fd_, buffer_, timeout, &eof_);
  }
  // Sends a request and returns its reply line ("<none>" on timeout/EOF, so EXPECT_EQ reads well).
  std::string request(std::string_view line, Millis timeout = kDefaultTimeout) {
    send(line);
    return readLine(timeout).value_or("<none>");
  }
  // True when the peer closes the connection within `timeout` (lines still pending are skipped).
  bool closedByPeer(Millis timeout = kDefaultTimeout) {
    const std::int64_t deadline = nowMillis() + timeout.count();
    while (nowMillis() < deadline) {
      auto line = readLine(Millis(deadline - nowMillis()));
      if (!line && eof_) return true;
      if (!line) return false;
    }
    return false;
  }
  // True when nothing arrives within `quiet` (and the connection is still open).
  bool silentFor(Millis quiet) {
    auto line = readLine(quiet);
    return !line && !eof_;
  }
  bool eof() const { return eof_; }

 private:
  int fd_ = -1;
  std::string buffer_;
  bool eof_ = false;
};

// One session's three sockets with the handshake done.
struct LineClient {
  LineSocket request;
  LineSocket request2;
  LineSocket push;
  std::string clientId;
  std::string token;

  // Connects with `id` (empty: broker-assigned). Throws if any handshake step fails.
  LineClient(std::uint16_t port, const std::string& id = "")
      : request(port), request2(port), push(port) {
    const std::string connack = request.request(id.empty() ? "CONNECT" : "CONNECT@" + id);
    if (connack.rfind("CONNACK@", 0) != 0) throw std::runtime_error("CONNECT: " + connack);
    const std::size_t at = connack.find('@', 8);
    clientId = connack.substr(8, at - 8);
    token = connack.substr(at + 1);
    const std::string r2 = request2.request("ATTACH@" + token + "@request");
    if (r2 != "ATTACHACK@request") throw std::runtime_error("ATTACH request: " + r2);
    const std::string r3 = push.request("ATTACH@" + token + "@push");
    if (r3 != "ATTACHACK@push") throw std::runtime_error("ATTACH push: " + r3);
  }
};

struct RunResult {
  int exitCode = -1;
  std::string out;
  std::string err;
};

// Runs argv to completion with `input` on stdin; kills it after `timeout`.
inline RunResult runProcess(const std::vector<std::string>& argv, std::string_view input = {},
                            Millis timeout = scaled(Millis(20000))) {
  Process p(argv);
  p.writeStdin(input);
  p.closeStdin();
  RunResult result;
  std::string line;
  while (auto l = p.readStdoutLine(timeout))
    result.out += *l + "\n";
  const auto status = p.wait(timeout);
  result.exitCode = status ? exitCodeOf(*status) : exitCodeOf(p.stop(SIGKILL));
  result.err = p.drainStderr();
  return result;
}

}  // namespace tern::test
