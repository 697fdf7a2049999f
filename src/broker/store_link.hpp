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
// Follow-up writes (holdThen): an acknowledgement may name one more write, submitted only once its
// own writes and fence are durable, and then waits for that write too, in its place in the order.
// MQTT uses it for a QoS 2 publish of a persistent session: its packet id goes to disk after every
// queue entry the publish made here and on other workers, so that a restart that knows the id
// (and so answers the client's resend without delivering it) also has all of its deliveries.
//
// Persistent MQTT sessions (clean session 0 / session expiry > 0) of this worker are written here
// too: the session record, each QoS 1/2 message in its queue or in flight (one q/ entry per
// session, naming an m/ message record that this worker writes once however many of its sessions
// hold it, with a reference count in memory), and its inbound QoS 2 packet ids.
//
// Fences (--durability sync): a publish that reaches sessions of other workers is acknowledged
// only once those workers' writes for it are durable too. Each turn that routed such a publish
// gets a fence; every batch of deliveries posted that turn carries it; the receiving worker
// answers once the writes it submitted while delivering the batch completed (fenceArrived, then
// poll's `answer`); the acknowledgement waits until every batch of its fence was answered
// (fencePosted, fencePassed). A worker that wrote nothing answers at its next poll.
//
// Back-pressure: when the store refuses a request (its bounded queue is full), the request waits in
// this worker's backlog (later ones behind it, to keep the order) and the connection that caused
// it stops being read (stall): TCP holds the publisher back. Each turn moves the backlog into the
// store; once it is empty the stalled connections are read again. The backlog holds at most one
// request per frame handled before the stall took effect: bounded by the connections.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <string>
#include <string_view>
#include <unordered_map>
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
  // The writes it waits for: this worker's tickets after `after` up to `ticket` (0: none).
  std::uint64_t after = 0;
  std::uint64_t ticket = 0;
  std::uint64_t fence = 0;     // the fence of other workers' writes it waits for (0: none)
  std::uint16_t packetId = 0;  // MQTT
  std::uint8_t kind = 0;       // the protocol's (MQTT: the packet type of the acknowledgement)
  std::uint8_t reason = 0;     // MQTT 5.0: the reason code to send when the write succeeded
  bool ok = true;              // its writes succeeded (set when its turn comes)
  bool then = false;           // a follow-up write waits for its turn (StoreLink::holdThen)
  bool followed = false;       // its follow-up was submitted: `after`..`ticket` is that write
  // MQTT, a QoS 2 publish of a persistent session: its message, whose deliveries wait for this
  // acknowledgement's turn (common::Message::awaitsPublisher). One reference, owned by the
  // StoreLink while held and by the `ready` callback of poll() once handed to it; `remote`: some
  // of those deliveries are on other workers.
  const common::Message* resolves = nullptr;
  bool resolvesRemote = false;
};

class StoreLink {
 public:
  // `store` may be null (memory only): then nothing is written and nothing held.
  StoreLink(persist::Store* store, unsigned index) noexcept : store_(store), index_(index) {}
  ~StoreLink();  // drops the message references of acknowledgements still held
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

  // The last ticket submitted (tickets after it are this worker's next writes).
  std::uint64_t lastTicket() const noexcept { return lastTicket_; }

  // ---- persistent MQTT sessions: message records shared by this worker's queue entries.
  // The store id of `m`, adding its m/ record to `request` when this worker holds no reference to
  // it yet; counts one reference.
  std::uint64_t referenceMessage(const common::Message& m, persist::WriteRequest& request);
  // One reference fewer; the last erases the record (in `request`).
  void releaseMessage(const common::Message& m, persist::WriteRequest& request);
  // Start-up: a reference to `m`, already stored under `id`. `pinned`: other workers' sessions
  // reference the same record (the worker count changed since it was written), so this worker
  // never erases it (the next start-up deletes it once nothing references it).
  void adoptMessage(const common::Message& m, std::uint64_t id, bool pinned);
  // The store id of `m` while this worker references it, else 0.
  std::uint64_t messageIdOf(const common::Message& m) const noexcept {
    const auto it = messages_.find(&m);
    return it == messages_.end() ? 0 : it->second.id;
  }
  // Fresh message ids: one counter for the whole broker, above every id loaded at start-up.
  void setMessageIds(std::atomic<std::uint64_t>* ids) noexcept { messageIds_ = ids; }
  // A fresh publish serial (common::PublishName, persist::InboundQos2): from the same counter as
  // message ids, so it is unique in the data directory and above every serial loaded.
  std::uint64_t newSerial() noexcept { return nextId(); }

