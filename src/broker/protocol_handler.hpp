// ProtocolHandler: one protocol's side of a worker (the line protocol, MQTT): bytes in, requests
// acted on, deliveries in, bytes out. The Worker feeds it the input of its connections and the
// deliveries for its sessions; the handler answers through ConnectionIo and acts through
// WorkerCore (sessions, publish, jobs). Two implementations: LineProtocol and MqttProtocol.
//
// Threads: the worker's own thread only.
#pragma once

#include <cstddef>
#include <string_view>

#include "connection.hpp"
#include "job.hpp"
#include "session.hpp"
#include "shared_route.hpp"
#include "tern/common/function_ref.hpp"
#include "tern/common/message.hpp"

namespace tern::broker {

struct HeldAck;  // store_link.hpp

// What handling input left.
enum class InputState {
  kMore,     // the rest of the input is an incomplete frame: wait for more bytes
  kStopped,  // the connection is closing, paused or held: the rest stays unhandled for now
  kGone,     // the connection was handed to another worker: it must not be touched again
};

class ProtocolHandler {
 public:
  virtual ~ProtocolHandler() = default;

  // Handles the complete frames at the front of `data`, input of `c`, calling commit(bytes) after
  // each one (the frame stays in place while it is handled, so a hand-over carries it along).
  // `searched`: leading bytes of `data` already known to hold no frame end (0 when in doubt).
  virtual InputState onInput(Connection& c, std::string_view data, std::size_t searched,
                             common::FunctionRef<void(std::size_t)> commit) = 0;
  // Delivers `message` to session `s` of this protocol: queues its frame or packet, or drops and
  // counts it. `retained`: sent because of a new subscription. `route`: the shared subscription
  // it was sent for, if any; when route.mayDecline() and `s` has no room for it (or is offline),
  // returns false and does nothing, so that another member of the group gets it. True otherwise.
  // Never allocates per message in the steady state.
  virtual bool deliver(Session& s, const common::Message& message, unsigned grantedQos,
                       bool retained, SharedRoute route) = 0;
  // Offers one retained message to a job (job.hpp) of `c`; false when its output has no room yet
  // (the job sets what it waits for).
  virtual bool takeForJob(Connection& c, Job& job, const common::Message& message) = 0;
  // `c`, bound to `s`, is closed.
  virtual void connectionGone(Session& s, Connection& c) = 0;
  // `s` ends: drops the protocol's state and reports the sockets that must close.
  virtual void sessionEnding(Session& s, Connection* (&sockets)[3]) = 0;
  // --durability sync: the write that acknowledgement `ack` of `c` (held by this protocol
  // through StoreLink::hold) waited for completed; sends it, or what a storage error calls for.
  // c.heldAcks already counts it out.
  virtual void onDurable(Connection& c, const HeldAck& ack) = 0;
  // Once a second (the worker's sweep): the protocol's own timers.
  virtual void onSweep(std::int64_t now) { (void)now; }
  // Whether onSweep has work waiting (the worker then wakes for its sweep even when idle).
  virtual bool timersPending() const noexcept { return false; }
  // Why the server ends a connection on its own (serverClosing).
  enum class ServerClose { kKeepAliveTimeout, kShuttingDown };
  // The server is about to end `c` for `why`: a protocol that can say so to the client queues it
  // in c's output (MQTT 5.0: DISCONNECT 0x8D or 0x8B). The worker still closes `c`, after a flush
  // where it can.
  virtual void serverClosing(Connection& c, ServerClose why) { (void)c, (void)why; }
};

}  // namespace tern::broker
