// FakeLineBroker: a minimal, single-threaded line-protocol broker for testing loadgen end to end,
// with injectable faults (dropped, duplicated and swapped deliveries, a broker that dies).
//
// It implements just what loadgen uses (CONNECT, ATTACH, SUBSCRIBE, PUBLISH, MESSAGE pushes, with
// routing::filterMatches for '+' and '#'), in a poll() loop on its own thread, listening on
// 127.0.0.1 at an ephemeral port. Correctness over speed: std::string buffers and a linear scan of
// the sessions per publish. Faults apply per (subscriber, topic), so that "every Nth delivery"
// means the same thing whatever the interleaving of publishers.
//
// Threading: the constructor starts the thread, stop() (or the destructor) joins it. The counts
// may be read only after stop(), except publishesSoFar().
#pragma once

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "tern/routing/topic.hpp"

namespace tern::loadgen::testing {

struct Faults {
  std::uint32_t dropEvery = 0;          // drop every Nth delivery of each (subscriber, topic)
  std::uint32_t duplicateEvery = 0;     // deliver every Nth twice
  std::uint32_t swapEvery = 0;          // hold every Nth and deliver it after the next one
  std::uint64_t dieAfterPublishes = 0;  // close every socket and stop listening after N publishes
};

class FakeLineBroker {
 public:
  explicit FakeLineBroker(Faults faults = {}) : faults_(faults) {
    listenFd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t length = sizeof address;
    if (listenFd_ < 0 || ::bind(listenFd_, reinterpret_cast<sockaddr*>(&address), length) != 0 ||
        ::listen(listenFd_, 1024) != 0 ||
        ::getsockname(listenFd_, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
      throw std::runtime_error("FakeLineBroker: cannot listen on 127.0.0.1");
    }
    port_ = ntohs(address.sin_port);
    thread_ = std::thread([this] { loop(); });
  }
  ~FakeLineBroker() { stop(); }
  FakeLineBroker(const FakeLineBroker&) = delete;
  FakeLineBroker& operator=(const FakeLineBroker&) = delete;

  std::uint16_t port() const noexcept { return port_; }

  void stop() {
    stop_.store(true);
    if (thread_.joinable()) thread_.join();
    closeEverything();
  }

  // Publishes handled so far; any thread, while running.
  std::uint64_t publishesSoFar() const noexcept { return publishesSoFar_.load(); }

  // After stop().
  std::uint64_t publishes() const noexcept { return publishes_; }
  std::uint64_t deliveries() const noexcept { return deliveries_; }
  std::uint64_t dropped() const noexcept { return dropped_; }
  std::uint64_t duplicated() const noexcept { return duplicated_; }
  std::uint64_t swapped() const noexcept { return swapped_; }
  // Held for a swap when the run ended: never delivered.
  std::uint64_t stillHeld() const noexcept {
    std::uint64_t held = 0;
    for (const auto& [key, fault] : faultState_)
      held += fault.held.empty() ? 0 : 1;
    return held;
  }

 private:
  struct Session {
    std::string token;
    std::vector<std::string> filters;
    int pushFd = -1;
    std::string queued;  // deliveries before the push socket attached
  };
  struct Connection {
    int fd;
    std::string in;
    std::string out;
    Session* session = nullptr;
  };
  struct FaultState {
    std::uint64_t count = 0;
    std::string held;
  };

  void loop() {
    while (!stop_.load()) {
      std::vector<pollfd> fds;
      if (listenFd_ >= 0) fds.push_back({listenFd_, POLLIN, 0});
      for (const auto& connection : connections_) {
        fds.push_back({connection->fd,
                       static_cast<short>(POLLIN | (connection->out.empty() ? 0 : POLLOUT)), 0});
      }
      if (::poll(fds.data(), fds.size(), 5) <= 0) continue;
      if (listenFd_ >= 0 && (fds[0].revents & POLLIN) != 0) accept();
      // Index loop: handling input may append connections (never during this pass) or die.
      const std::size_t first = listenFd_ >= 0 ? 1 : 0;
      for (std::size_t i = first; i < fds.size() && !dead_; ++i) {
        Connection* connection = find(fds[i].fd);
        if (connection == nullptr) continue;
        if ((fds[i].revents & (POLLIN | POLLHUP | POLLERR)) != 0) readFrom(*connection);
        if (dead_) break;
        connection = find(fds[i].fd);
        if (connection != nullptr) writeTo(*connection);
      }
      for (auto& connection : connections_)
        writeTo(*connection);
      if (dead_) closeEverything();
    }
  }

  void accept() {
    for (;;) {
      const int fd = ::accept4(listenFd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) return;
      const int one = 1;
      ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      connections_.push_back(std::make_unique<Connection>(Connection{fd, {}, {}, nullptr}));
    }
  }

  Connection* find(int fd) {
    for (auto& connection : connections_) {
      if (connection->fd == fd) return connection.get();
    }
    return nullptr;
  }

  void readFrom(Connection& connection) {
    char buffer[65536];
    const ssize_t n = ::recv(connection.fd, buffer, sizeof buffer, 0);
    if (n <= 0) {
      if (n < 0 && errno == EAGAIN) return;
      close(connection.fd);
      return;
    }
    connection.in.append(buffer, static_cast<std::size_t>(n));
    std::size_t start = 0;
    for (;;) {
      const std::size_t lf = connection.in.find('\n', start);
      if (lf == std::string::npos) break;
      const std::string frame = connection.in.substr(start, lf - start);
      start = lf + 1;
      handle(connection, frame);
      if (dead_ || find(connection.fd) == nullptr) return;
    }
    connection.in.erase(0, start);
  }

  void handle(Connection& connection, const std::string& frame) {
    const auto field = [&frame](std::size_t index) {
      std::size_t begin = 0;
      for (std::size_t i = 0; i < index; ++i) {
        begin = frame.find('@', begin);
        if (begin == std::string::npos) return std::string();
        ++begin;
      }
      return frame.substr(begin, frame.find('@', begin) - begin);
    };
    const std::string type = field(0);
    if (type == "CONNECT") {
      auto session = std::make_unique<Session>();
      session->token = "t" + std::to_string(sessions_.size());
      connection.session = session.get();
      connection.out += "CONNACK@" + field(1) + "@" + session->token + "\n";
      sessions_.push_back(std::move(session));
    } else if (type == "ATTACH") {
      for (auto& session : sessions_) {
        if (session->token != field(1)) continue;
        connection.session = session.get();
        if (field(2) == "push") {
          session->pushFd = connection.fd;
          connection.out += "ATTACHACK@push\n" + session->queued;
          session->queued.clear();
        } else {
          connection.out += "ATTACHACK@request\n";
        }
        return;
      }
      connection.out += "ERROR@bad-token@unknown\n";
    } else if (type == "SUBSCRIBE" && connection.session != nullptr) {
      connection.session->filters.push_back(field(1));
      connection.out += "SUBACK\n";
    } else if (type == "PUBLISH" && connection.session != nullptr) {
      const std::string topic = field(1);
      const std::string contents = frame.substr(8 + topic.size() + 1);
      ++publishes_;
      publishesSoFar_.store(publishes_);
      for (auto& session : sessions_) {
        for (const std::string& filter : session->filters) {
          if (routing::filterMatches(filter, topic)) {
            deliver(*session, topic, "MESSAGE@" + topic + "@" + contents + "\n");
            break;
          }
        }
      }
      connection.out += "PUBACK\n";
      if (faults_.dieAfterPublishes != 0 && publishes_ >= faults_.dieAfterPublishes) dead_ = true;
    } else {
      connection.out += "ERROR@unknown-type@fake broker\n";
    }
  }

  void deliver(Session& session, const std::string& topic, const std::string& line) {
    FaultState& state = faultState_[{&session, topic}];
    const std::uint64_t n = ++state.count;
    if (faults_.dropEvery != 0 && n % faults_.dropEvery == 0) {
      ++dropped_;
      return;
    }
    if (!state.held.empty()) {
      push(session, line);
      push(session, state.held);
      state.held.clear();
      ++swapped_;
      return;
    }
    if (faults_.swapEvery != 0 && n % faults_.swapEvery == 0) {
      state.held = line;
      return;
    }
    push(session, line);
    if (faults_.duplicateEvery != 0 && n % faults_.duplicateEvery == 0) {
      push(session, line);
      ++duplicated_;
    }
  }

  void push(Session& session, const std::string& line) {
    ++deliveries_;
    Connection* push = session.pushFd >= 0 ? find(session.pushFd) : nullptr;
    (push != nullptr ? push->out : session.queued) += line;
  }

  void writeTo(Connection& connection) {
    while (!connection.out.empty()) {
      const ssize_t n =
          ::send(connection.fd, connection.out.data(), connection.out.size(), MSG_NOSIGNAL);
      if (n <= 0) return;
      connection.out.erase(0, static_cast<std::size_t>(n));
    }
  }

  void close(int fd) {
    for (auto it = connections_.begin(); it != connections_.end(); ++it) {
      if ((*it)->fd != fd) continue;
      for (auto& session : sessions_) {
        if (session->pushFd == fd) session->pushFd = -1;
      }
      ::close(fd);
      connections_.erase(it);
      return;
    }
  }

  void closeEverything() {
    for (auto& connection : connections_)
      ::close(connection->fd);
    connections_.clear();
    for (auto& session : sessions_)
      session->pushFd = -1;
    if (listenFd_ >= 0) ::close(listenFd_);
    listenFd_ = -1;
  }

  const Faults faults_;
  int listenFd_ = -1;
  std::uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<std::uint64_t> publishesSoFar_{0};
  bool dead_ = false;
  std::thread thread_;
  std::vector<std::unique_ptr<Connection>> connections_;
  std::vector<std::unique_ptr<Session>> sessions_;
  std::map<std::pair<Session*, std::string>, FaultState> faultState_;
  std::uint64_t publishes_ = 0;
  std::uint64_t deliveries_ = 0;
  std::uint64_t dropped_ = 0;
  std::uint64_t duplicated_ = 0;
  std::uint64_t swapped_ = 0;
};

}  // namespace tern::loadgen::testing
