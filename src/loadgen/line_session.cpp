#include "tern/loadgen/line_session.hpp"

#include <fcntl.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <string>

#include "byte_queue.hpp"
#include "fifo.hpp"
#include "tern/loadgen/line_frames.hpp"

namespace tern::loadgen {

namespace {

enum Slot : unsigned { kControl = 0, kPublish = 1, kPush = 2, kSlots = 3 };

class LineSession final : public Session {
 public:
  LineSession(SessionHost& host, const SessionConfig& config) : host_(host), config_(config) {}
  ~LineSession() override { close(); }

  void start(std::int64_t /*nowNs*/) override {
    stage_ = Stage::kConnecting;
    if (!openSocket(kControl)) return;
    queue(kControl, "CONNECT@");
    queue(kControl, config_.clientId);
    queue(kControl, "\n");
  }

  void subscribe(std::span<const std::string> filters, std::int64_t nowNs) override {
    if (stage_ != Stage::kConnected) return;
    if (filters.empty()) {
      stage_ = Stage::kReady;
      host_.onSubscribed(config_.client, nowNs);
      return;
    }
    stage_ = Stage::kSubscribing;
    pendingSubacks_ = filters.size();
    for (const std::string& filter : filters) {
      queue(kControl, "SUBSCRIBE@");
      queue(kControl, filter);
      queue(kControl, "\n");
    }
  }

  void publish(std::string_view topic, std::string_view payload,
               std::int64_t intendedNs) noexcept override {
    if (stage_ != Stage::kReady && stage_ != Stage::kConnected) return;
    Socket& socket = sockets_[kPublish];
    // One reserve for the whole frame: "PUBLISH@" topic "@" payload "\n".
    const std::size_t size = 8 + topic.size() + 1 + payload.size() + 1;
    char* out = socket.out.reserve(size);
    std::memcpy(out, "PUBLISH@", 8);
    out += 8;
    std::memcpy(out, topic.data(), topic.size());
    out += topic.size();
    *out++ = '@';
    std::memcpy(out, payload.data(), payload.size());
    out += payload.size();
    *out = '\n';
    socket.out.commit(size);
    pendingAcks_.push(intendedNs);
    host_.requestFlush(config_.client);
  }

  void onEvent(unsigned slot, std::uint32_t events, std::int64_t nowNs) override {
    if (slot >= kSlots) return;
    Socket& socket = sockets_[slot];
    // A stale event of a socket closed earlier in the same epoll batch.
    if (socket.fd < 0) return;
    if (socket.connecting) {
      if ((events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) == 0) return;
      int error = 0;
      socklen_t length = sizeof error;
      ::getsockopt(socket.fd, SOL_SOCKET, SO_ERROR, &error, &length);
      if (error != 0) {
        fail(SessionFailure::kConnect, std::strerror(error));
        return;
      }
      socket.connecting = false;
      flushSocket(slot);
      return;
    }
    if ((events & (EPOLLIN | EPOLLERR | EPOLLHUP)) != 0) {
      readSocket(slot, nowNs);
      if (socket.fd < 0) return;
    }
    if ((events & EPOLLOUT) != 0) flushSocket(slot);
  }

  void flush(std::int64_t /*nowNs*/) override {
    for (unsigned slot = 0; slot < kSlots; ++slot) {
      if (sockets_[slot].fd >= 0 && !sockets_[slot].connecting) flushSocket(slot);
      if (stage_ == Stage::kFailed) return;
    }
  }

  std::size_t queuedBytes() const noexcept override {
    return sockets_[kControl].out.size() + sockets_[kPublish].out.size();
  }
  std::uint64_t unacknowledged() const noexcept override { return pendingAcks_.size(); }

  void close() noexcept override {
    for (Socket& socket : sockets_) {
      if (socket.fd >= 0) ::close(socket.fd);
      socket.fd = -1;
      socket.out.clear();
    }
    if (stage_ != Stage::kFailed) stage_ = Stage::kClosed;
  }