  // ---- fences (publisher side): the fence of this turn's batches (made on the first call).
  std::uint64_t turnFence();
  // Fanout::flush: this turn's fence went out on `batches` batches (0: it passed already).
  // Returns the fence (0 when this turn made none).
  std::uint64_t postTurnFence(unsigned batches);
  // A destination answered `fence`.
  void fencePassed(std::uint64_t fence, bool ok);
  // ---- fences (destination side): a batch carrying `fence` from worker `origin` was delivered;
  // its writes are the tickets after `after`. `onward` (0: none): this turn's own fence, when
  // delivering the batch handed deliveries on to other workers (a shared subscription's member
  // declined and another took it): the answer waits for that fence too.
  void fenceArrived(unsigned origin, std::uint64_t fence, std::uint64_t after,
                    std::uint64_t onward = 0);

  // Requests wait in the backlog: the connection that just submitted should stall().
  bool backlogged() const noexcept { return !backlog_.empty(); }
  // Stops handling c's input until the backlog drained (Connection::heldByStore).
  void stall(Connection& c);
  // Whether `c` has acknowledgements held (its next ones must be held behind them).
  static bool holding(const Connection& c) noexcept { return c.heldAcks != 0; }
  // Holds `ack` for connection `c` (ack.socket is set here).
  void hold(Connection& c, HeldAck ack);
  // Holds `ack`; once its writes and fence are durable (ok), submits `then` and holds it on for
  // that write, in its place. A failed or cancelled follow-up is not submitted: the acknowledgement
  // is ready at once (with ok false when its own writes failed).
  void holdThen(Connection& c, HeldAck ack, persist::WriteRequest then);
  // Follow-ups not submitted yet whose first write's key starts with `keyPrefix` are not submitted
  // (the session ended, or the client released the packet id early).
  void cancelThen(std::string_view keyPrefix);
  // Follow-ups wait to be submitted (so that a caller builds a key for cancelThen only then).
  bool followUpsPending() const noexcept { return !thens_.empty(); }

  // One worker turn: moves the backlog into the store, takes this worker's completions, then calls
  // `answer(unsigned origin, std::uint64_t fence, bool ok)` for each fence whose writes completed,
  // `ready(const HeldAck&)` for each held acknowledgement whose turn came, in order (it takes
  // over HeldAck::resolves), and
  // `release(net::SocketId)` for each stalled connection once the backlog is empty. The callbacks
  // find the connection by its socket (it may be gone) and must not call hold() or submit().
  template <typename Answer, typename Ready, typename Release>
  void poll(Answer&& answer, Ready&& ready, Release&& release);

  // Requests submitted and not completed, acknowledgements held, fences not answered: false
  // while anything waits.
  bool idle() const noexcept {
    return outstanding_ == 0 && acks_.empty() && backlog_.empty() && arrived_.empty();
  }

  // Unix milliseconds of a monotonic deadline (0 stays 0: never).
  static std::uint64_t unixMillisOf(std::int64_t monotonicDeadline) noexcept;

 private:
  void complete(const persist::Completion& completion);
  void pushBacklog();
  bool failedIn(std::uint64_t after, std::uint64_t through) const noexcept;
  // Whether `ack`'s turn came: its writes completed and its fence passed; sets ack.ok.
  bool settle(HeldAck& ack) noexcept;
  // Whether fence `id` was posted and every batch of it answered; `ok` false when one failed.
  bool fenceDone(std::uint64_t id, bool& ok) const noexcept;
  void pruneFailures() noexcept;

  struct Fence {
    std::uint64_t id;
    unsigned remaining;  // batches not answered yet
    bool ok;
  };
  struct Arrived {
    unsigned origin;
    std::uint64_t fence;
    std::uint64_t after;
    std::uint64_t through;
    std::uint64_t onward;  // this worker's fence it also waits for (0: none)
  };
  struct Persisted {
    std::uint64_t id;
    std::uint64_t refs;
  };

