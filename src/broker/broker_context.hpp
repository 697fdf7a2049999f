// BrokerContext: what every worker shares: the configuration, the subscription trie, the shared
// subscription groups, the retained store, the list of workers (to post into each other's inboxes)
// and the broker-wide limits.
//
// Ownership: owned by the Broker; outlives every worker and acceptor thread. Threads: `config` and
// `workers` are constant once the workers start; the trie, the groups, the store and the
// connection limiter are safe for concurrent use (see their headers); `stopStage` and
// `stoppedReading` coordinate the two-phase shutdown (see Broker::stop); the counters below say
// why their order is enough.
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <vector>

#include "tern/auth/acl_file.hpp"
#include "tern/broker/config.hpp"
#include "tern/common/cache_line.hpp"
#include "tern/common/log_limiter.hpp"
#include "tern/net/connection_limiter.hpp"
#include "tern/net/tls.hpp"
#include "tern/persist/store.hpp"
#include "tern/routing/retained_store.hpp"
#include "tern/routing/shared_groups.hpp"
#include "tern/routing/subscription_trie.hpp"

namespace tern::net {
class Acceptor;
}

namespace tern::broker {

class Worker;
class Authenticator;

struct BrokerContext {
  // Out of line: they destroy `workers`, which needs the whole Worker (broker_context.cpp).
  explicit BrokerContext(const Config& c);
  ~BrokerContext();

  const Config config;
  routing::SubscriptionTrie trie;
  routing::SharedGroups shared;  // the shared subscriptions ($share/<name>/<filter>)
  routing::RetainedStore retained{sync::QsbrDomain::global(),
                                  {config.maxRetainedMessages, config.maxRetainedBytes}};
  std::vector<std::unique_ptr<Worker>> workers;
  // Checks passwords off the workers' loops; null without --password-file. Declared after
  // `workers`, so it stops before them (it posts verdicts into their inboxes).
  std::unique_ptr<Authenticator> auth;
  // --data-dir: the durable store (null: memory only), opened and loaded before the workers are
  // made, started before they run, closed by Broker::stop after they stopped. Declared after
  // `workers`, so it is destroyed before them: its persistence thread calls their wakers until it
  // stops. `storeFaults` is its test seam (--test-storage-faults), declared before it to outlive it.
  persist::FaultSeam storeFaults;
  std::unique_ptr<persist::Store> store;
  // The next id of a message record (m/) any worker writes: above every id loaded at start-up.
  // Relaxed: the read-modify-write alone makes each id unique; nothing is published through it.
  std::atomic<std::uint64_t> nextMessageId{1};
  // --acl-file, read at start-up and replaced whole by a reload (SIGHUP, Broker::reload), which
  // retires the old one through the QSBR domain; null without one (everything allowed). Workers
  // load it (acquire; the release store publishes a whole file) while online, only to compile a
  // session's rules (at CONNECT, or once the generation moved), never per message. Owned.
  std::atomic<const auth::AclFile*> acl{nullptr};
  // Bumped (release) after each store of `acl`; a session whose rules are of an older generation
  // compiles them again at its next check (acquire: it then loads the new file).
  std::atomic<std::uint64_t> aclGeneration{1};
  // --tls-cert: the TLS listeners' context, replaced whole by a reload. A worker takes it once
  // per accepted TLS connection (tlsContext()), never per message; the mutex guards only the
  // pointer (held for a copy), and each session keeps the context it was made from alive.
  std::shared_ptr<const net::TlsContext> tlsContext() const {
    std::lock_guard lock(tlsMutex);
    return tls;
  }
  void replaceTlsContext(std::shared_ptr<const net::TlsContext> fresh) {
    std::lock_guard lock(tlsMutex);
    tls.swap(fresh);
  }
  mutable std::mutex tlsMutex;
  std::shared_ptr<const net::TlsContext> tls;  // null without --tls-cert
  // The acceptor (for its counters); set before the workers start, constant afterwards.
  const net::Acceptor* acceptor = nullptr;

  // 0 running; 1 stop reading and flush outboxes; 2 deliver what is left, flush, close, exit.
  // Release/acquire: a worker that sees stage 2 also sees that every worker finished stage 1.
  std::atomic<int> stopStage{0};
  std::atomic<unsigned> stoppedReading{0};

  // Open client sockets, in all and per address (--max-connections[-per-address]).
  net::ConnectionLimiter connections{config.maxConnections, config.maxConnectionsPerAddress,
                                     config.maxUnauthenticatedPerAddress};
  // Live sessions of every worker (--max-sessions). A worker adds one before it creates a session
  // and takes it back when the limit was passed or the session ends; relaxed is enough: the
  // read-modify-write itself keeps the count exact, and nothing else is published through it.
  alignas(common::kCacheLine) std::atomic<std::int64_t> sessions{0};
  // The sum of the workers' claims under --memory-limit (MemoryBudget, which says why relaxed
  // read-modify-writes are enough).
  alignas(common::kCacheLine) std::atomic<std::int64_t> memoryClaimed{0};
  // Connections the acceptor refused at a limit (statistics: relaxed).
  std::atomic<std::uint64_t> refusedConnections{0};
  std::atomic<std::uint64_t> refusedConnectionsPerAddress{0};
  std::atomic<std::uint64_t> refusedConnectionsUnauthenticated{0};
  common::LogLimiter connectionRefusals;
};

}  // namespace tern::broker
