// Worker: one event-loop thread that owns connections and sessions outright.
//
// Ownership: created and owned by the Broker (through BrokerContext::workers). Threads:
//   - start(), join(): the Broker's thread.
//   - adopt(), post(), wake(), stats(), index(): any thread (lock-free: the inbox is a moodycamel
//     ConcurrentQueue with an eventfd wake-up).
//   - everything else: the worker's own thread only (checked by TERN_ASSERT_OWNER in debug builds).
//
// One loop turn: wait on epoll (offline from QSBR while blocked), handle ready sockets (read,
// parse, act), drain the inbox (accepted sockets, handed-over sockets, delivery batches from other
// workers), post this turn's delivery batches to the other workers (one push per destination),
// flush every socket with pending output (one write per socket), free what was closed, check
// deadlines, and announce a QSBR quiescent state.
#pragma once

#include <sys/epoll.h>

#include <cstdint>
#include <memory>
#include <queue>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <vector>

#include "broker_context.hpp"
#include "connection.hpp"
#include "delivery_batch.hpp"
#include "session.hpp"
#include "tern/common/function_ref.hpp"
#include "tern/common/log_limiter.hpp"
#include "tern/protocol/line_request.hpp"
#include "tern/protocol/mqtt_decoder.hpp"
#include "tern/routing/subscription_trie.hpp"
#include "tern/sync/inbox.hpp"
#include "tern/sync/qsbr.hpp"
#include "worker_stats.hpp"

namespace tern::broker {

// What moves between threads into a worker.
struct InboxItem {
  enum class Kind : std::uint8_t { kAccepted, kHandover, kDeliveries };
  Kind kind = Kind::kAccepted;
  Protocol protocol = Protocol::kLine;  // kAccepted
  int fd = -1;                          // kAccepted
  net::PeerAddress peer;                // kAccepted
  Connection* connection = nullptr;     // kHandover (ownership moves with the item)
  DeliveryBatch* batch = nullptr;       // kDeliveries (ownership moves with the item)
};

class Worker {
 public:
  Worker(BrokerContext& context, unsigned index);
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  void start();
  void join();

  // Hands a freshly accepted socket, already admitted by the connection limiter, to this worker.
  // Any thread.
  void adopt(int fd, Protocol protocol, const net::PeerAddress& peer) {
    InboxItem item;
    item.kind = InboxItem::Kind::kAccepted;
    item.fd = fd;
    item.protocol = protocol;
    item.peer = peer;
    inbox_.push(std::move(item));
  }
  void post(InboxItem&& item) { inbox_.push(std::move(item)); }
  void wake() noexcept { inbox_.wake(); }

  unsigned index() const noexcept { return index_; }
  const WorkerStats& stats() const noexcept { return stats_; }

  // Deliveries posted to this worker and not yet processed. Producers add, the owner subtracts;
  // relaxed is enough because it only steers flow control (an early or late view of it delays or
  // resumes reading by one loop turn, nothing more).
  std::int64_t backlog() const noexcept { return backlog_.value.load(std::memory_order_relaxed); }

 private:
  // What a frame handler did with the connection.
  enum class Outcome { kDone, kHandedOver };
  // What processInput left: kGone means the connection now belongs to another worker and must
  // not be touched again.
  enum class InputState { kMore, kStopped, kGone };

  void run();
  void loopTurn(int timeoutMs, bool mayBlock);
  void shutdown();
  int nextTimeoutMs() const;

  // Connections.
  Connection* attach(std::unique_ptr<Connection> connection);
  void onEvent(std::uint64_t tag, std::uint32_t events);
  void readFrom(Connection& c);
  // Handles what is buffered in c.in. `searched`: how many leading bytes of c.in are known to
  // hold no frame end (derived by the caller from what it just read; 0 when in doubt).
  InputState processInput(Connection& c, std::size_t searched = 0);
  // Handles `data` read straight into the worker's buffer; keeps any unhandled tail in c.in.
  // REQUIRES: c is bound and c.in is empty.
  InputState processDirect(Connection& c, std::string_view data);
  // Handle the complete frames (packets) at the front of `data`, calling `commit(bytes)` after
  // each; on kMore the rest of `data` is an incomplete frame. `searched`: see processInput.
  InputState handleLines(Connection& c, std::string_view data, std::size_t searched,
                         common::FunctionRef<void(std::size_t)> commit);
  InputState handlePackets(Connection& c, std::string_view data,
                           common::FunctionRef<void(std::size_t)> commit);
  void setInterest(Connection& c);
  void markDirty(Connection& c);
  void flush(Connection& c);
  void closeAfterFlush(Connection& c);
  void closeNow(Connection& c);
  void handOver(Connection& c, unsigned worker);
  void reapClosed();
  void checkDeadlines();
  // Once per kSweepNanos: frees the empty read and write buffers of every connection, closes
  // connections whose incomplete frame is older than --frame-timeout, and ends offline MQTT
  // sessions past --session-expiry.
  void sweep();
  // After input was handled: starts, restarts or clears the frame timer of `c`.
  void noteFrameProgress(Connection& c, bool completedFrame) noexcept;
  // Once per turn, at its start: learns whether the broker as a whole is past --memory-limit from
  // the figures every worker publishes at the end of its turns.
  void checkMemory() noexcept;
  // Counts a delivery not made; `reason` is one of the stats_.dropped* counters.
  void countDrop(Session& s, std::atomic<std::uint64_t>& reason);
  void pauseReading(Connection& c);
  void resumeReading(Connection& c);

