#include "tern/broker/broker.hpp"

#include <atomic>
#include <chrono>
#include <stdexcept>
#include <thread>

#include <sys/socket.h>
#include <unistd.h>

#include "authenticator.hpp"
#include "broker_context.hpp"
#include "tern/common/clock.hpp"
#include "tern/common/log.hpp"
#include "tern/net/acceptor.hpp"
#include "tern/net/socket.hpp"
#include "tern/sync/qsbr.hpp"
#include "worker.hpp"

namespace tern::broker {

Broker::Broker(const Config& config) : context_(std::make_unique<BrokerContext>(config)) {
  if (!config.passwordFile.empty()) {
    auth::PasswordFile::Loaded loaded = auth::PasswordFile::load(config.passwordFile);
    if (!loaded.file) throw std::runtime_error("--password-file: " + loaded.error);
    TERN_LOG_INFO("{} user(s) in {}; anonymous clients {}", loaded.file->entries().size(),
                  config.passwordFile, config.anonymousAllowed() ? "accepted" : "refused");
    context_->auth = std::make_unique<Authenticator>(*context_, std::move(*loaded.file));
  }
  if (!config.aclFile.empty()) {
    auth::AclFile::Loaded loaded = auth::AclFile::load(config.aclFile);
    if (!loaded.file) throw std::runtime_error("--acl-file: " + loaded.error);
    TERN_LOG_INFO("ACL rules for {} user(s) in {}; what they do not grant is denied",
                  loaded.file->users(), config.aclFile);
    context_->acl.store(new auth::AclFile(std::move(*loaded.file)), std::memory_order_release);
  }
  for (unsigned i = 0; i < config.workers; ++i) {
    context_->workers.push_back(std::make_unique<Worker>(*context_, i));
  }
}

Broker::~Broker() {
  stop();
}

net::IoBackend Broker::ioBackend() const noexcept {
  return context_->workers.front()->backend();
}

void Broker::reload() {
  const Config& config = context_->config;
  if (config.passwordFile.empty() && config.aclFile.empty()) {
    TERN_LOG_INFO("reload: nothing to read again (no --password-file, no --acl-file)");
    return;
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
  net::ListenResult line = net::listenTcp(config.bind, config.port, 4096);
  if (line.fd < 0) throw std::runtime_error(line.error);
  lineEndpoint_ = net::localEndpoint(line.fd);
  std::vector<net::ListenSocket> listeners{{line.fd, static_cast<int>(Protocol::kLine)}};
  if (config.mqttPort >= 0) {
    net::ListenResult mqtt =
        net::listenTcp(config.bind, static_cast<std::uint16_t>(config.mqttPort), 4096);
    if (mqtt.fd < 0) {
      ::close(line.fd);
      throw std::runtime_error(mqtt.error + " (--mqtt-port 0 turns MQTT off)");
    }
    mqttEndpoint_ = net::localEndpoint(mqtt.fd);
    listeners.push_back({mqtt.fd, static_cast<int>(Protocol::kMqtt)});
  }

  // Round robin over the workers; relaxed is enough: the counter only spreads load.
  auto next = std::make_shared<std::atomic<std::uint64_t>>(0);
  acceptor_ = std::make_unique<net::Acceptor>(
      std::move(listeners), [this, next](int fd, int kind, const net::PeerAddress& peer) {
        if (!admit(fd, static_cast<Protocol>(kind), peer)) return;
        const std::size_t n = context_->workers.size();
        const std::uint64_t i = next->fetch_add(1, std::memory_order_relaxed) % n;
        context_->workers[i]->adopt(fd, static_cast<Protocol>(kind), peer);
      });
  context_->acceptor = acceptor_.get();
  for (auto& worker : context_->workers)
    worker->start();
  acceptor_->start(config.acceptors, config.io);
  started_ = true;
}

bool Broker::admit(int fd, Protocol protocol, const net::PeerAddress& peer) {
  const net::Admission admission = context_->connections.tryAdmit(peer);
  if (admission == net::Admission::kAdmitted) return true;
  const bool total = admission == net::Admission::kTooMany;
  (total ? context_->refusedConnections : context_->refusedConnectionsPerAddress)
      .fetch_add(1, std::memory_order_relaxed);
  if (const std::uint64_t times = context_->connectionRefusals.admit(common::monotonicNanos())) {
    TERN_LOG_WARN("refused {} connection(s) (last from {}): {}", times, net::toString(peer),
                  total ? "--max-connections reached" : "--max-connections-per-address reached");
  }
  if (protocol == Protocol::kLine) {
    // A clear answer before the close; best effort, the socket is fresh so its buffer is empty.
    const std::string_view refusal =
        total ? "ERROR@server-busy@too many connections (--max-connections)\n"
              : "ERROR@server-busy@too many connections from your address "
                "(--max-connections-per-address)\n";
    [[maybe_unused]] ssize_t n =
        ::send(fd, refusal.data(), refusal.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
  }
  // MQTT has no answer before CONNECT: the connection is closed, as Mosquitto does.
  ::close(fd);
  return false;
}

void Broker::stop() {
  if (!started_ || stopped_) return;
  stopped_ = true;
  acceptor_->stop();  // no new connections; listeners closed
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
}

}  // namespace tern::broker
