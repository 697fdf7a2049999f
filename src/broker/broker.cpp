#include "tern/broker/broker.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <memory>
#include <optional>
#include <stdexcept>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include <fmt/format.h>

#include <sys/socket.h>
#include <unistd.h>

#include "authenticator.hpp"
#include "broker_context.hpp"
#include "metrics_server.hpp"
#include "session_table.hpp"
#include "tern/common/clock.hpp"
#include "tern/common/log.hpp"
#include "tern/net/acceptor.hpp"
#include "tern/net/socket.hpp"
#include "tern/persist/publish_rollback.hpp"
#include "tern/sync/qsbr.hpp"
#include "worker.hpp"

namespace tern::broker {
namespace {

// Listener tags: the protocol, and whether the listener speaks TLS and WebSockets.
constexpr int kTlsTag = 2;
constexpr int kWsTag = 4;

net::TlsContext::Made makeTlsContext(const Config& config) {
  net::TlsOptions options;
  options.certFile = config.tlsCert;
  options.keyFile = config.tlsKey;
  options.caFile = config.tlsCa;
  options.requireClientCert = config.requireClientCert;
  return net::TlsContext::make(net::TlsContext::Side::kServer, options);
}

// The files a start reads (--password-file, --acl-file, the TLS certificate, key and CA), each
// loaded once: by the constructor, which keeps them, and by checkFiles, which only reports.
struct StartupFiles {
  std::optional<auth::PasswordFile> passwords;
  std::optional<auth::AclFile> acl;
  std::shared_ptr<net::TlsContext> tls;
  std::string problem;  // the first file that does not load; empty when all did
};

StartupFiles loadStartupFiles(const Config& config) {
  StartupFiles files;
  if (!config.passwordFile.empty()) {
    auth::PasswordFile::Loaded loaded = auth::PasswordFile::load(config.passwordFile);
    if (!loaded.file) {
      files.problem = "--password-file: " + loaded.error;
      return files;
    }
    files.passwords = std::move(loaded.file);
  }
  if (!config.aclFile.empty()) {
    auth::AclFile::Loaded loaded = auth::AclFile::load(config.aclFile);
    if (!loaded.file) {
      files.problem = "--acl-file: " + loaded.error;
      return files;
    }
    files.acl = std::move(loaded.file);
  }
  if (config.tlsEnabled()) {
    net::TlsContext::Made made = makeTlsContext(config);
    if (!made.context) {
      files.problem = made.error;
      return files;
    }
    files.tls = std::move(made.context);
  }
  return files;
}

}  // namespace

Broker::Broker(const Config& config) : context_(std::make_unique<BrokerContext>(config)) {
  StartupFiles files = loadStartupFiles(config);
  if (!files.problem.empty()) throw std::runtime_error(files.problem);
  if (files.passwords) {
    TERN_LOG_INFO("{} user(s) in {}; anonymous clients {}", files.passwords->entries().size(),
                  config.passwordFile, config.anonymousAllowed() ? "accepted" : "refused");
    context_->auth = std::make_unique<Authenticator>(*context_, std::move(*files.passwords));
  }
  if (files.acl) {
    TERN_LOG_INFO("ACL rules for {} user(s) in {}; what they do not grant is denied",
                  files.acl->users(), config.aclFile);
    context_->acl.store(new auth::AclFile(std::move(*files.acl)), std::memory_order_release);
  }
  if (files.tls) context_->replaceTlsContext(std::move(files.tls));
  if (!config.dataDir.empty()) openStore();
  for (unsigned i = 0; i < config.workers; ++i) {
    context_->workers.push_back(std::make_unique<Worker>(*context_, i));
  }
  if (context_->store != nullptr) {
    restoreSessions();
    for (unsigned i = 0; i < config.workers; ++i) {
      Worker* worker = context_->workers[i].get();
      context_->store->setWaker(i, [worker] { worker->wake(); });
    }
  }
}

void Broker::restoreSessions() {
  const Config& config = context_->config;
  persist::Store& store = *context_->store;
  const std::int64_t began = common::monotonicNanos();
  const common::DeadlineClocks clocks;
  // Messages first (the queues name them), then the sessions, each handed to its home worker.
  std::unordered_map<std::uint64_t, MqttProtocol::RestoredMessage> messages;
  std::vector<persist::MessageRecord> named;  // messages of QoS 2 publishes (no payload kept)
  std::uint64_t maxId = 0;
  const persist::LoadStats loadedMessages = store.loadMessages([&](persist::MessageRecord&& r) {
    std::int64_t expiresAt = 0;
    if (r.expiryUnixMs != 0) {
      // An expired one is still restored: its queue entry is dropped when it comes to be sent.
      const std::int64_t left = clocks.millisUntil(r.expiryUnixMs);
      expiresAt = left > 0 ? clocks.monotonicIn(left) : 1;
    }
    maxId = std::max({maxId, r.id, r.publishSerial});
    messages.emplace(r.id, MqttProtocol::RestoredMessage{
                               common::Message::make5(r.topic, r.payload, r.retain, r.qos,
                                                      r.properties, expiresAt, 0),
                               false});
    if (r.publishSerial != 0) {
      r.payload.clear();
      r.properties.clear();
      named.push_back(std::move(r));
    }
  });
  if (!loadedMessages.ok()) throw std::runtime_error(loadedMessages.error);
  const unsigned workers = static_cast<unsigned>(context_->workers.size());
  std::vector<std::vector<persist::LoadedSession>> homed(workers);
  const persist::LoadStats loadedSessions = store.loadSessions([&](persist::LoadedSession&& s) {
    for (const persist::InboundQos2& in : s.inbound)
      maxId = std::max(maxId, in.serial);
    homed[SessionTable::homeOf(s.session.clientId, workers)].push_back(std::move(s));
  });
  if (!loadedSessions.ok()) throw std::runtime_error(loadedSessions.error);
  // Ids and serials come from one counter, above every one on disk.
  context_->nextMessageId.store(maxId + 1, std::memory_order_relaxed);

  // Deliveries of QoS 2 publishes whose packet id never reached the disk: their publishers will
  // send them again, so they are erased here, in one synced write before anything else is
  // written (persist::PublishRollback). Sessions written before tern kept a resolved-through
  // serial get one now.
  persist::PublishRollback rollback;
  for (const auto& sessions : homed) {
    for (const persist::LoadedSession& s : sessions)
      rollback.addPublisher(s);
  }
  std::unordered_set<std::uint64_t> rolledBack;
  for (const persist::MessageRecord& m : named) {
    if (rollback.rollsBack(m)) rolledBack.insert(m.id);
  }
  persist::WriteRequest corrections;
  std::uint64_t rolledBackEntries = 0;
  for (auto& sessions : homed) {
    for (persist::LoadedSession& s : sessions) {
      if (!rolledBack.empty()) {
        std::erase_if(s.queue, [&](const persist::QueueEntry& e) {
          if (e.state == persist::QueueState::kReleasePending || !rolledBack.contains(e.messageId))
            return false;
          corrections.eraseQueueEntry(e.clientId, e.sequence);
          ++rolledBackEntries;
          return true;
        });
      }
      if (persist::PublishRollback::resolvedThrough(s) == 0) {
        persist::InboundQos2 through{s.session.clientId, 0, context_->nextMessageId.fetch_add(1),
                                     true};
        corrections.put(through);
        s.inbound.insert(s.inbound.begin(), std::move(through));
      }
    }
  }
  if (!corrections.ops().empty()) {
    if (std::string error = store.writeNow(corrections); !error.empty()) {
      throw std::runtime_error(error);
    }
  }

  std::unordered_map<std::uint64_t, unsigned> referencedBy;  // message id -> the first worker
  std::uint64_t missing = 0;
  for (unsigned w = 0; w < workers; ++w) {
    for (const persist::LoadedSession& s : homed[w]) {
      for (const persist::QueueEntry& e : s.queue) {
        if (e.state == persist::QueueState::kReleasePending) continue;
        const auto m = messages.find(e.messageId);
        if (m == messages.end()) {
          ++missing;
          continue;
        }
        const auto [first, fresh] = referencedBy.emplace(e.messageId, w);
        if (!fresh && first->second != w) m->second.pinned = true;
      }
    }
  }
  // Messages no queue names any more (a crash between the last reference's erasure and the
  // record's, which are one request, cannot leave one; a session that ended can, and so does a
  // rollback): erased.
  std::uint64_t unreferenced = 0;
  for (auto it = messages.begin(); it != messages.end();) {
    if (referencedBy.count(it->first) == 0) {
      persist::WriteRequest erase;
      erase.eraseMessage(it->first);
      store.tryPush(std::move(erase));
      ++unreferenced;
      it = messages.erase(it);
    } else {
      ++it;
    }
  }
  std::size_t made = 0;
  for (unsigned w = 0; w < workers; ++w)
    made += context_->workers[w]->restoreSessions(homed[w], messages);
  TERN_LOG_INFO(
      "loaded {} persistent MQTT session(s) with {} queued or in-flight message(s) ({} message "
      "record(s), {} unreferenced and erased, {} missing; {} deliveries of {} QoS 2 publish(es) "
      "whose packet id was not stored rolled back, to be published again) from {} in {:.1f} ms",
      made, loadedSessions.queueEntries - rolledBackEntries, loadedMessages.records, unreferenced,
      missing, rolledBackEntries, rolledBack.size(), config.dataDir,
      static_cast<double>(common::monotonicNanos() - began) / 1e6);
}

void Broker::openStore() {
  const Config& config = context_->config;
  persist::StoreOptions options;
  options.durability = config.durability == Config::Durability::kSync ? persist::Durability::kSync
                                                                      : persist::Durability::kAsync;
  options.flushInterval =
      std::chrono::milliseconds(static_cast<std::int64_t>(config.flushIntervalMillis));
  options.producers = config.workers;
  if (!config.testStorageFaults.empty()) {
    context_->storeFaults.failWhileExists(config.testStorageFaults);
    options.faults = &context_->storeFaults;
  }
  if (!config.testCrashBeforeKey.empty()) {
    std::string prefix;
    for (std::size_t i = 0; i + 1 < config.testCrashBeforeKey.size(); i += 2)
      prefix.push_back(
          static_cast<char>(std::stoi(config.testCrashBeforeKey.substr(i, 2), nullptr, 16)));
    context_->storeFaults.crashBeforePutting(std::move(prefix));
    options.faults = &context_->storeFaults;
  }
  persist::Store::OpenResult opened = persist::Store::open(config.dataDir, options);
  if (!opened.store) throw std::runtime_error(opened.error);
  persist::Store& store = *opened.store;
  // Retained messages, before any listener opens. Message expiry is kept as a wall-clock deadline
  // on disk and becomes a monotonic one again here; those past it are dropped (and erased).
  const common::DeadlineClocks clocks;
  std::uint64_t loaded = 0;
  std::uint64_t refused = 0;
  std::vector<std::string> expired;
  const persist::LoadStats stats = store.loadRetained([&](persist::RetainedRecord&& r) {
    std::int64_t expiresAt = 0;
    if (r.expiryUnixMs != 0) {
      const std::int64_t left = clocks.millisUntil(r.expiryUnixMs);
      if (left <= 0) {
        expired.push_back(std::move(r.topic));
        return;
      }
      expiresAt = clocks.monotonicIn(left);
    }
    common::MessageRef m =
        common::Message::make5(r.topic, r.payload, true, r.qos, r.properties, expiresAt, 0);
    if (context_->retained.set(std::move(m)) == routing::RetainedStore::SetResult::kStored) {
      ++loaded;
    } else {
      ++refused;  // past --max-retained-* (lowered since): kept on disk, not served
    }
  });
  if (!stats.ok()) throw std::runtime_error(stats.error);
  for (const std::string& topic : expired) {
    persist::WriteRequest erase;  // cookie 0 on producer 0: no worker waits for it
    erase.eraseRetained(topic);
    store.tryPush(std::move(erase));
  }
  TERN_LOG_INFO(
      "loaded {} retained message(s) from {} in {:.1f} ms ({} expired and dropped, {} over "
      "--max-retained-*); durability {}{}",
      loaded, config.dataDir, static_cast<double>(stats.elapsedNanos) / 1e6, expired.size(),
      refused, config.durability == Config::Durability::kSync ? "sync" : "async",
      config.durability == Config::Durability::kSync
          ? std::string()
          : fmt::format(", log synced every {} ms", config.flushIntervalMillis));
  context_->store = std::move(opened.store);
}

std::string Broker::checkFiles(const Config& config) {
  return loadStartupFiles(config).problem;
}

Broker::~Broker() {
  stop();
}

net::IoBackend Broker::ioBackend() const noexcept {
  return context_->workers.front()->backend();
}

void Broker::reload() {
  const Config& config = context_->config;
  if (config.passwordFile.empty() && config.aclFile.empty() && !config.tlsEnabled()) {
    TERN_LOG_INFO("reload: nothing to read again (no --password-file, --acl-file, --tls-cert)");
    return;
  }
  if (config.tlsEnabled()) {
    net::TlsContext::Made made = makeTlsContext(config);
    if (!made.context) {
      TERN_LOG_ERROR("reload: the TLS certificate and key are kept as they were: {}", made.error);
    } else {
      TERN_LOG_INFO(
          "reload: TLS certificate {} and key {} read again; new TLS connections use them",
          config.tlsCert, config.tlsKey);
      context_->replaceTlsContext(std::move(made.context));
    }
  }
  if (!config.passwordFile.empty()) {
    auth::PasswordFile::Loaded loaded = auth::PasswordFile::load(config.passwordFile);
    if (!loaded.file) {
      TERN_LOG_ERROR("reload: the password file is kept as it was: {}", loaded.error);
    } else {
      TERN_LOG_INFO("reload: {} user(s) in {}", loaded.file->entries().size(), config.passwordFile);
      context_->auth->replace(std::move(*loaded.file));
    }
  }
  if (!config.aclFile.empty()) {
    auth::AclFile::Loaded loaded = auth::AclFile::load(config.aclFile);
    if (!loaded.file) {
      TERN_LOG_ERROR("reload: the ACL file is kept as it was: {}", loaded.error);
    } else {
      TERN_LOG_INFO("reload: ACL rules for {} user(s) in {}", loaded.file->users(), config.aclFile);
      const auth::AclFile* old = context_->acl.exchange(new auth::AclFile(std::move(*loaded.file)),
                                                        std::memory_order_acq_rel);
      context_->aclGeneration.fetch_add(1, std::memory_order_release);
      // Freed once every worker passed a quiescent state: none still compiles from it.
      if (old != nullptr) sync::QsbrDomain::global().retire(const_cast<auth::AclFile*>(old));
    }
  }
}

void Broker::start() {
  const Config& config = context_->config;
  struct Wanted {
    int port;  // -1: off
    Protocol protocol;
    bool tls;
    bool ws;
    const char* name;
    const char* option;
  };
  const bool tls = config.tlsEnabled();
  const Wanted wanted[] = {
      {config.port, Protocol::kLine, false, false, "line protocol", "--port off"},
      {config.mqttPort, Protocol::kMqtt, false, false, "mqtt", "--mqtt-port 0"},
      {tls ? config.tlsPort : -1, Protocol::kLine, true, false, "line protocol+tls",
       "--tls-port 0"},
      {tls ? config.mqttTlsPort : -1, Protocol::kMqtt, true, false, "mqtt+tls",
       "--mqtt-tls-port 0"},
      {config.wsPort, Protocol::kMqtt, false, true, "mqtt+ws", "--ws-port off"},
      {tls ? config.wssPort : -1, Protocol::kMqtt, true, true, "mqtt+wss", "--wss-port off"},
  };
  std::vector<net::ListenSocket> listeners;
  for (const Wanted& w : wanted) {
    if (w.port < 0) continue;
    net::ListenResult bound = net::listenTcp(config.bind, static_cast<std::uint16_t>(w.port), 4096);
    if (bound.fd < 0) {
      for (const net::ListenSocket& open : listeners)
        ::close(open.fd);
      throw std::runtime_error(bound.error + " (" + w.option + " turns it off)");
    }
    listeners_.push_back({net::localEndpoint(bound.fd), w.name});
    listeners.push_back(
        {bound.fd, static_cast<int>(w.protocol) | (w.tls ? kTlsTag : 0) | (w.ws ? kWsTag : 0)});
  }
  if (config.metricsPort >= 0) {
    net::ListenResult bound =
        net::listenTcp(config.bind, static_cast<std::uint16_t>(config.metricsPort), 64);
    if (bound.fd < 0) {
      for (const net::ListenSocket& open : listeners)
        ::close(open.fd);
      throw std::runtime_error(bound.error + " (--metrics-port off turns it off)");
    }
    listeners_.push_back({net::localEndpoint(bound.fd), "metrics"});
    const double now =
        std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
    try {
      metrics_ = std::make_unique<MetricsServer>(*context_, bound.fd, now);
    } catch (const std::exception&) {
      for (const net::ListenSocket& open : listeners)
        ::close(open.fd);
      throw;
    }
  }

  // Round robin over the workers; relaxed is enough: the counter only spreads load.
  auto next = std::make_shared<std::atomic<std::uint64_t>>(0);
  acceptor_ = std::make_unique<net::Acceptor>(
      std::move(listeners), [this, next](int fd, int kind, const net::PeerAddress& peer) {
        const auto protocol = static_cast<Protocol>(kind & ~(kTlsTag | kWsTag));
        const bool tls = (kind & kTlsTag) != 0;
        const bool ws = (kind & kWsTag) != 0;
        if (!admit(fd, protocol, tls, peer)) return;
        const std::size_t n = context_->workers.size();
        const std::uint64_t i = next->fetch_add(1, std::memory_order_relaxed) % n;
        context_->workers[i]->adopt(fd, protocol, tls, ws, peer);
      });
  context_->acceptor = acceptor_.get();
  if (context_->store != nullptr) context_->store->start();
  for (auto& worker : context_->workers)
    worker->start();
  acceptor_->start(config.acceptors, config.io);
  started_ = true;
}

bool Broker::admit(int fd, Protocol protocol, bool tls, const net::PeerAddress& peer) {
  const net::Admission admission = context_->connections.tryAdmit(peer);
  if (admission == net::Admission::kAdmitted) return true;
  struct Refusal {
    std::atomic<std::uint64_t>* counter;
    const char* why;     // for the log
    const char* answer;  // the line protocol's, before the close
  };
  const Refusal refusal =
      admission == net::Admission::kTooMany
          ? Refusal{&context_->refusedConnections, "--max-connections reached",
                    "ERROR@server-busy@too many connections (--max-connections)\n"}
      : admission == net::Admission::kTooManyFromAddress
          ? Refusal{&context_->refusedConnectionsPerAddress,
                    "--max-connections-per-address reached",
                    "ERROR@server-busy@too many connections from your address "
                    "(--max-connections-per-address)\n"}
          : Refusal{&context_->refusedConnectionsUnauthenticated,
                    "--max-unauthenticated-per-address reached",
                    "ERROR@server-busy@too many connections from your address without CONNECT "
                    "(--max-unauthenticated-per-address)\n"};
  refusal.counter->fetch_add(1, std::memory_order_relaxed);
  if (const std::uint64_t times = context_->connectionRefusals.admit(common::monotonicNanos())) {
    TERN_LOG_WARN("refused {} connection(s) (last from {}): {}", times, net::toString(peer),
                  refusal.why);
  }
  if (protocol == Protocol::kLine && !tls) {
    // A clear answer before the close; best effort, the socket is fresh so its buffer is empty.
    const std::string_view answer = refusal.answer;
    [[maybe_unused]] ssize_t n =
        ::send(fd, answer.data(), answer.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
  }
  // MQTT has no answer before CONNECT: the connection is closed, as Mosquitto does.
  ::close(fd);
  return false;
}

void Broker::stop() {
  if (!started_ || stopped_) return;
  stopped_ = true;
  acceptor_->stop();  // no new connections; listeners closed
  metrics_.reset();
  // Two-phase stop so that nothing routed between workers is lost: first every worker stops
  // reading and posts what it routed; once all have, each delivers what it received and flushes.
  context_->stopStage.store(1, std::memory_order_release);
  for (auto& worker : context_->workers)
    worker->wake();
  while (context_->stoppedReading.load(std::memory_order_acquire) < context_->workers.size()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  context_->stopStage.store(2, std::memory_order_release);
  for (auto& worker : context_->workers)
    worker->wake();
  for (auto& worker : context_->workers)
    worker->join();
  acceptor_.reset();
  // Everything the workers queued is written and synced (async mode included) before exit.
  if (context_->store != nullptr) context_->store->close();
}

}  // namespace tern::broker
