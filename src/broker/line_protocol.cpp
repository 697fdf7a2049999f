#include "line_protocol.hpp"

#include <fmt/format.h>

#include "tern/common/clock.hpp"
#include "tern/common/log.hpp"
#include "tern/net/acceptor.hpp"
#include "tern/protocol/json_writer.hpp"
#include "tern/protocol/line_framing.hpp"
#include "worker.hpp"
#include "worker_totals.hpp"

namespace tern::broker {

using protocol::LineError;
using protocol::LineRequest;
using protocol::LineType;

namespace {

bool isType(std::string_view frame, std::string_view upper) noexcept {
  const std::string_view type = frame.substr(0, frame.find('@'));
  if (type.size() != upper.size()) return false;
  for (std::size_t i = 0; i < type.size(); ++i) {
    char c = type[i];
    if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
    if (c != upper[i]) return false;
  }
  return true;
}

}  // namespace

void LineProtocol::reply(Connection& c, std::string_view frame) {
  core_.io.output(c).append(frame, "\n");
  core_.io.send(c);
}

void LineProtocol::replyError(Connection& c, LineError error, std::string_view text) {
  core_.scratch.clear();
  fmt::format_to(std::back_inserter(core_.scratch), "ERROR@{}@{}", protocol::errorCode(error),
                 text);
  reply(c, core_.scratch);
}

LineProtocol::Outcome LineProtocol::onFrame(Connection& c, std::string_view frame) {
  switch (c.role) {
    case SocketRole::kUnbound:
      return onUnboundFrame(c, frame);
    case SocketRole::kPush:
      if (isType(frame, "PING") && frame.find('@') == std::string_view::npos) {
        reply(c, "PONG");
      } else {
        replyError(c, LineError::kBadRequest, "the push socket accepts only PING");
      }
      return Outcome::kDone;
    case SocketRole::kRequest:
      break;
    case SocketRole::kMqtt:
      return Outcome::kDone;  // never: MQTT connections are decoded by processMqttInput
  }
  if (c.session == nullptr) return Outcome::kDone;  // session ended; the socket is closing
  const protocol::LineParse parsed = protocol::parseLineRequest(frame);
  if (parsed.error != LineError::kNone) {
    replyError(c, parsed.error, parsed.errorText);
    return Outcome::kDone;
  }
  onRequest(c, parsed.request);
  return Outcome::kDone;
}

LineProtocol::Outcome LineProtocol::onUnboundFrame(Connection& c, std::string_view frame) {
  if (!isType(frame, "CONNECT") && !isType(frame, "ATTACH")) {
    replyError(c, LineError::kNotConnected, "send CONNECT or ATTACH first");
    return Outcome::kDone;
  }
  const protocol::LineParse parsed = protocol::parseLineRequest(frame);
  if (parsed.error != LineError::kNone) {
    replyError(c, parsed.error, parsed.errorText);
    return Outcome::kDone;
  }
  if (parsed.request.type == LineType::kConnect) return onConnect(c, parsed.request);
  return onAttach(c, parsed.request);
}

LineProtocol::Outcome LineProtocol::onConnect(Connection& c, const LineRequest& request) {
  // --password-file: checked off the loop, then this CONNECT is handled again with the verdict
  // (before the hand-over, which carries an accepted verdict along).
  const WorkerCore::Credentials who =
      core_.credentials(c, request.hasCredentials, request.user, request.password);
  switch (core_.authenticate(c, who)) {
    case WorkerCore::AuthResult::kPending:
      return Outcome::kHeld;
    case WorkerCore::AuthResult::kRefused:
      // The socket stays open and unbound: the client may try again (after a growing delay).
      replyError(c, LineError::kNotAuthorized,
                 who.byCertificate        ? "a client certificate is required "
                                            "(--use-identity-as-username)"
                 : request.hasCredentials ? "bad user or password"
                                          : "a user and password are required "
                                            "(CONNECT@<client-id>@<user>@<password>)");
      return Outcome::kDone;
    case WorkerCore::AuthResult::kAccepted:
      break;
  }
  if (request.hasSubject) {
    const unsigned home = core_.sessions.homeWorker(request.subject);
    if (home != core_.index) {
      core_.io.handOver(c, home);
      return Outcome::kHandedOver;
    }
  }
  std::string clientId = request.hasSubject ? std::string(request.subject)
                                            : core_.sessions.newClientId(Protocol::kLine);
  if (Session* old = core_.sessions.findLine(clientId)) {
    TERN_LOG_INFO("session {} taken over by a new CONNECT", clientId);
    core_.endSession(*old);
  }
  Session* s = core_.sessions.create(std::move(clientId), Protocol::kLine);
  if (s == nullptr) {
    // The socket stays open and unbound: the client may try again later.
    replyError(c, LineError::kServerBusy, "too many sessions (--max-sessions)");
    return Outcome::kDone;
  }
  core_.setAcl(*s, who.user);
  s->identity = c.identity();
  s->request[0] = &c;
  c.role = SocketRole::kRequest;
  c.session = s;
  core_.scratch.clear();
  fmt::format_to(std::back_inserter(core_.scratch), "CONNACK@{}@{}", s->clientId, s->token);
  reply(c, core_.scratch);
  return Outcome::kDone;
}

LineProtocol::Outcome LineProtocol::onAttach(Connection& c, const LineRequest& request) {
  const int worker = SessionTable::tokenWorker(request.subject);
  if (worker < 0 || static_cast<unsigned>(worker) >= core_.config.workers) {
    replyError(c, LineError::kBadToken, "unknown token");
    core_.io.closeAfterFlush(c);
    return Outcome::kDone;
  }
  if (static_cast<unsigned>(worker) != core_.index) {
    core_.io.handOver(c, static_cast<unsigned>(worker));
    return Outcome::kHandedOver;
  }
  Session* found = core_.sessions.findToken(request.subject);
  if (found == nullptr) {
    replyError(c, LineError::kBadToken, "unknown token");
    core_.io.closeAfterFlush(c);
    return Outcome::kDone;
  }
  Session& s = *found;
  if (!s.identity.empty() && c.identity() != s.identity) {
    // The session's CONNECT socket presented a client certificate: a socket that joins it must
    // present one with the same name. Unbound and open, like a refused CONNECT.
    WorkerStats::add(core_.stats.refusedAuth, std::uint64_t{1});
    replyError(c, LineError::kNotAuthorized,
               "this session's sockets must present the client certificate of its CONNECT "
               "socket");
    return Outcome::kDone;
  }
  if (request.role == protocol::AttachRole::kRequest) {
    Connection** slot = s.request[0] == nullptr   ? &s.request[0]
                        : s.request[1] == nullptr ? &s.request[1]
                                                  : nullptr;
    if (slot == nullptr) {
      replyError(c, LineError::kTooManySockets, "the session already has 2 request sockets");
      core_.io.closeAfterFlush(c);
      return Outcome::kDone;
    }
    *slot = &c;
    c.role = SocketRole::kRequest;
    c.session = &s;
    reply(c, "ATTACHACK@request");
    return Outcome::kDone;
  }
  if (s.push != nullptr) {
    replyError(c, LineError::kTooManySockets, "the session already has a push socket");
    core_.io.closeAfterFlush(c);
    return Outcome::kDone;
  }
  s.push = &c;
  c.role = SocketRole::kPush;
  c.session = &s;
  reply(c, "ATTACHACK@push");
  core_.io.output(c).takeFrom(s.pending);  // what was queued before the push socket attached
  s.pending.releaseIfIdle(0);
  core_.io.send(c);
  core_.jobs.wakeIfRoom();  // a replay may have waited for this queue to empty
  return Outcome::kDone;
}

void LineProtocol::onRequest(Connection& c, const LineRequest& request) {
  switch (request.type) {
    case LineType::kConnect:
    case LineType::kAttach:
      replyError(c, LineError::kBadRequest, "this socket is already bound to a session");
      return;
    case LineType::kPublish:
      onPublish(c, request);
      return;
    case LineType::kSubscribe:
      onSubscribe(c, request);
      return;
    case LineType::kUnsubscribe:
      onUnsubscribe(c, request);
      return;
    case LineType::kList:
      onList(c, request);
      return;
    case LineType::kPing:
      reply(c, "PONG");
      return;
    case LineType::kStats:
      onStats(c);
      return;
    case LineType::kDisconnect: {
      reply(c, "DISCONNACK");
      core_.endSession(*c.session);  // closes every socket of the session once flushed
      return;
    }
  }
}

void LineProtocol::onPublish(Connection& c, const LineRequest& request) {
  if (WorkerCore::isReservedTopic(request.subject)) {
    WorkerStats::add(core_.stats.refusedSysTopic, std::uint64_t{1});
    replyError(c, LineError::kBadTopic, "$SYS topics are the broker's");
    return;
  }
  if (!core_.mayWrite(*c.session, request.subject)) {
    WorkerStats::add(core_.stats.refusedAcl, std::uint64_t{1});
    replyError(c, LineError::kNotAuthorized, "no write access to this topic (--acl-file)");
    return;
  }
  // A retained publish with empty contents deletes, and delivers nothing.
  std::uint64_t ticket = 0;
  if (!core_.publish(
          common::Message::makeFromLine(request.subject, request.contents, request.retain),
          Protocol::kLine, &ticket)) {
    replyError(c, LineError::kServerBusy,
               "the retained store is full (--max-retained-messages, --max-retained-bytes): "
               "not published");
    return;
  }
  if (ticket == StoreLink::kUnstorable) {
    replyError(c, LineError::kStorage,
               "delivered, but its topic is too long to be kept in the data directory (at most "
               "65535 bytes): not retained across a restart");
    return;
  }
  if (ticket != 0 && core_.store.holdsAcks()) {
    // --durability sync: the PUBACK once the write is on disk; this socket's next requests wait.
    HeldAck ack;
    ack.after = ticket - 1;
    ack.ticket = ticket;
    core_.store.hold(c, ack);
  } else {
    reply(c, "PUBACK");
  }
  if (core_.store.backlogged()) core_.store.stall(c);
}

void LineProtocol::onDurable(Connection& c, const HeldAck& ack) {
  if (ack.ok) {
    reply(c, "PUBACK");
    return;
  }
  // Delivered live and retained in memory, but not on disk: the client is told, and may publish
  // it again.
  replyError(c, LineError::kStorage,
             "the data directory could not store this retained publish (see the broker's "
             "log): not acknowledged");
}

void LineProtocol::onSubscribe(Connection& c, const LineRequest& request) {
  Session& s = *c.session;
  std::string filter = protocol::normalizeFilter(request.subject);
  if (s.filters.find(filter) != s.filters.end()) {
    reply(c, "SUBACK");  // already subscribed: a no-op
    return;
  }
  if (!core_.maySubscribe(s, filter)) {
    WorkerStats::add(core_.stats.refusedAcl, std::uint64_t{1});
    replyError(c, LineError::kNotAuthorized, "no read access to this filter (--acl-file)");
    return;
  }
  if (s.filters.size() >= core_.config.maxSubscriptions) {
    WorkerStats::add(core_.stats.refusedSubscriptions, std::uint64_t{1});
    replyError(c, LineError::kTooManySubscriptions,
               "the session holds the most filters allowed (--max-subscriptions)");
    return;
  }
  if (!core_.subscribe(s, filter, 0)) {
    replyError(c, LineError::kServerBusy, "too many shared subscription groups");
    return;
  }
  reply(c, "SUBACK");
  // The retained messages follow, in slices (job.hpp); this socket's next request waits for them.
  // A shared subscription gets none: it is not the session's alone (MQTT 5.0 3.3.1.3 sends them
  // for non-shared subscriptions only).
  if (routing::parseSharedFilter(filter).kind == routing::SharedFilter::Kind::kNotShared) {
    core_.jobs.start(c,
                     Job(Job::Kind::kLineReplay, filter, routing::RetainedCursor::Scope::kFilter));
  }
  s.filters.emplace(std::move(filter), 0);
}

void LineProtocol::onUnsubscribe(Connection& c, const LineRequest& request) {
  Session& s = *c.session;
  const std::string filter = protocol::normalizeFilter(request.subject);
  if (s.filters.erase(filter) != 0) core_.unsubscribe(s, filter);
  reply(c, "UNSUBACK");
}

void LineProtocol::onList(Connection& c, const LineRequest& request) {
  // One LIST@{...} frame, streamed as the socket drains (job.hpp): the reply is never held whole,
  // and this socket's next request waits for it.
  if (request.hasSubject) {
    core_.jobs.start(c, Job(Job::Kind::kList, protocol::normalizeFilter(request.subject),
                            routing::RetainedCursor::Scope::kFilter));
  } else {
    core_.jobs.start(c, Job(Job::Kind::kList, {}, routing::RetainedCursor::Scope::kEverything));
  }
}

void LineProtocol::onStats(Connection& c) {
  std::int64_t sessions = 0;
  std::int64_t sockets = 0;
  std::uint64_t received = 0;
  std::uint64_t delivered = 0;
  std::uint64_t dropped = 0;
  std::uint64_t bufferBytes = 0;
  std::string perWorker;
  for (const auto& w : core_.context.workers) {
    const WorkerStats& st = w->stats();
    const auto load = [](const auto& counter) { return counter.load(std::memory_order_relaxed); };
    sessions += load(st.sessions);
    sockets += load(st.sockets);
    received += load(st.received);
    delivered += load(st.delivered);
    dropped += load(st.dropped);
    bufferBytes += load(st.bufferBytes);
    if (!perWorker.empty()) perWorker.push_back(',');
    fmt::format_to(std::back_inserter(perWorker),
                   "{{\"worker\":{},\"sessions\":{},\"sockets\":{},\"messages_received\":{},"
                   "\"messages_delivered\":{},\"messages_dropped\":{},\"buffer_bytes\":{}}}",
                   w->index(), load(st.sessions), load(st.sockets), load(st.received),
                   load(st.delivered), load(st.dropped), load(st.bufferBytes));
  }
  const auto sum = [this](const auto WorkerStats::*counter) {
    return sumWorkers(core_.context, counter);
  };
  const auto relaxed = [](const auto& counter) { return counter.load(std::memory_order_relaxed); };
  core_.scratch.clear();
  fmt::format_to(std::back_inserter(core_.scratch),
                 "STATS@{{\"sessions\":{},\"sockets\":{},\"subscriptions\":{},"
                 "\"shared_groups\":{},\"shared_memberships\":{},"
                 "\"messages_received\":{},\"messages_delivered\":{},\"messages_dropped\":{},"
                 "\"retained_messages\":{},\"retained_bytes\":{},\"buffer_bytes\":{},",
                 sessions, sockets, core_.context.trie.size(), core_.context.shared.groups(),
                 core_.context.shared.memberships(), received, delivered, dropped,
                 core_.context.retained.size(), core_.context.retained.bytes(), bufferBytes);
  // The limits of docs/limits.md: how often each was reached, and why deliveries were dropped.
  fmt::format_to(
      std::back_inserter(core_.scratch),
      "\"memory_bytes\":{},\"drops\":{{\"queue_full\":{},\"unframable\":{},\"memory_limit\":{},"
      "\"expired\":{},\"too_large\":{}}},"
      "\"limits\":{{\"max_connections\":{},\"max_connections_per_address\":{},"
      "\"max_unauthenticated_per_address\":{},"
      "\"out_of_descriptors\":{},\"max_sessions\":{},\"max_subscriptions\":{},"
      "\"max_retained\":{},\"sys_topic\":{},\"frame_timeout\":{},\"keep_alive\":{},"
      "\"max_awaiting_rel\":{},\"session_expiry\":{},\"not_authorized\":{},\"acl\":{}}},",
      sum(&WorkerStats::memoryBytes), sum(&WorkerStats::droppedQueueFull),
      sum(&WorkerStats::droppedUnframable), sum(&WorkerStats::droppedMemory),
      sum(&WorkerStats::droppedExpired), sum(&WorkerStats::droppedTooLarge),
      relaxed(core_.context.refusedConnections),
      relaxed(core_.context.refusedConnectionsPerAddress),
      relaxed(core_.context.refusedConnectionsUnauthenticated),
      core_.context.acceptor != nullptr ? core_.context.acceptor->shed() : 0,
      sum(&WorkerStats::refusedSessions), sum(&WorkerStats::refusedSubscriptions),
      sum(&WorkerStats::refusedRetained), sum(&WorkerStats::refusedSysTopic),
      sum(&WorkerStats::closedFrameTimeout), sum(&WorkerStats::closedKeepAlive),
      sum(&WorkerStats::closedAwaitingRelease), sum(&WorkerStats::expiredSessions),
      sum(&WorkerStats::refusedAuth), sum(&WorkerStats::refusedAcl));
  fmt::format_to(std::back_inserter(core_.scratch),
                 "\"tls\":{{\"handshakes\":{},\"failures\":{}}},\"workers\":[{}]}}",
                 sum(&WorkerStats::tlsHandshakes), sum(&WorkerStats::tlsFailures), perWorker);
  reply(c, core_.scratch);
}

InputState LineProtocol::onInput(Connection& c, std::string_view data, std::size_t searched,
                                 common::FunctionRef<void(std::size_t)> commit) {
  for (;;) {
    if (c.closing || c.closed || c.inputHeld()) return InputState::kStopped;
    if (data.empty()) return InputState::kMore;
    const protocol::LineFrame next = protocol::nextLineFrame(data, core_.config.maxLine, searched);
    searched = 0;  // the hint covers the first frame only
    if (next.status == protocol::LineFrame::Status::kNeedMore) return InputState::kMore;
    if (next.status == protocol::LineFrame::Status::kTooLong) {
      replyError(c, LineError::kTooLong, "frame longer than the limit (--max-line)");
      core_.io.closeAfterFlush(c);
      return InputState::kStopped;
    }
    // The frame stays in place while it is handled: a hand-over carries it along unconsumed.
    const Outcome outcome = next.frame.empty() ? Outcome::kDone : onFrame(c, next.frame);
    if (outcome == Outcome::kHandedOver) return InputState::kGone;
    if (outcome == Outcome::kHeld) return InputState::kStopped;
    commit(next.consumed);
    data.remove_prefix(next.consumed);
    if (core_.io.unsent(c) > core_.config.maxQueuedBytes && !c.closing) core_.io.pauseInput(c);
  }
}

bool LineProtocol::deliver(Session& s, const common::Message& message, unsigned /*grantedQos*/,
                           bool retained, SharedRoute route) {
  if (core_.expired(s, message)) return true;
  if (!message.lineSafe()) {
    if (route.mayDecline()) return false;  // another member of the group may take it
    // An MQTT message the line protocol cannot frame ('@' or LF in the topic, LF in the payload):
    // writing it would forge frames, so it is not delivered to line sessions, and counted as
    // dropped for them.
    core_.countDrop(s, core_.stats.droppedUnframable);
    return true;
  }
  const std::string_view prefix = retained ? "RETAINED@" : "MESSAGE@";
  const std::size_t queued = core_.pushTargetSize(s);
  if (queued + prefix.size() + message.lineTail().size() > core_.config.maxQueuedBytes) {
    if (route.mayDecline()) return false;
    if (s.dropped == 0) {
      TERN_LOG_WARN("session {}: push queue full ({} bytes): dropping messages until it drains",
                    s.clientId, queued);
    }
    core_.countDrop(s, core_.stats.droppedQueueFull);
    return true;
  }
  net::ByteBuffer& target = core_.pushTarget(s);
  if (!core_.admitsMemory(queued, target.growthFor(prefix.size() + message.lineTail().size()))) {
    if (route.mayDecline()) return false;
    core_.countDrop(s, core_.stats.droppedMemory);  // a consumer that keeps up is not held back
    return true;
  }
  target.append(prefix, message.lineTail());
  WorkerStats::add(core_.stats.delivered, std::uint64_t{1});
  if (s.push != nullptr) core_.io.send(*s.push);
  return true;
}

bool LineProtocol::takeForJob(Connection& c, Job& job, const common::Message& m) {
  Session& s = *c.session;
  // --acl-file: retained messages and LIST show only what the session may read.
  if (!core_.mayRead(s, m.topic())) return true;
  if (job.kind == Job::Kind::kLineReplay) {
    // Waits while the push queue is full instead of dropping (a message larger than the whole
    // bound goes to deliver(), which drops and counts it).
    const std::size_t queued = core_.pushTargetSize(s);
    if (queued != 0 && queued + 9 + m.lineTail().size() > core_.config.maxQueuedBytes) {
      // Woken when the push socket has sent it all, or when it attaches (the pending queue moves
      // to it then).
      job.waitingFor = Job::Wait::kOutput;
      if (s.push != nullptr) core_.io.notifyWhenDrained(*s.push);
      return false;
    }
    deliver(s, m, 0, true, {});
    return true;
  }
  // LIST: one member, streamed as the socket drains. A retained MQTT 5.0 message past its
  // Message Expiry Interval is no longer retained for anyone, LIST included.
  if (m.expiresAt() != 0 && m.expiresAt() <= common::monotonicNanos()) return true;
  if (core_.io.unsent(c) > core_.config.maxQueuedBytes / 2) {
    job.waitingFor = Job::Wait::kOutput;
    core_.io.notifyWhenDrained(c);
    return false;
  }
  std::string& member = core_.scratch;
  member.clear();
  if (job.listMembers) member.push_back(',');
  job.listMembers = true;
  protocol::appendJsonString(member, m.topic());
  member.push_back(':');
  protocol::appendJsonString(member, m.contents());
  core_.io.output(c).append(member);
  core_.io.send(c);
  if (member.capacity() > (1u << 20)) std::string().swap(member);
  return true;
}

void LineProtocol::connectionGone(Session& s, Connection& c) {
  if (s.request[0] == &c) s.request[0] = nullptr;
  if (s.request[1] == &c) s.request[1] = nullptr;
  if (s.push == &c) s.push = nullptr;
  if (s.socketCount() == 0) core_.endSession(s);
}

void LineProtocol::sessionEnding(Session& s, Connection* (&sockets)[3]) {
  sockets[0] = std::exchange(s.request[0], nullptr);
  sockets[1] = std::exchange(s.request[1], nullptr);
  sockets[2] = std::exchange(s.push, nullptr);
}

}  // namespace tern::broker
