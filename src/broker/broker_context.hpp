// BrokerContext: what every worker shares: the configuration, the subscription trie, the retained
// store, and the list of workers (to post into each other's inboxes).
//
// Ownership: owned by the Broker; outlives every worker thread. Threads: `config` and `workers` are
// constant once the workers start; the trie and the store are safe for concurrent use (see their
// headers); `stopStage` and `stoppedReading` coordinate the two-phase shutdown (see Broker::stop).
#pragma once

#include <atomic>
#include <memory>
#include <vector>

#include "tern/broker/config.hpp"
#include "tern/routing/retained_store.hpp"
#include "tern/routing/subscription_trie.hpp"

namespace tern::broker {

class Worker;

struct BrokerContext {
  explicit BrokerContext(const Config& c) : config(c) {}

  const Config config;
  routing::SubscriptionTrie trie;
  routing::RetainedStore retained;
  std::vector<std::unique_ptr<Worker>> workers;

  // 0 running; 1 stop reading and flush outboxes; 2 deliver what is left, flush, close, exit.
  // Release/acquire: a worker that sees stage 2 also sees that every worker finished stage 1.
  std::atomic<int> stopStage{0};
  std::atomic<unsigned> stoppedReading{0};
};

}  // namespace tern::broker