 private:
  enum class Stage { kIdle, kConnecting, kConnected, kSubscribing, kReady, kFailed, kClosed };

  struct Socket {
    int fd = -1;
    bool connecting = false;
    bool watchingWrite = false;
    ByteQueue out;
    std::string partial;  // an incomplete frame carried to the next read
  };

  bool openSocket(unsigned slot) {
    Socket& socket = sockets_[slot];
    const int fd =
        ::socket(config_.broker.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
      fail(SessionFailure::kConnect, std::strerror(errno));
      return false;
    }
    socket.fd = fd;
    const int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (config_.sourceLength != 0) {
      // Let connect() pick the port per destination, so that source addresses multiply the
      // ephemeral ports available instead of each bind() reserving one for every destination.
      ::setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
      if (::bind(fd, reinterpret_cast<const sockaddr*>(&config_.source), config_.sourceLength) !=
          0) {
        fail(SessionFailure::kConnect, std::strerror(errno));
        return false;
      }
    }
    if (::connect(fd, reinterpret_cast<const sockaddr*>(&config_.broker), config_.brokerLength) !=
        0) {
      if (errno != EINPROGRESS) {
        fail(SessionFailure::kConnect, std::strerror(errno));
        return false;
      }
      socket.connecting = true;
    }
    socket.watchingWrite = socket.connecting;
    if (!host_.watch(config_.client, slot, fd, socket.watchingWrite)) {
      fail(SessionFailure::kConnect, std::string("epoll_ctl: ") + std::strerror(errno));
      return false;
    }
    return true;
  }

  void queue(unsigned slot, std::string_view text) {
    sockets_[slot].out.append(text);
    host_.requestFlush(config_.client);
  }