  persist::Store* const store_;
  const unsigned index_;
  std::uint64_t lastTicket_ = 0;
  // Every ticket up to this one completed: completions arrive in submission order (one producer
  // per completion queue, and the persistence thread takes each producer's requests in order).
  std::uint64_t completedThrough_ = 0;
  std::deque<std::uint64_t> failed_;  // tickets that completed with an error, oldest first
  std::uint64_t outstanding_ = 0;     // submitted (store or backlog), not completed
  std::uint64_t lastFence_ = 0;
  std::uint64_t turnFence_ = 0;  // this turn's, 0 until a publish needs one
  std::deque<Fence> fences_;     // posted and not yet forgotten, by id
  std::deque<Arrived> arrived_;  // fences to answer, in arrival order
  std::unordered_map<const common::Message*, Persisted> messages_;
  std::uint64_t nextId() noexcept {
    // Relaxed: the counter only hands out unique numbers; nothing is published through it.
    return messageIds_ != nullptr ? messageIds_->fetch_add(1, std::memory_order_relaxed)
                                  : (std::uint64_t{index_ + 1} << 48) + ++localIds_;
  }
  std::atomic<std::uint64_t>* messageIds_ = nullptr;
  std::uint64_t localIds_ = 0;  // without messageIds_ (unit tests)
  std::deque<persist::WriteRequest> backlog_;
  // In the order held. Tickets of waiting ones increase, except that a followed one's range
  // (its follow-up) comes after those of the ones behind it.
  std::deque<HeldAck> acks_;
  struct FollowUp {
    persist::WriteRequest request;
    bool cancelled = false;
  };
  std::deque<FollowUp> thens_;  // of the acks with `then`, in the same order
  std::vector<net::SocketId> stalled_;
  common::LogLimiter unstorableLog_;
};

template <typename Answer, typename Ready, typename Release>
void StoreLink::poll(Answer&& answer, Ready&& ready, Release&& release) {
  if (store_ == nullptr) return;
  if (!backlog_.empty()) pushBacklog();
  persist::Completion completions[256];
  std::size_t n = 0;
  while ((n = store_->popCompletions(index_, completions, std::size(completions))) != 0) {
    for (std::size_t k = 0; k < n; ++k)
      complete(completions[k]);
  }
  while (!arrived_.empty() && arrived_.front().through <= completedThrough_) {
    const Arrived a = arrived_.front();
    bool onwardOk = true;
    if (a.onward != 0 && !fenceDone(a.onward, onwardOk)) break;  // answers keep their order
    arrived_.pop_front();
    answer(a.origin, a.fence, !failedIn(a.after, a.through) && onwardOk);
  }
  // Follow-ups of the acknowledgements whose own writes are durable go now, all of them (in
  // order), not one per batch behind the first: only their release keeps the order.
  for (auto it = acks_.begin(); !thens_.empty() && it != acks_.end(); ++it) {
    HeldAck& ack = *it;
    if (ack.followed) continue;  // its own writes were durable; it waits for its follow-up
    if (!settle(ack)) break;     // follow-ups are submitted in the order held
    if (!ack.then) continue;
    ack.then = false;
    FollowUp next = std::move(thens_.front());
    thens_.pop_front();
    if (ack.ok && !next.cancelled) {
      ack.after = lastTicket_;
      ack.ticket = submit(std::move(next.request));
      ack.fence = 0;
      ack.followed = true;
    }
  }
  while (!acks_.empty() && settle(acks_.front())) {
    const HeldAck ack = acks_.front();
    acks_.pop_front();
    ready(ack);
  }
  // Fences no held acknowledgement or unanswered arrival refers to any more (both refer to
  // fences in increasing order along their queues: the first that refers to one decides).
  while (!fences_.empty() && fences_.front().remaining == 0) {
    bool referenced = false;
    for (const HeldAck& ack : acks_) {
      if (ack.fence != 0) {
        referenced = ack.fence <= fences_.front().id;
        break;
      }
    }
    for (const Arrived& a : arrived_) {
      if (a.onward != 0) {
        referenced = referenced || a.onward <= fences_.front().id;
        break;
      }
    }
    if (referenced) break;
    fences_.pop_front();
  }
  pruneFailures();
  if (backlog_.empty() && !stalled_.empty()) {
    std::vector<net::SocketId> list;
    list.swap(stalled_);
    for (const net::SocketId socket : list)
      release(socket);
  }
}

}  // namespace tern::broker
