// StoreLink: one worker's side of the persist::Store (--data-dir): the writes its clients cause,
// the acknowledgements held until those writes are durable, and the connections held back while
// the store's queue is full.
//
// Ownership: one per WorkerCore, on its worker's thread only. The worker is producer number
// `index` of the Store (its completion queue and waker); the Store is the Broker's
// (BrokerContext::store) and outlives every worker.
//
// What is written (docs/durability.md): the retained message of a topic (put), or its deletion
// (an empty retained publish), one request each. A request's cookie is its ticket: a per-worker
// number that only grows, so tickets name requests in the order they were submitted.
//
// Held acknowledgements (--durability sync): a protocol that owes a client an acknowledgement of
// a durable publish does not send it; it holds it here with the ticket of the write (HeldAck).
// Acknowledgements are released strictly in the order they were held, each once its write
// completed (ok or not), so that a connection's acknowledgements keep the order of its publishes
// [MQTT-4.6.0-2, -3]; an acknowledgement that needs no write but follows a held one of the same
// connection is held too, with ticket 0 (its turn comes right after).
//
// Back-pressure: when the store refuses a request (its bounded queue is full), the request waits in
// this worker's backlog (later ones behind it, to keep the order) and the connection that caused
// it stops being read (stall): TCP holds the publisher back. Each turn moves the backlog into the
// store; once it is empty the stalled connections are read again. The backlog holds at most one
// request per frame handled before the stall took effect: bounded by the connections.
#pragma once

#include <cstdint>
#include <deque>
#include <string>
#include <vector>

#include "connection.hpp"
#include "tern/common/log_limiter.hpp"
#include "tern/common/message.hpp"
#include "tern/net/event_loop.hpp"
#include "tern/persist/store.hpp"

namespace tern::broker {

// An acknowledgement a protocol owes and sends once its write is durable.
struct HeldAck {
  net::SocketId socket = 0;
  std::uint64_t ticket = 0;    // the write it waits for; 0: none (held for order only)
  std::uint16_t packetId = 0;  // MQTT
  std::uint8_t kind = 0;       // the protocol's (MQTT: the packet type of the acknowledgement)
  std::uint8_t reason = 0;     // MQTT 5.0: the reason code to send when the write succeeded
  bool done = false;           // its write completed
  bool ok = true;              // ... successfully
};

class StoreLink {
 public:
  // `store` may be null (memory only): then nothing is written and nothing held.
  StoreLink(persist::Store* store, unsigned index) noexcept : store_(store), index_(index) {}
  StoreLink(const StoreLink&) = delete;
  StoreLink& operator=(const StoreLink&) = delete;

  bool enabled() const noexcept { return store_ != nullptr; }
  // Whether acknowledgements of durable publishes wait for the disk (--durability sync).
  bool holdsAcks() const noexcept {
    return store_ != nullptr && store_->options().durability == persist::Durability::kSync;
  }

  // A ticket that no write can have: the message cannot be stored (a line-protocol topic longer
  // than the store's 65535 bytes).
  static constexpr std::uint64_t kUnstorable = ~std::uint64_t{0};
  // Writes the retained state of m.topic(): `m` as its retained message, or none when its
  // contents are empty. Returns the ticket (0 without a store; kUnstorable).
  std::uint64_t writeRetained(const common::Message& m);
  // Submits `request` (its token is set here). Returns its ticket.
  std::uint64_t submit(persist::WriteRequest&& request);

  // Requests wait in the backlog: the connection that just submitted should stall().
  bool backlogged() const noexcept { return !backlog_.empty(); }
  // Stops handling c's input until the backlog drained (Connection::heldByStore).
  void stall(Connection& c);
  // Whether `c` has acknowledgements held (its next ones must be held behind them).
  static bool holding(const Connection& c) noexcept { return c.heldAcks != 0; }
  // Holds `ack` for connection `c` (ack.socket is set here).
  void hold(Connection& c, HeldAck ack);

  // One worker turn: moves the backlog into the store, takes this worker's completions, then calls
  // `ready(const HeldAck&)` for each held acknowledgement whose turn came, in order, and
  // `release(net::SocketId)` for each stalled connection once the backlog is empty. The callbacks
  // find the connection by its socket (it may be gone) and must not call hold() or submit().
  template <typename Ready, typename Release>
  void poll(Ready&& ready, Release&& release);

  // Requests submitted and not completed, and acknowledgements held: zero when nothing waits.
  bool idle() const noexcept { return outstanding_ == 0 && acks_.empty() && backlog_.empty(); }

  // Unix milliseconds of a monotonic deadline (0 stays 0: never).
  static std::uint64_t unixMillisOf(std::int64_t monotonicDeadline) noexcept;

 private:
  void complete(const persist::Completion& completion) noexcept;
  void pushBacklog();

  persist::Store* const store_;
  const unsigned index_;
  std::uint64_t lastTicket_ = 0;
  std::uint64_t outstanding_ = 0;  // submitted (store or backlog), not completed
  std::deque<persist::WriteRequest> backlog_;
  std::deque<HeldAck> acks_;  // in the order held; tickets of waiting ones increase
  std::vector<net::SocketId> stalled_;
  common::LogLimiter unstorableLog_;
};

template <typename Ready, typename Release>
void StoreLink::poll(Ready&& ready, Release&& release) {
  if (store_ == nullptr) return;
  if (!backlog_.empty()) pushBacklog();
  persist::Completion completions[256];
  std::size_t n = 0;
  while ((n = store_->popCompletions(index_, completions, std::size(completions))) != 0) {
    for (std::size_t k = 0; k < n; ++k)
      complete(completions[k]);
  }
  while (!acks_.empty() && acks_.front().done) {
    const HeldAck ack = acks_.front();
    acks_.pop_front();
    ready(ack);
  }
  if (backlog_.empty() && !stalled_.empty()) {
    std::vector<net::SocketId> list;
    list.swap(stalled_);
    for (const net::SocketId socket : list)
      release(socket);
  }
}

}  // namespace tern::broker
