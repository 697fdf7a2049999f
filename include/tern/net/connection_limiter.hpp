// ConnectionLimiter: how many client sockets are open, in all and per source address, how many of
// those from each address have not authenticated yet (no CONNECT or ATTACH accepted), and whether
// one more may be (--max-connections, --max-connections-per-address,
// --max-unauthenticated-per-address; docs/limits.md).
//
// Ownership: one per broker (BrokerContext). Threads: tryAdmit() runs on acceptor threads and
// release() on the worker that closes the socket, authenticated() on the worker that binds it; each
// takes one mutex. That is connection set-up
// and tear-down only, never the path of a message.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <string>
#include <unordered_map>

namespace tern::net {

// A peer's IP address in IPv6 form (IPv4 as ::ffff:a.b.c.d), the key of the per-address count.
struct PeerAddress {
  std::array<std::uint8_t, 16> bytes{};
  bool operator==(const PeerAddress&) const noexcept = default;
};

// The address of an accepted peer; all zero for families other than IPv4/IPv6.
PeerAddress peerAddressOf(const sockaddr_storage& address) noexcept;
// "127.0.0.1" or "::1", for logs.
std::string toString(const PeerAddress& address);

enum class Admission { kAdmitted, kTooMany, kTooManyFromAddress, kTooManyUnauthenticated };

class ConnectionLimiter {
 public:
  ConnectionLimiter(std::size_t maxTotal, std::size_t maxPerAddress,
                    std::size_t maxUnauthenticatedPerAddress = ~std::size_t{0})
      : maxTotal_(maxTotal),
        maxPerAddress_(maxPerAddress),
        maxUnauthenticated_(maxUnauthenticatedPerAddress) {}

  // Counts one more socket from `address`, not yet authenticated, when the limits allow it.
  // Thread-safe.
  Admission tryAdmit(const PeerAddress& address);
  // A socket admitted from `address` authenticated: it no longer counts against the
  // unauthenticated limit. Once per socket at most. Thread-safe.
  void authenticated(const PeerAddress& address);
  // Forgets one socket admitted from `address` (`unauthenticated`: it never authenticated).
  // Thread-safe.
  void release(const PeerAddress& address, bool unauthenticated);
  // Sockets admitted and not yet released. Thread-safe.
  std::size_t open() const;

 private:
  struct Hash {
    std::size_t operator()(const PeerAddress& a) const noexcept;
  };
  struct Counts {
    std::size_t open = 0;
    std::size_t unauthenticated = 0;
  };
  const std::size_t maxTotal_;
  const std::size_t maxPerAddress_;
  const std::size_t maxUnauthenticated_;
  mutable std::mutex mutex_;
  std::size_t open_ = 0;                                      // guarded by mutex_
  std::unordered_map<PeerAddress, Counts, Hash> perAddress_;  // guarded by mutex_
};

}  // namespace tern::net
