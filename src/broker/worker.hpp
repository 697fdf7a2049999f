// Worker: one event-loop thread that owns connections and sessions outright.
//
// The pieces, each in a file of its own:
//   - this class: the thread, its loop turn, its inbox, its connections over a net::EventLoop
//     (io_uring or epoll; it implements ConnectionIo for the protocols), deadlines (handshake,
//     close linger, keep-alive), the periodic sweep and the memory figure;
//   - WorkerCore (worker_core.hpp): what both protocols share: SessionTable (sessions and their
//     maps), Fanout (routing a publish, batches to other workers), JobRunner (retained replay and
//     LIST in slices), the counters, publish/deliver/endSession;
//   - LineProtocol and MqttProtocol: the two ProtocolHandlers, bytes in and bytes out.
// The path of a publish: Worker::onReceive -> ProtocolHandler::onInput (line_protocol.cpp or
// mqtt_protocol.cpp, then mqtt_inbound.cpp) -> WorkerCore::publish -> Fanout::route -> ProtocolHandler::deliver (here,
// or on the subscriber's worker through its inbox: Worker::drainInbox -> Fanout::receive) ->
// ConnectionIo::send -> the loop's send at the start of the next turn.
//
// Ownership: created and owned by the Broker (through BrokerContext::workers). Threads:
//   - start(), join(): the Broker's thread.
//   - adopt(), post(), wake(), stats(), inboxBacklog(), index(), fanout().backlog()/giveBack():
//     any thread (lock-free: the inbox is a moodycamel ConcurrentQueue; its wake-up is the loop's).
//   - everything else: the worker's own thread only (checked by TERN_ASSERT_OWNER in debug builds).
//
// One loop turn (net::EventLoop::runOnce, then the rest here): send what the last turn queued and
// wait for events in one system call with io_uring (offline from QSBR while blocked), handle what
// arrived (receive, parse, act), drain the inbox (accepted sockets, handed-over sockets, delivery
// batches from other workers), check deadlines, run the jobs, post this turn's delivery batches to
// the other workers (one push per destination), free what was closed, and announce a QSBR
// quiescent state.
#pragma once

#include <cstdint>
#include <memory>
#include <queue>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "broker_context.hpp"
#include "connection.hpp"
#include "connection_io.hpp"
#include "delivery_batch.hpp"
#include "line_protocol.hpp"
#include "mqtt_protocol.hpp"
#include "sys_topics.hpp"
#include "tern/net/event_loop.hpp"
#include "tern/sync/inbox.hpp"
#include "tern/sync/qsbr.hpp"
#include "worker_core.hpp"
#include "worker_stats.hpp"

namespace tern::broker {

// What moves between threads into a worker.
struct InboxItem {
  enum class Kind : std::uint8_t {
    kAccepted,
    kHandover,
    kDeliveries,
    kAuthVerdict,
    kFence,
    kResolved,
  };
  Kind kind = Kind::kAccepted;
  Protocol protocol = Protocol::kLine;  // kAccepted
  bool tls = false;                     // kAccepted: from a TLS listener
  bool ws = false;                      // kAccepted: from a WebSocket listener
  int fd = -1;                          // kAccepted
  net::PeerAddress peer;                // kAccepted
  Connection* connection = nullptr;     // kHandover (ownership moves with the item)
  DeliveryBatch* batch = nullptr;       // kDeliveries (ownership moves with the item)
  net::SocketId socket = 0;             // kAuthVerdict: the connection (stale once it closed)
  std::uint32_t attempt = 0;            // kAuthVerdict: Connection::authAttempt it answers
  bool accepted = false;                // kAuthVerdict; kFence: the writes succeeded
  std::uint64_t fence = 0;              // kFence: the StoreLink fence a destination answers
  // kResolved: a message whose publisher's packet id is durable (MqttProtocol::releaseParked);
  // one reference moves with the item.
  const common::Message* message = nullptr;
};

class Worker final : private ConnectionIo, private net::EventLoopHandler {
 public:
  // Makes the worker's event loop (the backend config.io asks for); throws std::runtime_error
  // when it cannot (start-up).
  Worker(BrokerContext& context, unsigned index);
  ~Worker() override;
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  void start();
  void join();
  // --data-dir, start-up, before start(): makes the persistent sessions homed on this worker.
  // Returns how many were made.
  std::size_t restoreSessions(
      std::vector<persist::LoadedSession>& sessions,
      const std::unordered_map<std::uint64_t, MqttProtocol::RestoredMessage>& messages);