  // Jobs (job.hpp): work a request started that goes on over loop turns.
  // Queues `job` on `c` (which must be bound) and runs its first slice at once.
  void startJob(Connection& c, Job&& job);
  // One slice for every connection with jobs.
  void runJobs();
  // Runs c's jobs for up to kJobSliceUnits; true when none is left.
  bool runJobsOf(Connection& c);
  // Offers one retained message to a job; false when its output has no room yet.
  bool takeForJob(Connection& c, Job& job, const common::Message& m);
  // After the turn's flush: a job waiting for output room that now has it runs next turn.
  void wakeJobsWithRoom() noexcept;
  // c's last job is done: lets its input be handled again.
  void finishJobs(Connection& c);
  void dropJobs(Connection& c);

  // Inbox and cross-worker delivery.
  void drainInbox();
  void deliverBatch(DeliveryBatch& batch);
  void flushOutboxes();
  bool destinationsOverloaded() const noexcept;

  // Line protocol (line_handler.cpp).
  Outcome onLineFrame(Connection& c, std::string_view frame);
  Outcome onUnboundFrame(Connection& c, std::string_view frame);
  Outcome onConnect(Connection& c, const protocol::LineRequest& request);
  Outcome onAttach(Connection& c, const protocol::LineRequest& request);
  void onRequest(Connection& c, const protocol::LineRequest& request);
  void onPublish(Connection& c, const protocol::LineRequest& request);
  void onSubscribe(Connection& c, const protocol::LineRequest& request);
  void onUnsubscribe(Connection& c, const protocol::LineRequest& request);
  void onList(Connection& c, const protocol::LineRequest& request);
  void onStats(Connection& c);
  void reply(Connection& c, std::string_view frame);
  void replyError(Connection& c, protocol::LineError error, std::string_view text);

  // MQTT (mqtt_handler.cpp).
  Outcome onMqttPacket(Connection& c, const protocol::mqtt::Packet& packet);
  Outcome onMqttConnect(Connection& c, const protocol::mqtt::Connect& connect);
  void onMqttPublish(Connection& c, Session& s, const protocol::mqtt::Publish& publish);
  void onMqttSubscribe(Connection& c, Session& s, const protocol::mqtt::Subscribe& subscribe);
  void onMqttUnsubscribe(Connection& c, Session& s, const protocol::mqtt::Unsubscribe& request);
  void onMqttAck(Session& s, const protocol::mqtt::Packet& packet);
  void mqttDeliver(Session& s, const common::Message& message, unsigned grantedQos, bool retained);
  void mqttSend(Connection& c, MqttState::Inflight& entry, bool dup);
  void mqttPump(Session& s);
  void mqttResume(Session& s);
  void mqttConnectionLost(Session& s, Connection& c);
  void mqttAbort(Connection& c, std::string_view why);
  // Null when --max-sessions (or this worker's session slots) is reached.
  Session* createMqttSession(std::string clientId, bool cleanSession);
  // Whether a client may publish to `topic` ($SYS/ is the broker's).
  static bool isReservedTopic(std::string_view topic) noexcept;
  // Counts, retains (or deletes) and routes a message from a client of protocol `from` (which
  // decides what a retained delete delivers and what a full retained store means). False when
  // the retained store refused it (--max-retained-*): then line-protocol messages are not
  // delivered, MQTT ones are, without being retained.
  bool publish(common::MessageRef message, Protocol from);

  // Sessions and delivery. createSession returns null when --max-sessions (or this worker's
  // session slots) is reached; the refusal is counted and logged.
  Session* createSession(std::string clientId, Protocol protocol);
  void endSession(Session& s);
  void detachFromSession(Connection& c);
  Session* sessionFor(routing::SubscriberId id) const noexcept;
  void route(const common::Message& message);
  // Delivers `message` to local session `s` (its frame or packet is queued on the session's
  // socket, or dropped and counted when the session's queue is full). `retained`: sent because of
  // a new subscription (RETAINED frame; MQTT retain flag set).
  void deliver(Session& s, const common::Message& message, unsigned grantedQos, bool retained);
  // Queues a MESSAGE (or RETAINED) frame of `message` for line session `s`: every line frame
  // that carries a message is written here, after the framing check (Message::lineSafe).
  void pushMessage(Session& s, const common::Message& message, bool retained);
  unsigned homeWorker(std::string_view clientId) const noexcept;
  std::string newClientId();
  std::string newToken();

