// LineProtocol: the line protocol's side of a worker (docs/protocol.md): frames in, requests acted
// on, MESSAGE/RETAINED frames out. Framing is protocol::nextLineFrame and parsing
// protocol::parseLineRequest; this class holds what depends on state: sessions and their three
// sockets, hand-overs to the session's home worker, takeover, replies, pushes, and STATS.
//
// Ownership: one per Worker, beside its WorkerCore. Threads: the worker's own thread only.
#pragma once

#include <string_view>

#include "protocol_handler.hpp"
#include "tern/protocol/line_request.hpp"
#include "worker_core.hpp"

namespace tern::broker {

class LineProtocol final : public ProtocolHandler {
 public:
  explicit LineProtocol(WorkerCore& core) : core_(core) {}

  InputState onInput(Connection& c, std::string_view data, std::size_t searched,
                     common::FunctionRef<void(std::size_t)> commit) override;
  // Queues a MESSAGE (or RETAINED) frame for `s`: every line frame that carries a message is
  // written here, after the framing check (Message::lineSafe).
  bool deliver(Session& s, const common::Message& message, unsigned grantedQos, bool retained,
               SharedRoute route) override;
  bool takeForJob(Connection& c, Job& job, const common::Message& message) override;
  void connectionGone(Session& s, Connection& c) override;
  void onDurable(Connection& c, const HeldAck& ack) override;
  void sessionEnding(Session& s, Connection* (&sockets)[3]) override;

 private:
  // What a frame handler did with the connection.
  // kHeld: the frame waits where it is (a CONNECT whose credentials are being checked).
  enum class Outcome { kDone, kHandedOver, kHeld };

  Outcome onFrame(Connection& c, std::string_view frame);
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

  WorkerCore& core_;
};

}  // namespace tern::broker
