// SessionTable: the sessions one worker owns, the ids the trie stores for them, and the maps that
// find them by client id and by token.
//
// Ownership: one per Worker, owning its sessions outright; a session lives on the worker its
// client id hashes to (homeWorker), so the table is touched by that worker's thread only. Other
// workers name a session by its SubscriberId (worker, slot, generation); find() recognizes an id
// of an ended session (its slot's generation moved on) and answers null.
//
// A removed session stays allocated until reap() (the end of the worker's turn), so that code
// still holding it in the same turn does not dangle. Policy (what ending a session means for its
// subscriptions and sockets) is the worker's; the table only keeps the books, and the limits:
// --max-sessions broker-wide (BrokerContext::sessions) and the 2^22 slots of a SubscriberId.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <queue>
#include <string>
#include <string_view>
#include <vector>

#include "session.hpp"
#include "tern/common/log_limiter.hpp"
#include "tern/common/string_map.hpp"
#include "tern/net/byte_buffer.hpp"
#include "tern/routing/subscriber_id.hpp"

namespace tern::broker {

struct BrokerContext;
struct WorkerStats;

class SessionTable {
 public:
  // `account` is charged for the sessions' pending push queues.
  SessionTable(BrokerContext& context, unsigned workerIndex, unsigned workerCount,
               WorkerStats& stats, net::MemoryAccount& account);
  SessionTable(const SessionTable&) = delete;
  SessionTable& operator=(const SessionTable&) = delete;

  // A new session with a fresh id (and, for the line protocol, a fresh token); null when
  // --max-sessions or this worker's slots are used up (counted and logged).
  Session* create(std::string clientId, Protocol protocol);
  // Forgets `s`: its id becomes stale and the maps no longer find it. The object is freed by the
  // next reap(). REQUIRES: s belongs to this table and was not removed yet.
  void remove(Session& s);
  // Frees the sessions removed since the last call.
  void reap() noexcept { removed_.clear(); }

  // The session `id` names, or null when it ended. Never allocates.
  Session* find(routing::SubscriberId id) const noexcept {
    const std::uint32_t slot = id.slot();
    if (slot >= sessions_.size() || generations_[slot] != id.generation()) return nullptr;
    return sessions_[slot].get();
  }
  Session* findLine(std::string_view clientId) const;
  Session* findToken(std::string_view token) const;
  Session* findMqtt(std::string_view clientId) const;

  // Which worker is the home of `clientId` (FNV-1a, stable within the process).
  unsigned homeWorker(std::string_view clientId) const noexcept {
    return homeOf(clientId, workerCount_);
  }
  static unsigned homeOf(std::string_view clientId, unsigned workerCount) noexcept;
  // The worker a line-protocol token names (its last four hex digits), or -1 when malformed.
  static int tokenWorker(std::string_view token) noexcept;
  // A client id for CONNECT without one, homed on this worker and not in use by `protocol`.
  std::string newClientId(Protocol protocol);

  // Persistent MQTT sessions offline: ends (through `end`) those whose expiresAt passed.
  void scheduleExpiry(const Session& s, std::int64_t when);
  template <typename End>
  void expire(std::int64_t now, End&& end);
  bool expiriesPending() const noexcept { return !expiries_.empty(); }

  // Every live session, for shutdown and sweeps. Slots of ended sessions are null.
  const std::vector<std::unique_ptr<Session>>& slots() const noexcept { return sessions_; }

 private:
  std::string newToken();

  BrokerContext& context_;
  const unsigned index_;
  const unsigned workerCount_;
  WorkerStats& stats_;
  net::MemoryAccount& account_;
  // slot -> session; generations make the ids of ended sessions stale (0 is never used).
  std::vector<std::unique_ptr<Session>> sessions_;
  std::vector<std::uint32_t> generations_;
  std::vector<std::uint32_t> freeSlots_;
  std::vector<std::unique_ptr<Session>> removed_;  // freed by reap()
  common::StringMap<Session*> byClientId_;
  common::StringMap<Session*> byToken_;
  common::StringMap<Session*> byMqttClientId_;  // MQTT ids are a namespace apart
  struct Expiry {
    std::int64_t when;
    std::uint32_t slot;
    std::uint32_t generation;
    bool operator>(const Expiry& o) const noexcept { return when > o.when; }
  };
  std::priority_queue<Expiry, std::vector<Expiry>, std::greater<>> expiries_;  // lazily pruned
  common::LogLimiter limitLog_;
};

template <typename End>
void SessionTable::expire(std::int64_t now, End&& end) {
  while (!expiries_.empty() && expiries_.top().when <= now) {
    const Expiry e = expiries_.top();
    expiries_.pop();
    if (e.slot >= sessions_.size() || generations_[e.slot] != e.generation) continue;
    Session& s = *sessions_[e.slot];
    // Still offline since then? (A reconnect clears expiresAt; going offline again pushes a
    // later entry.)
    if (s.mqtt == nullptr || s.mqtt->expiresAt == 0 || s.mqtt->expiresAt > now) continue;
    end(s);
  }
}

}  // namespace tern::broker