  void flushSocket(unsigned slot) {
    Socket& socket = sockets_[slot];
    while (!socket.out.empty()) {
      const ssize_t sent =
          ::send(socket.fd, socket.out.data(), socket.out.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
      if (sent > 0) {
        socket.out.consume(static_cast<std::size_t>(sent));
        continue;
      }
      if (sent < 0 && errno == EINTR) continue;
      if (sent < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
      fail(SessionFailure::kDisconnected, sent < 0 ? std::strerror(errno) : "send returned 0");
      return;
    }
    const bool wantWrite = !socket.out.empty();
    if (wantWrite != socket.watchingWrite) {
      socket.watchingWrite = wantWrite;
      host_.rewatch(config_.client, slot, socket.fd, wantWrite);
    }
  }

  void readSocket(unsigned slot, std::int64_t nowNs) {
    Socket& socket = sockets_[slot];
    const std::span<char> buffer = host_.readBuffer();
    // A partial frame from the previous read goes first, so frames are parsed in one piece.
    const std::size_t carried = socket.partial.size();
    if (carried >= buffer.size()) {
      fail(SessionFailure::kProtocol, "frame longer than the read buffer");
      return;
    }
    std::memcpy(buffer.data(), socket.partial.data(), carried);
    ssize_t received;
    do {
      received = ::recv(socket.fd, buffer.data() + carried, buffer.size() - carried, MSG_DONTWAIT);
    } while (received < 0 && errno == EINTR);
    if (received == 0) {
      fail(SessionFailure::kDisconnected, slotClosedText(slot));
      return;
    }
    if (received < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) return;
      fail(SessionFailure::kDisconnected, std::strerror(errno));
      return;
    }
    const std::string_view data(buffer.data(), carried + static_cast<std::size_t>(received));
    const std::size_t consumed =
        forEachFrame(data, [&](std::string_view frame) { return onFrame(slot, frame, nowNs); });
    if (sockets_[slot].fd < 0) return;  // failed while handling a frame
    socket.partial.assign(data.substr(consumed));
  }

  static const char* slotClosedText(unsigned slot) noexcept {
    switch (slot) {
      case kControl:
        return "the broker closed the control socket";
      case kPublish:
        return "the broker closed the publish socket";
      default:
        return "the broker closed the push socket";
    }
  }

  // Returns false to stop parsing (the session failed).
  bool onFrame(unsigned slot, std::string_view frame, std::int64_t nowNs) {
    switch (slot) {
      case kPublish:
        if (attached_[kPublish]) {
          if (frame == "PUBACK") {
            if (pendingAcks_.empty()) return protocolError(frame);
            host_.onPubAck(config_.client, pendingAcks_.pop(), nowNs);
            return true;
          }
          std::string_view code;
          if (parseError(frame, code) && !pendingAcks_.empty()) {
            pendingAcks_.pop();
            host_.onBrokerError(config_.client, frame);
            return true;
          }
          return protocolError(frame);
        }
        return onAttachAck(kPublish, frame, "ATTACHACK@request", nowNs);
      case kPush:
        if (attached_[kPush]) {
          std::string_view topic;
          std::string_view contents;
          if (parseMessageFrame(frame, topic, contents)) {
            host_.onMessage(config_.client, topic, contents, nowNs);
          } else {
            // RETAINED, PONG or ERROR: nothing loadgen asked for.
            host_.onBrokerError(config_.client, frame);
          }
          return true;
        }
        return onAttachAck(kPush, frame, "ATTACHACK@push", nowNs);
      default:
        return onControlFrame(frame, nowNs);
    }
  }

  bool onControlFrame(std::string_view frame, std::int64_t nowNs) {
    if (stage_ == Stage::kConnecting && token_.empty()) {
      std::string_view token;
      if (!parseConnack(frame, token)) {
        fail(SessionFailure::kHandshake, frame);
        return false;
      }
      token_.assign(token);
      for (const unsigned slot : {kPublish, kPush}) {
        if (!openSocket(slot)) return false;
        queue(slot, "ATTACH@");
        queue(slot, token_);
        queue(slot, slot == kPublish ? "@request\n" : "@push\n");
      }
      return true;
    }
    if (stage_ == Stage::kSubscribing && frame == "SUBACK") {
      if (--pendingSubacks_ == 0) {
        stage_ = Stage::kReady;
        host_.onSubscribed(config_.client, nowNs);
      }
      return true;
    }
    if (stage_ == Stage::kSubscribing) {
      // A refused subscription would make every later count wrong: the session does not count.
      fail(SessionFailure::kHandshake, frame);
      return false;
    }
    host_.onBrokerError(config_.client, frame);
    return true;
  }

  bool onAttachAck(unsigned slot, std::string_view frame, std::string_view expected,
                   std::int64_t nowNs) {
    if (frame != expected) {
      fail(SessionFailure::kHandshake, frame);
      return false;
    }
    attached_[slot] = true;
    if (attached_[kPublish] && attached_[kPush] && stage_ == Stage::kConnecting) {
      stage_ = Stage::kConnected;
      host_.onConnected(config_.client, nowNs);
    }
    return true;
  }

  bool protocolError(std::string_view frame) {
    fail(SessionFailure::kProtocol, frame);
    return false;
  }

  void fail(SessionFailure failure, std::string_view detail) {
    if (stage_ == Stage::kFailed || stage_ == Stage::kClosed) return;
    stage_ = Stage::kFailed;
    // The detail may point into the read buffer or a socket's queue: report before closing.
    const std::string text(detail);
    close();
    host_.onFailed(config_.client, failure, text);
  }

  SessionHost& host_;
  const SessionConfig config_;
  Stage stage_ = Stage::kIdle;
  std::array<Socket, kSlots> sockets_;
  std::array<bool, kSlots> attached_{};
  std::string token_;
  std::size_t pendingSubacks_ = 0;
  Fifo<std::int64_t> pendingAcks_;
};

}  // namespace

std::unique_ptr<Session> makeLineSession(SessionHost& host, const SessionConfig& config) {
  return std::make_unique<LineSession>(host, config);
}

}  // namespace tern::loadgen
