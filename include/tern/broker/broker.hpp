// Broker: the whole server: listeners, acceptor threads, worker event loops, the subscription trie
// and the retained store.
//
// Ownership: created by main(); owns everything else. Threads: every public method is called by the
// thread that created the Broker (main), never concurrently.
//
// Life cycle: Broker(config) -> start() (binds the listeners and starts the threads; throws
// std::runtime_error with a one-line message when a listener cannot be bound) -> stop() (clean
// shutdown: close the listeners, let every worker stop reading, deliver and flush what is pending
// for a bounded time, close every socket, join) -> destructor (calls stop() if needed).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "tern/broker/config.hpp"
#include "tern/net/event_loop.hpp"

namespace tern::net {
class Acceptor;
struct PeerAddress;
}  // namespace tern::net

namespace tern::broker {

enum class Protocol : std::uint8_t;
struct BrokerContext;

class MetricsServer;

class Broker {
 public:
  // REQUIRES: config.validate() is empty. Makes the workers and their event loops; throws
  // std::runtime_error when an event loop cannot be made (e.g. --io uring refused by the kernel).
  explicit Broker(const Config& config);
  ~Broker();
  Broker(const Broker&) = delete;
  Broker& operator=(const Broker&) = delete;

  // What the constructor would refuse in the files `config` names (--password-file,
  // --acl-file, the TLS certificate, key and CA): the first problem, or empty when each reads.
  // Opens no socket, starts no thread (broker --check-config). Any thread.
  static std::string checkFiles(const Config& config);

  void start();
  void stop();
  // SIGHUP: reads the password file, the ACL file and the TLS certificate and key again (new TLS
  // connections use the new ones; open ones keep theirs). A file that does not parse leaves
  // the rules in force as they were (never open) and logs the line that is wrong. Connections
  // stay; sessions follow the new ACL from their next check on. Any thread but a worker's.
  void reload();

  // The listeners once started: "address:port" (useful with port 0) and what it serves: "line
  // protocol", "mqtt", "line protocol+tls", "mqtt+tls", "metrics" (HTTP, /metrics).
  struct Listener {
    std::string endpoint;
    std::string name;
  };
  const std::vector<Listener>& listeners() const noexcept { return listeners_; }
  // The I/O backend the workers' event loops use (the same for all).
  net::IoBackend ioBackend() const noexcept;

 private:
  // Counts an accepted socket against the connection limits; at a limit it answers (line protocol)
  // and closes the socket and returns false. Acceptor threads.
  bool admit(int fd, Protocol protocol, bool tls, const net::PeerAddress& peer);
  // --data-dir: opens the store and loads the retained messages into the broker (start-up; throws
  // std::runtime_error with the store's one-line explanation).
  void openStore();
  // --data-dir: loads the persistent MQTT sessions and their messages into their home workers
  // (start-up, after the workers are made, before they run).
  void restoreSessions();

  std::unique_ptr<BrokerContext> context_;
  std::unique_ptr<net::Acceptor> acceptor_;
  // --metrics-port; declared after context_ so that it stops before the workers go.
  std::unique_ptr<MetricsServer> metrics_;
  std::vector<Listener> listeners_;
  bool started_ = false;
  bool stopped_ = false;
};

}  // namespace tern::broker
