// Workload: who publishes where and who subscribes to what, as pure functions of the options.
//
// Sessions 0..clients-1 are the clients: client i publishes to "<prefix>/<i>" and subscribes to
// the topics of clients i+1 .. i+fanout (modulo clients), so every publish has `fanout` fan-out
// deliveries and no client receives its own messages. Sessions clients .. clients+wildcard-1 are
// wildcard subscribers that publish nothing: even ones subscribe to "<prefix>/+", odd ones to
// "<prefix>/#", and each sees every publish. So each publish is expected at fanout + wildcard
// subscribers, and "one publisher to K subscribers" is clients=1, fanout=0, wildcard=K.
//
// With shared subscriptions on, every filter is subscribed as "$share/s<session>/<filter>": each
// session is the one member of groups of its own, so the deliveries are the same, made through the
// broker's shared-subscription path (to measure what that path costs).
//
// The prefix ("lg/<run id>") differs on every run, so that runs sharing a broker never mix.
//
// Ownership: an immutable value after construction; any thread may call the const methods.
// Never allocates except where a std::string is returned (set-up, not per message).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace tern::loadgen {

class Workload {
 public:
  // REQUIRES: clients >= 1; fanout <= clients - 1.
  Workload(std::string prefix, std::uint32_t clients, std::uint32_t fanout,
           std::uint32_t wildcardSubscribers, bool sharedSubscriptions = false);

  std::uint32_t clients() const noexcept { return clients_; }
  std::uint32_t fanout() const noexcept { return fanout_; }
  std::uint32_t wildcardSubscribers() const noexcept { return wildcard_; }
  std::uint32_t sessions() const noexcept { return clients_ + wildcard_; }
  const std::string& prefix() const noexcept { return prefix_; }

  bool publishes(std::uint32_t session) const noexcept { return session < clients_; }
  // The topic client `publisher` publishes to.
  std::string topicOf(std::uint32_t publisher) const;
  // How many filters `session` subscribes to (fanout, or 1 for a wildcard subscriber).
  std::uint32_t filterCount(std::uint32_t session) const noexcept;
  // The `index`-th filter of `session`. REQUIRES: index < filterCount(session).
  std::string filter(std::uint32_t session, std::uint32_t index) const;

  // Sessions that receive each publish of one client when everyone is subscribed.
  std::uint32_t receiversPerPublish() const noexcept { return fanout_ + wildcard_; }
  // The sessions that receive `publisher`'s messages, as visit(session) calls. Set-up only.
  template <typename Visit>
  void forEachReceiver(std::uint32_t publisher, Visit&& visit) const {
    // Client s subscribes to s+1..s+fanout, so p is heard by p-1..p-fanout.
    for (std::uint32_t j = 1; j <= fanout_; ++j)
      visit((publisher + clients_ - j) % clients_);
    for (std::uint32_t w = 0; w < wildcard_; ++w)
      visit(clients_ + w);
  }

  // Number of publishers `session` receives from: the size of its tracker array.
  std::uint32_t sourceCount(std::uint32_t session) const noexcept {
    return session < clients_ ? fanout_ : clients_;
  }
  // Index into `session`'s tracker array of messages from `publisher`, or nullopt when `session`
  // should never receive them (a routing error). O(1). Never allocates.
  std::optional<std::uint32_t> sourceSlot(std::uint32_t session,
                                          std::uint32_t publisher) const noexcept;

 private:
  std::string prefix_;
  std::uint32_t clients_;
  std::uint32_t fanout_;
  std::uint32_t wildcard_;
  bool shared_;
};

// A fresh run prefix "lg/<16 hex digits>" from the kernel's random source.
std::string makeRunPrefix();

}  // namespace tern::loadgen
