#include "worker_core.hpp"

#include "tern/common/clock.hpp"
#include "tern/common/log.hpp"

namespace tern::broker {

WorkerCore::WorkerCore(BrokerContext& brokerContext, unsigned workerIndex, unsigned workerCount,
                       ConnectionIo& connectionIo)
    : context(brokerContext),
      config(brokerContext.config),
      index(workerIndex),
      memoryBudget(brokerContext.memoryClaimed, brokerContext.config.memoryLimit, workerCount),
      io(connectionIo),
      sessions(brokerContext, workerIndex, workerCount, stats, memory),
      fanout(brokerContext, workerIndex, workerCount),
      jobs(*this) {}

bool WorkerCore::publish(common::MessageRef message, Protocol from) {
  WorkerStats::add(stats.received, std::uint64_t{1});
  if (message->retain()) {
    if (message->contents().empty()) {
      context.retained.erase(message->topic());
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
    }
  }
  route(*message);
  return true;
}

void WorkerCore::route(const common::Message& message) {
  fanout.route(message,
               [this](routing::SubscriberId id, const common::Message& m) { deliverTo(id, m); });
}

void WorkerCore::deliverTo(routing::SubscriberId id, const common::Message& message) {
  if (Session* s = sessions.find(id)) handler(s->protocol).deliver(*s, message, id.qos(), false);
}

void WorkerCore::endSession(Session& s) {
  if (s.ended) return;
  s.ended = true;
  for (const auto& [filter, qos] : s.filters)
    context.trie.unsubscribe(filter, s.id);
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

bool WorkerCore::isReservedTopic(std::string_view topic) noexcept {
  return topic == "$SYS" || topic.substr(0, 5) == "$SYS/";
}

}  // namespace tern::broker
