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

#include "tern/broker/config.hpp"
#include "tern/net/event_loop.hpp"

namespace tern::net {
class Acceptor;
struct PeerAddress;
}  // namespace tern::net

namespace tern::broker {

enum class Protocol : std::uint8_t;
struct BrokerContext;

class Broker {
 public:
  // REQUIRES: config.validate() is empty. Makes the workers and their event loops; throws
  // std::runtime_error when an event loop cannot be made (e.g. --io uring refused by the kernel).
  explicit Broker(const Config& config);
  ~Broker();
  Broker(const Broker&) = delete;
  Broker& operator=(const Broker&) = delete;

  void start();
  void stop();
  // SIGHUP: reads the password file and the ACL file again. A file that does not parse leaves
  // the rules in force as they were (never open) and logs the line that is wrong. Connections
  // stay; sessions follow the new ACL from their next check on. Any thread but a worker's.
  void reload();

  // "address:port" of the line-protocol listener once started (useful with port 0).
  const std::string& lineEndpoint() const noexcept { return lineEndpoint_; }
  // "address:port" of the MQTT listener, empty when MQTT is off.
  const std::string& mqttEndpoint() const noexcept { return mqttEndpoint_; }
  // The I/O backend the workers' event loops use (the same for all).
  net::IoBackend ioBackend() const noexcept;

 private:
  // Counts an accepted socket against the connection limits; at a limit it answers (line protocol)
  // and closes the socket and returns false. Acceptor threads.
  bool admit(int fd, Protocol protocol, const net::PeerAddress& peer);

  std::unique_ptr<BrokerContext> context_;
  std::unique_ptr<net::Acceptor> acceptor_;
  std::string lineEndpoint_;
  std::string mqttEndpoint_;
  bool started_ = false;
  bool stopped_ = false;
};

}  // namespace tern::broker
