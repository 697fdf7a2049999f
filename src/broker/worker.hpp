// Worker: one event-loop thread that owns connections and sessions outright.
//
// The pieces, each in a file of its own:
//   - this class: the thread, its loop turn, its inbox, the connections and their sockets
//     (ConnectionIo), deadlines (handshake, close linger, keep-alive), the periodic sweep and the
//     memory figure;
//   - WorkerCore (worker_core.hpp): what both protocols share: SessionTable (sessions and their
//     maps), Fanout (routing a publish, batches to other workers), JobRunner (retained replay and
//     LIST in slices), the counters, publish/deliver/endSession;
//   - LineProtocol and MqttProtocol: the two ProtocolHandlers, bytes in and bytes out.
// The path of a publish: Worker::readFrom -> ProtocolHandler::onInput (line_protocol.cpp or
// mqtt_protocol.cpp) -> WorkerCore::publish -> Fanout::route -> ProtocolHandler::deliver (here,
// or on the subscriber's worker through its inbox: Worker::drainInbox -> Fanout::receive) ->
// ConnectionIo::send -> Worker::flush at the end of the turn.
//
// Ownership: created and owned by the Broker (through BrokerContext::workers). Threads:
//   - start(), join(): the Broker's thread.
//   - adopt(), post(), wake(), stats(), index(), fanout().backlog()/giveBack(): any thread
//     (lock-free: the inbox is a moodycamel ConcurrentQueue with an eventfd wake-up).
//   - everything else: the worker's own thread only (checked by TERN_ASSERT_OWNER in debug builds).
//
// One loop turn: wait on epoll (offline from QSBR while blocked), handle ready sockets (read,
// parse, act), drain the inbox (accepted sockets, handed-over sockets, delivery batches from other
// workers), run the jobs, post this turn's delivery batches to the other workers (one push per
// destination), flush every socket with pending output (one write per socket), free what was
// closed, check deadlines, and announce a QSBR quiescent state.
#pragma once

#include <sys/epoll.h>

#include <cstdint>
#include <memory>
#include <queue>
#include <thread>
#include <vector>

#include "broker_context.hpp"
#include "connection.hpp"
#include "connection_io.hpp"
#include "delivery_batch.hpp"
#include "line_protocol.hpp"
#include "mqtt_protocol.hpp"
#include "tern/sync/inbox.hpp"
#include "tern/sync/qsbr.hpp"
#include "worker_core.hpp"
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

class Worker final : private ConnectionIo {
 public:
  Worker(BrokerContext& context, unsigned index);
  ~Worker() override;
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
  const WorkerStats& stats() const noexcept { return core_.stats; }
  Fanout& fanout() noexcept { return core_.fanout; }
  const Fanout& fanout() const noexcept { return core_.fanout; }

 private:
  void run();
  void loopTurn(int timeoutMs, bool mayBlock);
  void shutdown();
  int nextTimeoutMs() const;

  // Connections and their sockets.
  Connection* attach(std::unique_ptr<Connection> connection);
  void onEvent(std::uint64_t tag, std::uint32_t events);
  void readFrom(Connection& c);
  // Handles what is buffered in c.in. `searched`: how many leading bytes of c.in are known to
  // hold no frame end (derived by the caller from what it just read; 0 when in doubt).
  InputState processInput(Connection& c, std::size_t searched = 0);
  // Handles `data` read straight into the worker's buffer; keeps any unhandled tail in c.in.
  // REQUIRES: c is bound and c.in is empty.
  InputState processDirect(Connection& c, std::string_view data);
  // processInput of a connection whose input was held, then its frame timer.
  void resumeInput(Connection& c);
  void setInterest(Connection& c);
  void flush(Connection& c);
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
  void drainInbox();

  // ConnectionIo.
  net::ByteBuffer& output(Connection& c) noexcept override { return c.out; }
  void send(Connection& c) override;
  std::size_t unsent(const Connection& c) const noexcept override { return c.out.size(); }
  void closeAfterFlush(Connection& c) override;
  void closeNow(Connection& c) override;
  void handOver(Connection& c, unsigned worker) override;
  void pauseInput(Connection& c) override;
  void releaseInput(Connection& c) override;
  void startKeepAlive(Connection& c, std::int64_t nanos) override;

  BrokerContext& context_;
  const Config& config_;
  const unsigned index_;
  WorkerCore core_;
  LineProtocol line_;
  MqttProtocol mqtt_;
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

  // Deadlines (handshake, close linger, keep-alive): (when, slot, generation); a min-heap,
  // lazily pruned.
  struct Deadline {
    std::int64_t when;
    std::uint32_t slot;
    std::uint32_t generation;
    bool operator>(const Deadline& o) const noexcept { return when > o.when; }
  };
  std::priority_queue<Deadline, std::vector<Deadline>, std::greater<>> deadlines_;
  std::int64_t nextSweep_ = 0;  // monotonic ns

  std::unique_ptr<char[]> readBuffer_;  // where bound sockets are read into (kReadChunk bytes)
  std::vector<InboxItem> inboxScratch_;
  bool throttled_ = false;  // another worker's backlog is too long: not reading input this turn
  std::uint64_t framesHandled_ = 0;  // frames and packets handled so far (to see progress)
  common::LogLimiter frameTimeoutLog_;
};

}  // namespace tern::broker
