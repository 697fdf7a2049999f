#include "tern/net/connection_limiter.hpp"

#include <arpa/inet.h>

#include <cstring>

namespace tern::net {

PeerAddress peerAddressOf(const sockaddr_storage& address) noexcept {
  PeerAddress peer;
  if (address.ss_family == AF_INET6) {
    const auto& in6 = reinterpret_cast<const sockaddr_in6&>(address);
    std::memcpy(peer.bytes.data(), &in6.sin6_addr, 16);
  } else if (address.ss_family == AF_INET) {
    const auto& in4 = reinterpret_cast<const sockaddr_in&>(address);
    peer.bytes[10] = 0xff;
    peer.bytes[11] = 0xff;
    std::memcpy(peer.bytes.data() + 12, &in4.sin_addr, 4);
  }
  return peer;
}

std::string toString(const PeerAddress& address) {
  char text[INET6_ADDRSTRLEN] = {};
  static constexpr std::uint8_t kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  if (std::memcmp(address.bytes.data(), kMapped, 12) == 0) {
    ::inet_ntop(AF_INET, address.bytes.data() + 12, text, sizeof text);
  } else {
    ::inet_ntop(AF_INET6, address.bytes.data(), text, sizeof text);
  }
  return text;
}

std::size_t ConnectionLimiter::Hash::operator()(const PeerAddress& a) const noexcept {
  std::uint64_t hi;
  std::uint64_t lo;
  std::memcpy(&hi, a.bytes.data(), 8);
  std::memcpy(&lo, a.bytes.data() + 8, 8);
  return static_cast<std::size_t>((hi * 0x9E3779B97F4A7C15ULL) ^ (lo * 0xC2B2AE3D27D4EB4FULL));
}

Admission ConnectionLimiter::tryAdmit(const PeerAddress& address) {
  std::lock_guard lock(mutex_);
  if (open_ >= maxTotal_) return Admission::kTooMany;
  Counts& counts = perAddress_[address];
  if (counts.open >= maxPerAddress_) return Admission::kTooManyFromAddress;
  if (counts.unauthenticated >= maxUnauthenticated_) return Admission::kTooManyUnauthenticated;
  ++counts.open;
  ++counts.unauthenticated;
  ++open_;
  return Admission::kAdmitted;
}

void ConnectionLimiter::authenticated(const PeerAddress& address) {
  std::lock_guard lock(mutex_);
  const auto it = perAddress_.find(address);
  if (it != perAddress_.end() && it->second.unauthenticated > 0) --it->second.unauthenticated;
}

void ConnectionLimiter::release(const PeerAddress& address, bool unauthenticated) {
  std::lock_guard lock(mutex_);
  const auto it = perAddress_.find(address);
  if (it == perAddress_.end()) return;
  --open_;
  if (unauthenticated && it->second.unauthenticated > 0) --it->second.unauthenticated;
  if (--it->second.open == 0) perAddress_.erase(it);
}

std::size_t ConnectionLimiter::open() const {
  std::lock_guard lock(mutex_);
  return open_;
}

}  // namespace tern::net
