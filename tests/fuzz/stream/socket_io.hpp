// Loopback socket helpers shared by the executor and the liveness probe.
//
// Every call is bounded by a deadline, so a broker that stops reading or answering makes the
// fuzzer report it instead of hanging. Sockets are non-blocking after connectLoopback(); SIGPIPE
// is never raised (MSG_NOSIGNAL).
//
// Plain functions on file descriptors; any thread. Socket owns one descriptor and closes it.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace tern::fuzz {

using Clock = std::chrono::steady_clock;
using Millis = std::chrono::milliseconds;

// Connects to 127.0.0.1:port with TCP_NODELAY, non-blocking. Returns the descriptor, or -1 (errno
// set) when the connection is refused or not established before `deadline`.
int connectLoopback(std::uint16_t port, Clock::time_point deadline);

// Sends all of `bytes` unless the connection fails or `deadline` passes. Returns how many bytes
// the kernel took; `failed` is set when the connection is gone (EPIPE, ECONNRESET, ...).
std::size_t sendAll(int fd, std::string_view bytes, Clock::time_point deadline, bool& failed);

enum class ReadStatus : std::uint8_t { kData, kTimeout, kClosed };

// Waits until `deadline` for input, then appends what is available (at most `cap` bytes) to
// `into`. kClosed on EOF or a connection error (what was read before it is kept).
ReadStatus readAvailable(int fd, std::string& into, Clock::time_point deadline, std::size_t cap);

// SO_LINGER {1, 0}, then close: the peer gets an RST instead of a FIN.
void closeWithReset(int fd) noexcept;

// One descriptor, closed on destruction.
class Socket {
 public:
  Socket() noexcept = default;
  explicit Socket(int fd) noexcept : fd_(fd) {}
  Socket(Socket&& other) noexcept : fd_(other.release()) {}
  Socket& operator=(Socket&& other) noexcept {
    if (this != &other) reset(other.release());
    return *this;
  }
  Socket(const Socket&) = delete;
  Socket& operator=(const Socket&) = delete;
  ~Socket() { reset(); }

  int fd() const noexcept { return fd_; }
  bool valid() const noexcept { return fd_ >= 0; }
  int release() noexcept {
    const int fd = fd_;
    fd_ = -1;
    return fd;
  }
  void reset(int fd = -1) noexcept;

 private:
  int fd_ = -1;
};

// Reads LF-terminated lines from a socket (the trailing CR dropped), each bounded by a deadline.
class LineReader {
 public:
  explicit LineReader(int fd) noexcept : fd_(fd) {}
  // The next line, or false on timeout or EOF (`closed` tells which).
  bool next(std::string& line, Clock::time_point deadline);
  bool closed() const noexcept { return closed_; }

 private:
  int fd_;
  std::string buffer_;
  bool closed_ = false;
};

}  // namespace tern::fuzz