  // Hands a freshly accepted socket, already admitted by the connection limiter, to this worker.
  // Any thread.
  void adopt(int fd, Protocol protocol, bool tls, bool ws, const net::PeerAddress& peer) {
    InboxItem item;
    item.kind = InboxItem::Kind::kAccepted;
    item.fd = fd;
    item.protocol = protocol;
    item.tls = tls;
    item.ws = ws;
    item.peer = peer;
    inbox_.push(std::move(item));
  }
  void post(InboxItem&& item) { inbox_.push(std::move(item)); }
  void wake() noexcept { inbox_.wake(); }

  unsigned index() const noexcept { return index_; }
  const WorkerStats& stats() const noexcept { return core_.stats; }
  // Items waiting in the inbox (approximate while producers push). Any thread.
  std::size_t inboxBacklog() const noexcept { return inbox_.sizeApprox(); }
  Fanout& fanout() noexcept { return core_.fanout; }
  const Fanout& fanout() const noexcept { return core_.fanout; }
  net::IoBackend backend() const noexcept { return loop_->backend(); }
  // The loop's system-call counters. Worker thread only (or after join()).
  net::EventLoop::Counters ioCounters() const noexcept { return loop_->counters(); }

 private:
  void run();
  void loopTurn(std::int64_t timeoutNanos);
  void shutdown();
  std::int64_t nextTimeoutNanos() const;
  // Wakes this worker's loop from any thread: from another worker's thread through that loop
  // (io_uring: a MSG_RING entry in its next submission, no system call).
  void wakeLoop() noexcept;

  // Connections.
  Connection* attach(std::unique_ptr<Connection> connection);
  void forget(Connection& c) noexcept;  // removes c from connections_
  // Handles what is buffered in c.in. `searched`: how many leading bytes of c.in are known to
  // hold no frame end (derived by the caller from what it just appended; 0 when in doubt).
  InputState processInput(Connection& c, std::size_t searched = 0);
  // Handles `data` straight from the loop's buffer; keeps any unhandled tail in c.in.
  // REQUIRES: c is bound and c.in is empty.
  InputState processDirect(Connection& c, std::string_view data);
  // c's input may be handled again: receive, and handle what is buffered.
  void resumeInput(Connection& c);
  void holdReceive(Connection& c);
  // Received bytes (plaintext) of `c`: handled, or kept while its input is held. False when `c`
  // was handed to another worker (not to be touched again).
  bool handleReceived(Connection& c, std::span<const char> bytes);
  // Transports (worker_transport.cpp): what lies between the socket and the protocols.
  // TLS: decrypts what arrived (sending what the handshake answers) and goes on with the
  // plaintext (receivePlain).
  void receiveTls(Connection& c, std::span<const char> ciphertext);
  // Plaintext: through the WebSocket layer if `c` has one, then handleReceived. False when `c`
  // was handed to another worker.
  bool receivePlain(Connection& c, std::span<const char> bytes);
  // WebSocket: the upgrade request until it is decided, then frames, whose payload is handled.
  bool receiveWs(Connection& c, std::span<const char> bytes);
  // Decodes frames into wsPayload_, writing what the stream answers (pong, close) below it.
  void decodeWs(Connection& c, std::string_view frames);
  // The buffer below the WebSocket layer: TLS plaintext or the socket's output.
  net::ByteBuffer& belowWs(Connection& c) noexcept {
    return c.tls != nullptr ? c.tlsOut : loop_->output(c.socket);
  }
  // The largest WebSocket frame a client may send: the largest MQTT packet and a receive more
  // (unbuffered, so this bounds nothing held; a larger frame closes with 1009).
  std::size_t wsMaxFrame() const noexcept;
  // WebSocket: puts what c.wsOut holds into one binary frame below it.
  void frameWs(Connection& c);
  // Frames (WebSocket) and encrypts (TLS) what the protocols wrote, and flushes the socket.
  void sealNow(Connection& c);
  // At the end of each turn: seals every TLS or WebSocket connection written this turn.
  void sealPending();
  // The connection's input after a detach (onDetached), decrypted and decoded into c.in; what
  // the layers answer goes after c.carried.
  void decodeDetached(Connection& c, net::ByteBuffer& received);
  void reapClosed();
  // Worker 0: publishes the $SYS topics that changed, once per --sys-interval.
  void publishSys();
  void checkDeadlines();
  // Connections held back while another worker was overloaded: receive and handle them again.
  void releaseThrottled();
  // --data-dir: sends the acknowledgements whose writes completed, and reads again the
  // connections the store no longer holds back (StoreLink::poll). In worker_inbox.cpp.
  void pollStore();
  // Once per kSweepNanos: frees the empty read buffers of every connection, closes connections
  // whose incomplete frame is older than --frame-timeout, and ends offline MQTT sessions past
  // --session-expiry.
  void sweep();
  // After input was handled: starts, restarts or clears the frame timer of `c`.
  void noteFrameProgress(Connection& c, bool completedFrame) noexcept;
  // At the end of a turn and before blocking: its memory for STATS, and its claim under
  // --memory-limit lowered to what it holds (MemoryBudget), so that a sleeping worker reserves
  // nothing.
  void publishMemory() noexcept;
  // Handles everything queued in the inbox (worker_inbox.cpp).
  void drainInbox();
  static constexpr std::size_t kInboxBatch = 256;  // inbox items taken per pop