  BrokerContext& context_;
  const Config& config_;
  const unsigned index_;
  WorkerStats stats_;
  sync::Inbox<InboxItem> inbox_;
  int epoll_ = -1;
  std::thread thread_;
  sync::ThreadOwner owner_;
  std::unique_ptr<sync::QsbrDomain::Reader> reader_;

  // Connection table: slot -> connection; generations detect stale epoll events.
  std::vector<Connection*> connections_;
  std::vector<std::uint32_t> slotGeneration_;
  std::vector<std::uint32_t> freeConnectionSlots_;
  std::vector<Connection*> dirty_;      // to flush at the end of this turn
  std::vector<Connection*> flushing_;   // dirty_ of the flush in progress (reused)
  std::vector<Connection*> graveyard_;  // closed this turn, freed at the end of it
  std::vector<Connection*> busy_;       // connections with jobs
  std::vector<Connection*> busyScratch_;
  bool jobsRunnable_ = false;  // a job stopped for its budget only: do not sleep next turn
  // Work per connection per turn (RetainedCursor units: a node entered, a child level copied, a
  // message offered): about 50 us of replay, so that no request holds the worker for long.
  static constexpr std::size_t kJobSliceUnits = 256;
  // Past --memory-limit, deliveries are dropped for sessions that already have this much queued:
  // the slow consumers that hold the memory, not those that keep up.
  static constexpr std::size_t kOverMemoryAllowance = 64 * 1024;
  // Jobs an MQTT connection may have before its input waits for them.
  static constexpr std::size_t kMaxJobs = 16;

  // Session table: slot -> session; generations make SubscriberIds of ended sessions stale.
  std::vector<std::unique_ptr<Session>> sessions_;
  std::vector<std::uint32_t> sessionGeneration_;
  std::vector<std::uint32_t> freeSessionSlots_;
  std::unordered_map<std::string, Session*> byClientId_;
  std::unordered_map<std::string, Session*> byToken_;
  std::unordered_map<std::string, Session*> byMqttClientId_;  // MQTT ids are a namespace apart
  std::vector<std::unique_ptr<Session>> endedSessions_;       // freed at the end of the turn

  // Deadlines (handshake, close linger): (when, slot, generation); a min-heap, lazily pruned.
  struct Deadline {
    std::int64_t when;
    std::uint32_t slot;
    std::uint32_t generation;
    bool operator>(const Deadline& o) const noexcept { return when > o.when; }
  };
  std::priority_queue<Deadline, std::vector<Deadline>, std::greater<>> deadlines_;
  // Offline persistent MQTT sessions: (expiresAt, session slot, generation), lazily pruned.
  std::priority_queue<Deadline, std::vector<Deadline>, std::greater<>> sessionExpiries_;
  std::int64_t nextSweep_ = 0;  // monotonic ns

  // Per destination worker: this turn's deliveries; pool of spare batches.
  std::vector<std::unique_ptr<DeliveryBatch>> outboxes_;
  std::vector<std::unique_ptr<DeliveryBatch>> sparePool_;

  protocol::mqtt::Decoder mqttDecoder_;
  // Reused by every MQTT SUBSCRIBE: return codes, the distinct filters (views into the packet)
  // and where each filter is in distinctFilters_ (kRefusedFilter: over --max-subscriptions).
  std::vector<std::uint8_t> subackCodes_;
  std::vector<protocol::mqtt::Subscription> distinctFilters_;
  std::unordered_map<std::string_view, std::size_t> filterIndex_;
  static constexpr std::size_t kRefusedFilter = ~std::size_t{0};
  routing::MatchResult match_;          // reused by every publish: no allocation in steady state
  std::unique_ptr<char[]> readBuffer_;  // where bound sockets are read into (kReadChunk bytes)
  std::string scratch_;                 // reused for replies that need formatting
  std::string packetScratch_;           // reused for MQTT PUBLISH headers (deliveries only)
  std::vector<InboxItem> inboxScratch_;
  bool reading_ = true;     // false once shutdown stage 1 began
  bool throttled_ = false;  // another worker's backlog is too long: not reading input this turn
  bool overMemory_ = false;
  std::uint64_t framesHandled_ =
      0;  // frames and packets handled so far (to see progress)  // the broker is past --memory-limit (as of this turn's start)
  // What this worker's buffers, queued MQTT messages and sliced work hold (its memory figure).
  net::MemoryAccount memory_;
  common::LogLimiter memoryLog_;
  common::LogLimiter sessionLimitLog_;
  common::LogLimiter limitLog_;
  // Written by every worker that posts here: a cache line of its own.
  common::CacheAligned<std::atomic<std::int64_t>> backlog_;
};

}  // namespace tern::broker
