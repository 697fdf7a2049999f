// The line protocol's requests, as docs/protocol.md defines them: the Worker methods that act on
// one parsed frame. Worker thread only.
#include <fmt/format.h>

#include "tern/common/log.hpp"
#include "tern/net/acceptor.hpp"
#include "worker.hpp"

namespace tern::broker {

using protocol::LineError;
using protocol::LineRequest;
using protocol::LineType;

namespace {

// The token's last four hex digits name the worker that owns the session; -1 if malformed.
int tokenWorker(std::string_view token) noexcept {
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

void Worker::reply(Connection& c, std::string_view frame) {
  c.out.append(frame, "\n");
  markDirty(c);
}

void Worker::replyError(Connection& c, LineError error, std::string_view text) {
  scratch_.clear();
  fmt::format_to(std::back_inserter(scratch_), "ERROR@{}@{}", protocol::errorCode(error), text);
  reply(c, scratch_);
}

Worker::Outcome Worker::onLineFrame(Connection& c, std::string_view frame) {
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

Worker::Outcome Worker::onUnboundFrame(Connection& c, std::string_view frame) {
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

Worker::Outcome Worker::onConnect(Connection& c, const LineRequest& request) {
  if (request.hasSubject) {
    const unsigned home = homeWorker(request.subject);
    if (home != index_) {
      handOver(c, home);
      return Outcome::kHandedOver;
    }
  }
  std::string clientId = request.hasSubject ? std::string(request.subject) : newClientId();
  if (auto it = byClientId_.find(clientId); it != byClientId_.end()) {
    TERN_LOG_INFO("session {} taken over by a new CONNECT", clientId);
    endSession(*it->second);
  }
  Session* s = createSession(std::move(clientId), Protocol::kLine);
  if (s == nullptr) {
    // The socket stays open and unbound: the client may try again later.
    replyError(c, LineError::kServerBusy, "too many sessions (--max-sessions)");
    return Outcome::kDone;
  }
  s->request[0] = &c;
  c.role = SocketRole::kRequest;
  c.session = s;
  scratch_.clear();
  fmt::format_to(std::back_inserter(scratch_), "CONNACK@{}@{}", s->clientId, s->token);
  reply(c, scratch_);
  return Outcome::kDone;
}

Worker::Outcome Worker::onAttach(Connection& c, const LineRequest& request) {
  const int worker = tokenWorker(request.subject);
  if (worker < 0 || static_cast<std::size_t>(worker) >= context_.workers.size()) {
    replyError(c, LineError::kBadToken, "unknown token");
    closeAfterFlush(c);
    return Outcome::kDone;
  }
  if (static_cast<unsigned>(worker) != index_) {
    handOver(c, static_cast<unsigned>(worker));
    return Outcome::kHandedOver;
  }
  const auto it = byToken_.find(std::string(request.subject));
  if (it == byToken_.end()) {
    replyError(c, LineError::kBadToken, "unknown token");
    closeAfterFlush(c);
    return Outcome::kDone;
  }
  Session& s = *it->second;
  if (request.role == protocol::AttachRole::kRequest) {
    Connection** slot = s.request[0] == nullptr   ? &s.request[0]
                        : s.request[1] == nullptr ? &s.request[1]
                                                  : nullptr;
    if (slot == nullptr) {
      replyError(c, LineError::kTooManySockets, "the session already has 2 request sockets");
      closeAfterFlush(c);
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
    closeAfterFlush(c);
    return Outcome::kDone;
  }
  s.push = &c;
  c.role = SocketRole::kPush;
  c.session = &s;
  reply(c, "ATTACHACK@push");
  c.out.takeFrom(s.pending);  // what was queued before the push socket attached
  s.pending.releaseIfIdle(0);
  return Outcome::kDone;
}

void Worker::onRequest(Connection& c, const LineRequest& request) {
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
      endSession(*c.session);  // closes every socket of the session once flushed
      return;
    }
  }
}

void Worker::onPublish(Connection& c, const LineRequest& request) {
  if (isReservedTopic(request.subject)) {
    WorkerStats::add(stats_.refusedSysTopic, std::uint64_t{1});
    replyError(c, LineError::kBadTopic, "$SYS topics are the broker's");
    return;
  }
  // A retained publish with empty contents deletes, and delivers nothing.
  if (!publish(common::Message::makeFromLine(request.subject, request.contents, request.retain),
               Protocol::kLine)) {
    replyError(c, LineError::kServerBusy,
               "the retained store is full (--max-retained-messages, --max-retained-bytes): "
               "not published");
    return;
  }
  reply(c, "PUBACK");
}

void Worker::onSubscribe(Connection& c, const LineRequest& request) {
  Session& s = *c.session;
  std::string filter = protocol::normalizeFilter(request.subject);
  if (s.filters.find(filter) != s.filters.end()) {
    reply(c, "SUBACK");  // already subscribed: a no-op
    return;
  }
  if (s.filters.size() >= config_.maxSubscriptions) {
    WorkerStats::add(stats_.refusedSubscriptions, std::uint64_t{1});
    replyError(c, LineError::kTooManySubscriptions,
               "the session holds the most filters allowed (--max-subscriptions)");
    return;
  }
  context_.trie.subscribe(filter, s.id);
  reply(c, "SUBACK");
  // The retained messages follow, in slices (job.hpp); this socket's next request waits for them.
  startJob(c, Job(Job::Kind::kLineReplay, filter, routing::RetainedCursor::Scope::kFilter));
  s.filters.emplace(std::move(filter), 0);
}

void Worker::onUnsubscribe(Connection& c, const LineRequest& request) {
  Session& s = *c.session;
  const std::string filter = protocol::normalizeFilter(request.subject);
  if (s.filters.erase(filter) != 0) context_.trie.unsubscribe(filter, s.id);
  reply(c, "UNSUBACK");
}

void Worker::onList(Connection& c, const LineRequest& request) {
  // One LIST@{...} frame, streamed as the socket drains (job.hpp): the reply is never held whole,
  // and this socket's next request waits for it.
  if (request.hasSubject) {
    startJob(c, Job(Job::Kind::kList, protocol::normalizeFilter(request.subject),
                    routing::RetainedCursor::Scope::kFilter));
  } else {
    startJob(c, Job(Job::Kind::kList, {}, routing::RetainedCursor::Scope::kEverything));
  }
}

void Worker::onStats(Connection& c) {
  std::int64_t sessions = 0;
  std::int64_t sockets = 0;
  std::uint64_t received = 0;
  std::uint64_t delivered = 0;
  std::uint64_t dropped = 0;
  std::uint64_t bufferBytes = 0;
  std::string perWorker;
  for (const auto& w : context_.workers) {
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
    std::int64_t total = 0;
    for (const auto& w : context_.workers)
      total += static_cast<std::int64_t>((w->stats().*counter).load(std::memory_order_relaxed));
    return total;
  };
  const auto relaxed = [](const auto& counter) { return counter.load(std::memory_order_relaxed); };
  scratch_.clear();
  fmt::format_to(std::back_inserter(scratch_),
                 "STATS@{{\"sessions\":{},\"sockets\":{},\"subscriptions\":{},"
                 "\"messages_received\":{},\"messages_delivered\":{},\"messages_dropped\":{},"
                 "\"retained_messages\":{},\"retained_bytes\":{},\"buffer_bytes\":{},",
                 sessions, sockets, context_.trie.size(), received, delivered, dropped,
                 context_.retained.size(), context_.retained.bytes(), bufferBytes);
  // The limits of docs/limits.md: how often each was reached, and why deliveries were dropped.
  fmt::format_to(
      std::back_inserter(scratch_),
      "\"memory_bytes\":{},\"drops\":{{\"queue_full\":{},\"unframable\":{},\"memory_limit\":{}}},"
      "\"limits\":{{\"max_connections\":{},\"max_connections_per_address\":{},"
      "\"out_of_descriptors\":{},\"max_sessions\":{},\"max_subscriptions\":{},"
      "\"max_retained\":{},\"sys_topic\":{},\"frame_timeout\":{},\"keep_alive\":{},"
      "\"max_awaiting_rel\":{},\"session_expiry\":{}}},",
      sum(&WorkerStats::memoryBytes), sum(&WorkerStats::droppedQueueFull),
      sum(&WorkerStats::droppedUnframable), sum(&WorkerStats::droppedMemory),
      relaxed(context_.refusedConnections), relaxed(context_.refusedConnectionsPerAddress),
      context_.acceptor != nullptr ? context_.acceptor->shed() : 0,
      sum(&WorkerStats::refusedSessions), sum(&WorkerStats::refusedSubscriptions),
      sum(&WorkerStats::refusedRetained), sum(&WorkerStats::refusedSysTopic),
      sum(&WorkerStats::closedFrameTimeout), sum(&WorkerStats::closedKeepAlive),
      sum(&WorkerStats::closedAwaitingRelease), sum(&WorkerStats::expiredSessions));
  fmt::format_to(std::back_inserter(scratch_), "\"workers\":[{}]}}", perWorker);
  reply(c, scratch_);
}

}  // namespace tern::broker
