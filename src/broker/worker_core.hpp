// WorkerCore: what the two protocol handlers of one worker share, and the operations that span
// both protocols: publishing (retain, then route to every protocol's subscribers), delivering to a
// session of either protocol, and ending a session.
//
// Ownership: one per Worker, which owns it and gives it its ConnectionIo (the sockets); the
// handlers (LineProtocol, MqttProtocol) hold a reference. Threads: the worker's own thread only,
// except `stats`, which other workers read (relaxed, see worker_stats.hpp).
#pragma once

#include <atomic>
#include <cstdint>
#include <string>

#include "broker_context.hpp"
#include "connection_io.hpp"
#include "fanout.hpp"
#include "job_runner.hpp"
#include "memory_budget.hpp"
#include "protocol_handler.hpp"
#include "session_table.hpp"
#include "store_link.hpp"
#include "tern/common/clock.hpp"
#include "tern/common/log_limiter.hpp"
#include "tern/common/message.hpp"
#include "tern/net/byte_buffer.hpp"
#include "worker_stats.hpp"

namespace tern::broker {

class WorkerCore {
 public:
  WorkerCore(BrokerContext& context, unsigned index, unsigned workerCount, ConnectionIo& io);
  WorkerCore(const WorkerCore&) = delete;
  WorkerCore& operator=(const WorkerCore&) = delete;

  // REQUIRES: called once, before any input is handled.
  void setHandlers(ProtocolHandler& line, ProtocolHandler& mqtt) noexcept {
    handlers_[0] = &line;
    handlers_[1] = &mqtt;
  }
  ProtocolHandler& handler(Protocol protocol) noexcept {
    return *handlers_[static_cast<unsigned>(protocol)];
  }

  // Counts, retains (or deletes) and routes a message from a client of protocol `from`, which
  // decides what a retained delete delivers and what a full retained store means. False when the
  // retained store refused it (--max-retained-*): line-protocol messages are then not delivered,
  // MQTT ones are, without being retained. With --data-dir a retained change is also written:
  // `*ticket` (when given) is then its StoreLink ticket (StoreLink::kUnstorable when it cannot be
  // written), else 0.
  bool publish(common::MessageRef message, Protocol from, std::uint64_t* ticket = nullptr);
  // A message of the broker's own ($SYS): retained (when the store takes it) and routed, not
  // counted as received from a client.
  void publishOwn(common::MessageRef message);
  // Routes `message` to every subscriber (this worker's at once, the others' batched).
  void route(const common::Message& message);
  // Tells every other worker that `message` no longer awaits its publisher (an inbox item each,
  // holding a reference).
  void postResolved(const common::Message& message);
  // Delivers to the session `id` names, if it is still there. A shared-subscription delivery
  // (route.shared()) that the session declines or that finds it gone goes to another member of
  // its group. Never allocates per message.
  void deliverTo(routing::SubscriberId id, const common::Message& message, SharedRoute route);
  // Hands `message`, which session `from` held for the shared group of `route` and never got
  // acknowledged, to another member of the group (its session is ending without a successor).
  void redistribute(const common::Message& message, SharedRoute route, routing::SubscriberId from);
  // Adds (or, with another QoS, replaces) the subscription `filter` of `s`: in the trie, or in
  // its group for "$share/<name>/<filter>". REQUIRES: validateTopicFilter(filter) == kOk and
  // parseSharedFilter(filter).kind != kInvalid. False when no more shared groups can be made.
  bool subscribe(Session& s, std::string_view filter, unsigned qos);
  // Removes the subscription `filter` of `s` (from the trie or its group).
  void unsubscribe(Session& s, std::string_view filter);
  // Ends `s`: its subscriptions go, its protocol state goes, its sockets close once flushed.
  void endSession(Session& s);
  // `c` closed: its session (if any) learns it.
  void connectionGone(Connection& c);
  // A delivery to `s` not made, for `reason` (one of the stats.dropped* counters).
  void countDrop(Session& s, std::atomic<std::uint64_t>& reason);
  // An MQTT 5.0 message past its Message Expiry Interval goes to no session of any protocol
  // [MQTT-3.3.2-5]: true (and the drop counted) when `m` has expired. One branch for a message
  // without an expiry.
  bool expired(Session& s, const common::Message& m) {
    if (m.expiresAt() == 0 || m.expiresAt() > common::monotonicNanos()) return false;
    countDrop(s, stats.droppedExpired);
    return true;
  }
  // Who a CONNECT says it is: the user and password it gives, or, with
  // --use-identity-as-username on a TLS connection, the name in its verified client certificate
  // (the certificate is the credential: no password is checked; no certificate, no user).
  struct Credentials {
    std::optional<std::string_view> user;  // nullopt: anonymous
    std::string_view password;
    bool byCertificate = false;
  };
  Credentials credentials(const Connection& c, bool hasUser, std::string_view user,
                          std::string_view password) const noexcept {
    if (config.useIdentityAsUsername && c.tls != nullptr) {
      const std::string& identity = c.identity();
      return {
          identity.empty() ? std::nullopt : std::optional<std::string_view>(identity), {}, true};
    }
    return {hasUser ? std::optional<std::string_view>(user) : std::nullopt, password, false};
  }
  // Whether the CONNECT at the front of c's input may go on, by its credentials. kPending: the
  // Authenticator has them and c's input is held; the CONNECT is handled again when the verdict
  // arrives (authVerdict). Without --password-file, always kAccepted, except a certificate
  // identity that is missing (refused).
  enum class AuthResult { kAccepted, kRefused, kPending };
  AuthResult authenticate(Connection& c, const Credentials& who);
  // The verdict of c's pending check: c's input is released (the caller handles it again).
  // False when it is stale (c is no longer waiting for attempt `attempt`).
  bool authVerdict(Connection& c, std::uint32_t attempt, bool accepted);
  // --acl-file: the rules of a client (null without an ACL file).
  std::unique_ptr<const auth::Acl> aclFor(std::optional<std::string_view> user,
                                          std::string_view clientId) const;
  // Gives `s` the rules of `user` (nullopt: anonymous) and its client id, at CONNECT.
  void setAcl(Session& s, std::optional<std::string_view> user);
  // The rules of `s`, compiled again first when a reload replaced the ACL file since; null
  // without an ACL file (everything allowed). One acquire load when nothing changed.
  const auth::Acl* aclOf(Session& s) {
    if (s.acl == nullptr) return nullptr;
    if (context.aclGeneration.load(std::memory_order_acquire) != s.aclGeneration) {
      setAcl(s, s.aclUser);
    }
    return s.acl.get();
  }
  // What the session's rules allow. maySubscribe takes a subscription as the session gave it
  // ($share/<name>/<filter> is judged by its filter).
  bool mayWrite(Session& s, std::string_view topic) {
    const auth::Acl* acl = aclOf(s);
    return acl == nullptr || acl->mayWrite(topic);
  }
  bool mayRead(Session& s, std::string_view topic) {
    const auth::Acl* acl = aclOf(s);
    return acl == nullptr || acl->mayRead(topic);
  }
  bool maySubscribe(Session& s, std::string_view subscription);
  // $SYS and $SYS/... are the broker's.
  static bool isReservedTopic(std::string_view topic) noexcept;

