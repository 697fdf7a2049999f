#include "tern/loadgen/line_session.hpp"

#include <sys/epoll.h>

#include <array>
#include <cstring>
#include <string>

#include "fifo.hpp"
#include "session_base.hpp"
#include "session_socket.hpp"
#include "tern/loadgen/line_frames.hpp"

namespace tern::loadgen {

namespace {

enum Slot : unsigned { kControl = 0, kPublish = 1, kPush = 2, kSlots = 3 };

class LineSession final : public SessionBase {
 public:
  LineSession(SessionHost& host, const SessionConfig& config) : SessionBase(host, config) {}
  ~LineSession() override { close(); }

  void start(std::int64_t /*nowNs*/) override {
    stage_ = Stage::kConnecting;
    if (!openSocket(kControl)) return;
    queue(kControl, "CONNECT@");
    queue(kControl, config_.clientId);
    queue(kControl, "\n");
  }

  void subscribe(std::span<const std::string> filters, std::int64_t nowNs) override {
    if (!beginSubscribe(filters, nowNs)) return;
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
    SessionSocket& socket = sockets_[kPublish];
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
    SessionSocket& socket = sockets_[slot];
    // A stale event of a socket closed earlier in the same epoll batch.
    if (socket.fd < 0) return;
    if (socket.connecting) {
      bool done = false;
      const std::string error = finishConnect(socket, events, done);
      if (!error.empty()) {
        fail(SessionFailure::kConnect, error);
      } else if (done) {
        flushSocket(slot);
      }
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
    for (SessionSocket& socket : sockets_)
      socket.close();
    if (stage_ != Stage::kFailed) stage_ = Stage::kClosed;
  }

 private:
  bool openSocket(unsigned slot) {
    const std::string error = openSessionSocket(sockets_[slot], config_, host_, slot);
    if (error.empty()) return true;
    fail(SessionFailure::kConnect, error);
    return false;
  }

  void queue(unsigned slot, std::string_view text) {
    sockets_[slot].out.append(text);
    host_.requestFlush(config_.client);
  }

  void flushSocket(unsigned slot) {
    const std::string error = flushSessionSocket(sockets_[slot], host_, config_.client, slot);
    if (!error.empty()) fail(SessionFailure::kDisconnected, error);
  }

  void readSocket(unsigned slot, std::int64_t nowNs) {
    std::string_view data;
    int error = 0;
    switch (readSessionSocket(sockets_[slot], host_.readBuffer(), data, error)) {
      case ReadStatus::kData:
        break;
      case ReadStatus::kWouldBlock:
        return;
      case ReadStatus::kClosed:
        fail(SessionFailure::kDisconnected, slotClosedText(slot));
        return;
      case ReadStatus::kError:
        fail(SessionFailure::kDisconnected, std::strerror(error));
        return;
      case ReadStatus::kTooLong:
        fail(SessionFailure::kProtocol, "frame longer than the read buffer");
        return;
    }
    const std::size_t consumed =
        forEachFrame(data, [&](std::string_view frame) { return onFrame(slot, frame, nowNs); });
    if (sockets_[slot].fd < 0) return;  // failed while handling a frame
    sockets_[slot].partial.assign(data.substr(consumed));
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

  std::array<SessionSocket, kSlots> sockets_;
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