  // ConnectionIo.
  // TLS and WebSocket connections are written to Connection::wsOut (MQTT bytes) or tlsOut
  // (plaintext), framed and encrypted once per turn.
  net::ByteBuffer& output(Connection& c) noexcept override {
    return c.ws != nullptr ? c.wsOut : belowWs(c);
  }
  void send(Connection& c) override;
  std::size_t unsent(const Connection& c) const noexcept override {
    return loop_->unsentBytes(c.socket) + c.tlsOut.size() + c.wsOut.size();
  }
  void closeAfterFlush(Connection& c) override;
  void closeNow(Connection& c) override;
  void handOver(Connection& c, unsigned worker) override;
  void pauseInput(Connection& c) override;
  void notifyWhenDrained(Connection& c) override { loop_->notifyWhenDrained(c.socket); }
  void releaseInput(Connection& c) override { resumeInput(c); }
  void startKeepAlive(Connection& c, std::int64_t nanos) override;

  // net::EventLoopHandler.
  void onReceive(net::SocketId id, void* user, std::span<const char> bytes) override;
  void onInputEnd(net::SocketId id, void* user, int error) override;
  void onDrained(net::SocketId id, void* user) override;
  void onDetached(net::SocketId id, void* user, int fd, net::ByteBuffer& unsent,
                  net::ByteBuffer& received) override;
  bool beforeBlock() override;
  void afterBlock() override;
  bool hasPendingWork() override { return inbox_.sizeApprox() != 0; }

  BrokerContext& context_;
  const Config& config_;
  const unsigned index_;
  WorkerCore core_;
  LineProtocol line_;
  MqttProtocol mqtt_;
  sync::Inbox<InboxItem> inbox_;
  std::unique_ptr<net::EventLoop> loop_;
  std::thread thread_;
  sync::ThreadOwner owner_;
  std::unique_ptr<sync::QsbrDomain::Reader> reader_;

  std::vector<Connection*> connections_;    // every connection this worker owns (Connection::index)
  std::vector<Connection*> graveyard_;      // closed this turn, freed at the end of it
  std::vector<Connection*> throttledList_;  // held back while another worker is overloaded
  std::vector<net::SocketId> storeResumed_;  // pollStore's connections to read again (reused)
  std::vector<Connection*> sealQueue_;       // TLS/WebSocket connections written this turn
  net::ByteBuffer tlsPlain_;                 // one receive's decrypted bytes
  std::string wsPayload_;                    // one receive's WebSocket payload (MQTT bytes)
  std::string wsControl_;                    // what a WebSocket stream answers (pong, close)

  // Deadlines (handshake, close linger, keep-alive): (when, socket); a min-heap, lazily pruned (a
  // closed socket's id is stale: the loop no longer knows it).
  struct Deadline {
    std::int64_t when;
    net::SocketId socket;
    bool operator>(const Deadline& o) const noexcept { return when > o.when; }
  };
  std::priority_queue<Deadline, std::vector<Deadline>, std::greater<>> deadlines_;
  std::int64_t nextSweep_ = 0;  // monotonic ns
  // Worker 0 with --sys-interval: the $SYS topics, next due then (monotonic ns).
  std::unique_ptr<SysTopics> sys_;
  std::int64_t nextSys_ = 0;

  bool throttled_ = false;            // another worker's backlog is too long: input is not handled
  std::uint64_t framesHandled_ = 0;   // frames and packets handled so far (to see progress)
  std::uint64_t handledBatches_ = 0;  // delivery batches taken from the inbox so far
  // When this turn began, or the loop's wait returned (monotonic ns): WorkerStats::turnLatency.
  std::int64_t turnStart_ = 0;
  common::LogLimiter frameTimeoutLog_;
  common::LogLimiter tlsFailureLog_;
  common::LogLimiter wsRefusalLog_;
};

}  // namespace tern::broker