  // A line session's pushes go to its push socket's output, or its pending queue until the push
  // socket attaches.
  net::ByteBuffer& pushTarget(Session& s) noexcept {
    return s.push != nullptr ? io.output(*s.push) : s.pending;
  }
  std::size_t pushTargetSize(const Session& s) const noexcept {
    return s.push != nullptr ? io.unsent(*s.push) : s.pending.size();
  }

  BrokerContext& context;
  const Config& config;
  const unsigned index;
  WorkerStats stats;
  // What this worker's buffers, queued MQTT messages and jobs hold (its memory figure).
  net::MemoryAccount memory;
  // This worker's claim under --memory-limit (started and ended with each turn by the worker).
  MemoryBudget memoryBudget;
  ConnectionIo& io;
  SessionTable sessions;
  // --data-dir: this worker's writes, held acknowledgements and stalled connections.
  StoreLink store;
  Fanout fanout;
  JobRunner jobs;
  // False once shutdown began: input is no longer read, and wills are no longer published.
  bool reading = true;
  // Whether a delivery that adds `growth` bytes of memory may be made to a session that has
  // `queued` bytes waiting. Past this worker's share of --memory-limit, deliveries are dropped for
  // sessions that already have more than kOverMemoryAllowance queued: the slow consumers that
  // hold the memory, not those that keep up.
  bool admitsMemory(std::size_t queued, std::size_t growth) const noexcept {
    return queued <= kOverMemoryAllowance || memoryBudget.admits(memory.bytes, growth);
  }
  static constexpr std::size_t kOverMemoryAllowance = 64 * 1024;
  // Reused for replies that need formatting.
  std::string scratch;
  common::LogLimiter memoryLog;
  common::LogLimiter limitLog;

 private:
  ProtocolHandler* handlers_[2] = {nullptr, nullptr};
};

}  // namespace tern::broker
