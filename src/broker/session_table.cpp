#include "session_table.hpp"

#include <sys/random.h>

#include <fmt/format.h>

#include "broker_context.hpp"
#include "tern/common/clock.hpp"
#include "tern/common/log.hpp"
#include "worker_stats.hpp"

namespace tern::broker {

SessionTable::SessionTable(BrokerContext& context, unsigned workerIndex, unsigned workerCount,
                           WorkerStats& stats, net::MemoryAccount& account)
    : context_(context),
      index_(workerIndex),
      workerCount_(workerCount),
      stats_(stats),
      account_(account) {}

Session* SessionTable::create(std::string clientId, Protocol protocol) {
  // Relaxed: see BrokerContext::sessions.
  const std::int64_t live = context_.sessions.fetch_add(1, std::memory_order_relaxed) + 1;
  const bool slotsLeft = !freeSlots_.empty() || sessions_.size() < routing::SubscriberId::kMaxSlots;
  if (live > static_cast<std::int64_t>(context_.config.maxSessions) || !slotsLeft) {
    context_.sessions.fetch_sub(1, std::memory_order_relaxed);
    WorkerStats::add(stats_.refusedSessions, std::uint64_t{1});
    if (const std::uint64_t times = limitLog_.admit(common::monotonicNanos())) {
      TERN_LOG_WARN("refused {} new session(s): {} sessions live (--max-sessions {})", times,
                    live - 1, context_.config.maxSessions);
    }
    return nullptr;
  }
  std::uint32_t slot;
  if (!freeSlots_.empty()) {
    slot = freeSlots_.back();
    freeSlots_.pop_back();
  } else {
    slot = static_cast<std::uint32_t>(sessions_.size());
    sessions_.emplace_back();
    generations_.push_back(0);
  }
  std::uint32_t generation = ++generations_[slot];
  if (generation == 0) generation = ++generations_[slot];  // 0 marks an empty id
  auto s = std::make_unique<Session>();
  s->protocol = protocol;
  s->id = routing::SubscriberId::make(index_, slot, generation);
  s->clientId = std::move(clientId);
  s->pending.setAccount(&account_);
  s->pending.setGrowthLimit(context_.config.maxQueuedBytes);
  Session* raw = s.get();
  sessions_[slot] = std::move(s);
  if (protocol == Protocol::kMqtt) {
    byMqttClientId_.emplace(raw->clientId, raw);
  } else {
    raw->token = newToken();
    byClientId_.emplace(raw->clientId, raw);
    byToken_.emplace(raw->token, raw);
  }
  WorkerStats::add(stats_.sessions, std::int64_t{1});
  if (protocol == Protocol::kMqtt) WorkerStats::add(stats_.mqttSessions, std::int64_t{1});
  return raw;
}

void SessionTable::remove(Session& s) {
  if (s.protocol == Protocol::kMqtt) {
    byMqttClientId_.erase(s.clientId);
  } else {
    byClientId_.erase(s.clientId);
    byToken_.erase(s.token);
  }
  const std::uint32_t slot = s.id.slot();
  ++generations_[slot];
  freeSlots_.push_back(slot);
  removed_.push_back(std::move(sessions_[slot]));
  WorkerStats::add(stats_.sessions, std::int64_t{-1});
  if (s.protocol == Protocol::kMqtt) WorkerStats::add(stats_.mqttSessions, std::int64_t{-1});
  context_.sessions.fetch_sub(1, std::memory_order_relaxed);
}

Session* SessionTable::findLine(std::string_view clientId) const {
  const auto it = byClientId_.find(clientId);
  return it == byClientId_.end() ? nullptr : it->second;
}

Session* SessionTable::findToken(std::string_view token) const {
  const auto it = byToken_.find(token);
  return it == byToken_.end() ? nullptr : it->second;
}

Session* SessionTable::findMqtt(std::string_view clientId) const {
  const auto it = byMqttClientId_.find(clientId);
  return it == byMqttClientId_.end() ? nullptr : it->second;
}

unsigned SessionTable::homeOf(std::string_view clientId, unsigned workerCount) noexcept {
  // FNV-1a: stable within the process, spreads similar ids.
  std::uint64_t hash = 1469598103934665603ULL;
  for (char ch : clientId) {
    hash ^= static_cast<unsigned char>(ch);
    hash *= 1099511628211ULL;
  }
  return static_cast<unsigned>(hash % workerCount);
}

int SessionTable::tokenWorker(std::string_view token) noexcept {
  if (token.size() != 36) return -1;
  int worker = 0;
  for (std::size_t i = 0; i < token.size(); ++i) {
    const char ch = token[i];
    int digit = -1;
    if (ch >= '0' && ch <= '9') digit = ch - '0';
    if (ch >= 'a' && ch <= 'f') digit = ch - 'a' + 10;
    if (digit < 0) return -1;
    if (i >= 32) worker = worker * 16 + digit;
  }
  return worker;
}

std::string SessionTable::newClientId(Protocol protocol) {
  // Pick an id that is homed here, so the CONNECT that asked for it needs no hand-over.
  const auto& taken = protocol == Protocol::kMqtt ? byMqttClientId_ : byClientId_;
  for (;;) {
    std::uint64_t random = 0;
    if (::getrandom(&random, sizeof random, 0) != sizeof random) {
      random = static_cast<std::uint64_t>(common::monotonicNanos()) * 0x9E3779B97F4A7C15ULL;
    }
    std::string id = fmt::format("tern-{:016x}", random);
    if (homeWorker(id) == index_ && taken.find(id) == taken.end()) return id;
  }
}

std::string SessionTable::newToken() {
  // 128 bits from the kernel CSPRNG, then the home worker (4 hex digits) so that an ATTACH on any
  // worker knows where the session lives without a shared table.
  unsigned char random[16];
  std::size_t got = 0;
  while (got < sizeof random) {
    const ssize_t n = ::getrandom(random + got, sizeof random - got, 0);
    if (n > 0) got += static_cast<std::size_t>(n);
  }
  std::string token;
  token.reserve(36);
  static constexpr char kHex[] = "0123456789abcdef";
  for (unsigned char b : random) {
    token.push_back(kHex[b >> 4]);
    token.push_back(kHex[b & 15]);
  }
  fmt::format_to(std::back_inserter(token), "{:04x}", index_);
  return token;
}

void SessionTable::scheduleExpiry(const Session& s, std::int64_t when) {
  expiries_.push({when, s.id.slot(), s.id.generation()});
}

}  // namespace tern::broker
