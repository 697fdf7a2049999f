// Socket helpers: listening sockets, descriptor flags and the process's descriptor limit.
//
// Plain functions over file descriptors; any thread. Errors are returned as values with a human
// message (start-up code turns them into a one-line error and exit code 2).
#pragma once

#include <cstdint>
#include <string>

namespace tern::net {

struct ListenResult {
  int fd = -1;             // -1 on failure
  std::uint16_t port = 0;  // the bound port (useful with port 0)
  std::string error;       // set on failure, e.g. "cannot listen on 127.0.0.1:8000: Address in use"
};

// Creates a non-blocking, close-on-exec TCP listening socket bound to address:port (IPv4 dotted
// quad, IPv6 literal, or a host name resolved once). SO_REUSEADDR is set (restarts do not wait for
// TIME_WAIT); SO_REUSEPORT is not, so a busy port is an error instead of a silent share.
ListenResult listenTcp(const std::string& address, std::uint16_t port, int backlog);

// Sets O_NONBLOCK; false on failure.
bool setNonBlocking(int fd) noexcept;

// Disables Nagle's algorithm: replies and pushes are flushed once per loop turn already.
void setNoDelay(int fd) noexcept;

// Raises RLIMIT_NOFILE's soft limit to the hard limit. Returns the resulting soft limit.
std::uint64_t raiseFileLimit() noexcept;

// "address:port" of the socket's local end, e.g. "127.0.0.1:8000" or "[::1]:8000".
std::string localEndpoint(int fd);

}  // namespace tern::net
