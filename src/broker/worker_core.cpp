#include "worker_core.hpp"

#include "authenticator.hpp"
#include "tern/common/clock.hpp"
#include "tern/common/log.hpp"
#include "worker.hpp"

namespace tern::broker {

WorkerCore::WorkerCore(BrokerContext& brokerContext, unsigned workerIndex, unsigned workerCount,
                       ConnectionIo& connectionIo)
    : context(brokerContext),
      config(brokerContext.config),
      index(workerIndex),
      memoryBudget(brokerContext.memoryClaimed, brokerContext.config.memoryLimit, workerCount),
      io(connectionIo),
      sessions(brokerContext, workerIndex, workerCount, stats, memory),
      store(brokerContext.store.get(), workerIndex),
      fanout(brokerContext, workerIndex, workerCount),
      jobs(*this) {
  store.setMessageIds(&brokerContext.nextMessageId);
}

bool WorkerCore::publish(common::MessageRef message, Protocol from, std::uint64_t* ticket) {
  WorkerStats::add(stats.received, std::uint64_t{1});
  if (ticket != nullptr) *ticket = 0;
  if (message->retain()) {
    if (message->contents().empty()) {
      context.retained.erase(message->topic());
      if (store.enabled()) {
        const std::uint64_t written = store.writeRetained(*message);
        if (ticket != nullptr) *ticket = written;
      }
      // The line protocol's delete delivers nothing; MQTT delivers the empty message
      // [MQTT-3.3.1-10/11].
      if (from == Protocol::kLine) return true;
    } else if (context.retained.set(common::MessageRef::share(message.get())) ==
               routing::RetainedStore::SetResult::kRefused) {
      WorkerStats::add(stats.refusedRetained, std::uint64_t{1});
      if (const std::uint64_t times = limitLog.admit(common::monotonicNanos())) {
        TERN_LOG_WARN(
            "retained store full ({} messages, {} bytes; --max-retained-messages, "
            "--max-retained-bytes): {} retained publish(es) not stored",
            context.retained.size(), context.retained.bytes(), times);
      }
      // The line protocol answers with an error and delivers nothing; MQTT 3.1.1 has no way to
      // say it, so the message is delivered live without being retained.
      if (from == Protocol::kLine) return false;
      route(*message);
      return false;
    } else if (store.enabled()) {
      const std::uint64_t written = store.writeRetained(*message);
      if (ticket != nullptr) *ticket = written;
    }
  }
  route(*message);
  return true;
}

void WorkerCore::publishOwn(common::MessageRef message) {
  context.retained.set(common::MessageRef::share(message.get()));
  route(*message);
}

void WorkerCore::route(const common::Message& message) {
  fanout.route(message, [this](routing::SubscriberId id, const common::Message& m, SharedRoute r) {
    deliverTo(id, m, r);
  });
}

void WorkerCore::postResolved(const common::Message& message) {
  for (unsigned w = 0; w < context.workers.size(); ++w) {
    if (w == index) continue;
    InboxItem item;
    item.kind = InboxItem::Kind::kResolved;
    message.addRefs(1);
    item.message = &message;
    context.workers[w]->post(std::move(item));
  }
}

void WorkerCore::deliverTo(routing::SubscriberId id, const common::Message& message,
                           SharedRoute route) {
  Session* s = sessions.find(id);
  // --acl-file: a subscription overlapping a deny rule does not get the topics it denies.
  const auth::Acl* acl = s != nullptr ? aclOf(*s) : nullptr;
  if (acl != nullptr && acl->readsNeedChecks() && !acl->mayRead(message.topic())) {
    s = nullptr;  // as if gone: a shared delivery goes to another member
  }
  if (s != nullptr && handler(s->protocol).deliver(*s, message, id.qos(), false, route)) return;
  if (!route.shared()) return;  // an ordinary delivery to a session that ended
  // Declined (no room) or gone: another member's turn. When there is none, a member that
  // declined takes it after all, like any delivery (queued or dropped and counted).
  const auto local = [this](routing::SubscriberId to, const common::Message& m, SharedRoute r) {
    deliverTo(to, m, r);
  };
  if (route.mayDecline() && fanout.reroute(message, route.declined(), id, local)) return;
  if (s != nullptr) handler(s->protocol).deliver(*s, message, id.qos(), false, route.last());
}

void WorkerCore::redistribute(const common::Message& message, SharedRoute route,
                              routing::SubscriberId from) {
  fanout.reroute(message, route.restarted(), from,
                 [this](routing::SubscriberId to, const common::Message& m, SharedRoute r) {
                   deliverTo(to, m, r);
                 });
}

bool WorkerCore::subscribe(Session& s, std::string_view filter, unsigned qos) {
  const routing::SharedFilter shared = routing::parseSharedFilter(filter);
  if (shared.kind != routing::SharedFilter::Kind::kShared) {
    context.trie.subscribe(filter, s.id.withQos(qos));
    return true;
  }
  return context.shared.join(shared.name, shared.filter, s.id.withQos(qos)) !=
         routing::SharedGroups::JoinResult::kFull;
}

void WorkerCore::unsubscribe(Session& s, std::string_view filter) {
  const routing::SharedFilter shared = routing::parseSharedFilter(filter);
  if (shared.kind != routing::SharedFilter::Kind::kShared) {
    context.trie.unsubscribe(filter, s.id);
  } else {
    context.shared.leave(shared.name, shared.filter, s.id);
  }
}

void WorkerCore::endSession(Session& s) {
  if (s.ended) return;
  s.ended = true;
  for (const auto& [filter, qos] : s.filters)
    unsubscribe(s, filter);
  s.filters.clear();
  if (s.dropped != 0) {
    TERN_LOG_WARN("session {} ended; {} messages were dropped for it (queue full)", s.clientId,
                  s.dropped);
  }
  Connection* sockets[3] = {nullptr, nullptr, nullptr};
  handler(s.protocol).sessionEnding(s, sockets);
  for (Connection* c : sockets) {
    if (c == nullptr) continue;
    c->session = nullptr;
    io.closeAfterFlush(*c);
  }
  sessions.remove(s);
}

void WorkerCore::connectionGone(Connection& c) {
  Session* s = c.session;
  if (s == nullptr) return;
  c.session = nullptr;
  handler(s->protocol).connectionGone(*s, c);
}

void WorkerCore::countDrop(Session& s, std::atomic<std::uint64_t>& reason) {
  ++s.dropped;
  WorkerStats::add(stats.dropped, std::uint64_t{1});
  WorkerStats::add(reason, std::uint64_t{1});
  if (&reason == &stats.droppedMemory) {
    if (const std::uint64_t times = memoryLog.admit(common::monotonicNanos())) {
      TERN_LOG_WARN("memory limit ({} bytes, --memory-limit) reached: dropped {} deliveries",
                    config.memoryLimit, times);
    }
  }
}

WorkerCore::AuthResult WorkerCore::authenticate(Connection& c, const Credentials& who) {
  if (who.byCertificate) {
    // The TLS handshake verified the certificate against --tls-ca; its name is the user.
    if (who.user) return AuthResult::kAccepted;
    WorkerStats::add(stats.refusedAuth, std::uint64_t{1});
    return AuthResult::kRefused;
  }
  if (context.auth == nullptr) return AuthResult::kAccepted;  // no --password-file
  const bool hasUser = who.user.has_value();
  const std::string_view user = who.user.value_or(std::string_view{});
  const std::string_view password = who.password;
  switch (c.auth) {
    case Connection::Auth::kAccepted:
      return AuthResult::kAccepted;
    case Connection::Auth::kRefused:
      c.auth = Connection::Auth::kNone;
      WorkerStats::add(stats.refusedAuth, std::uint64_t{1});
      return AuthResult::kRefused;
    case Connection::Auth::kPending:
      return AuthResult::kPending;
    case Connection::Auth::kNone:
      break;
  }
  if (!hasUser && config.anonymousAllowed()) {
    c.auth = Connection::Auth::kAccepted;
    return AuthResult::kAccepted;
  }
  c.auth = Connection::Auth::kPending;
  c.heldByAuth = true;
  Authenticator::Request request;
  request.worker = index;
  request.socket = c.socket;
  request.attempt = ++c.authAttempt;
  request.peer = c.peer;
  request.hasUser = hasUser;
  request.user.assign(user);
  request.password.assign(password);
  context.auth->submit(std::move(request));
  return AuthResult::kPending;
}

bool WorkerCore::authVerdict(Connection& c, std::uint32_t attempt, bool accepted) {
  if (c.closed || c.closing || c.auth != Connection::Auth::kPending || c.authAttempt != attempt) {
    return false;
  }
  c.auth = accepted ? Connection::Auth::kAccepted : Connection::Auth::kRefused;
  c.heldByAuth = false;
  return true;
}

std::unique_ptr<const auth::Acl> WorkerCore::aclFor(std::optional<std::string_view> user,
                                                    std::string_view clientId) const {
  // Valid while this worker is online (QSBR): a reload retires the file it replaces.
  const auth::AclFile* file = context.acl.load(std::memory_order_acquire);
  if (file == nullptr) return nullptr;
  return std::make_unique<const auth::Acl>(file->compile(user, clientId));
}

void WorkerCore::setAcl(Session& s, std::optional<std::string_view> user) {
  // The generation first: the file loaded after it is at least that new.
  s.aclGeneration = context.aclGeneration.load(std::memory_order_acquire);
  if (user) {
    s.aclUser.emplace(*user);
  } else {
    s.aclUser.reset();
  }
  s.acl = aclFor(s.aclUser, s.clientId);
}

bool WorkerCore::maySubscribe(Session& s, std::string_view subscription) {
  const auth::Acl* acl = aclOf(s);
  return acl == nullptr || acl->maySubscribe(routing::effectiveFilter(subscription));
}

bool WorkerCore::isReservedTopic(std::string_view topic) noexcept {
  return topic == "$SYS" || topic.substr(0, 5) == "$SYS/";
}

}  // namespace tern::broker
