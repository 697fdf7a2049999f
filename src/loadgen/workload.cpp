#include "tern/loadgen/workload.hpp"

#include <fmt/format.h>
#include <sys/random.h>

#include <chrono>
#include <utility>

#include "tern/loadgen/schedule.hpp"

namespace tern::loadgen {

Workload::Workload(std::string prefix, std::uint32_t clients, std::uint32_t fanout,
                   std::uint32_t wildcardSubscribers, bool sharedSubscriptions)
    : prefix_(std::move(prefix)),
      clients_(clients),
      fanout_(fanout),
      wildcard_(wildcardSubscribers),
      shared_(sharedSubscriptions) {}

std::string Workload::topicOf(std::uint32_t publisher) const {
  return fmt::format("{}/{}", prefix_, publisher);
}

std::uint32_t Workload::filterCount(std::uint32_t session) const noexcept {
  return session < clients_ ? fanout_ : 1;
}

std::string Workload::filter(std::uint32_t session, std::uint32_t index) const {
  std::string plain =
      session < clients_ ? topicOf((session + 1 + index) % clients_)
                         // Both wildcards, so that both trie paths are exercised.
                         : fmt::format("{}/{}", prefix_, (session - clients_) % 2 == 0 ? "+" : "#");
  if (!shared_) return plain;
  return fmt::format("$share/s{}/{}", session, plain);
}

std::optional<std::uint32_t> Workload::sourceSlot(std::uint32_t session,
                                                  std::uint32_t publisher) const noexcept {
  if (publisher >= clients_) return std::nullopt;
  if (session >= clients_) {
    return session < clients_ + wildcard_ ? std::optional<std::uint32_t>(publisher) : std::nullopt;
  }
  // Subscriber s hears publishers s+1 .. s+fanout: distance d = p - s (mod clients) in 1..fanout.
  const std::uint32_t distance = (publisher + clients_ - session) % clients_;
  if (distance == 0 || distance > fanout_) return std::nullopt;
  return distance - 1;
}

std::string makeRunPrefix() {
  std::uint64_t id = 0;
  if (::getrandom(&id, sizeof id, 0) != static_cast<ssize_t>(sizeof id)) {
    // No entropy source: the clock is still unique enough between runs on one machine.
    id = streamSeed(
        static_cast<std::uint64_t>(std::chrono::system_clock::now().time_since_epoch().count()), 0);
  }
  return fmt::format("lg/{:016x}", id);
}

}  // namespace tern::loadgen
