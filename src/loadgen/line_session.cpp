#include "tern/loadgen/line_session.hpp"

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

// How long a ready session whose broker closed one socket waits for the others to end too.
constexpr std::int64_t kEndGraceNs = 500'000'000;

class LineSession final : public SessionBase {
 public:
  LineSession(SessionHost& host, const SessionConfig& config) : SessionBase(host, config) {}
  ~LineSession() override { close(); }

  void start(std::int64_t /*nowNs*/) override {
    stage_ = Stage::kConnecting;
    if (!openSocket(kControl)) return;
    queue(kControl, connectFrame(config_.clientId, config_.username, config_.password));
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
    if (!ending_.empty()) return;  // canPublish() is false: the host does not call this
    SessionSocket& socket = sockets_[kPublish];
    // One reservation for the whole frame: "PUBLISH@" topic "@" payload "\n".
    const std::size_t size = 8 + topic.size() + 1 + payload.size() + 1;
    net::ByteBuffer& output = socket.output(host_.loop());
    char* out = output.writable(size).data();
    std::memcpy(out, "PUBLISH@", 8);
    out += 8;
    std::memcpy(out, topic.data(), topic.size());
    out += topic.size();
    *out++ = '@';
    std::memcpy(out, payload.data(), payload.size());
    out += payload.size();
    *out = '\n';
    output.commit(size);
    socket.flush(host_);
    pendingAcks_.push(intendedNs);
  }

  void onConnected(unsigned slot, int error, std::int64_t /*nowNs*/) override {
    if (slot >= kSlots || !sockets_[slot].connecting) return;
    if (error != 0) {
      fail(SessionFailure::kConnect, std::strerror(error));
      return;
    }
    sockets_[slot].connecting = false;  // what was queued meanwhile leaves now
  }

  void onReceive(unsigned slot, std::span<const char> bytes, std::int64_t nowNs) override {
    if (slot >= kSlots || !sockets_[slot].open()) return;
    const auto parse = [&](std::string_view data) -> std::size_t {
      const std::size_t consumed =
          forEachFrame(data, [&](std::string_view frame) { return onFrame(slot, frame, nowNs); });
      return stage_ == Stage::kFailed ? kParseStopped : consumed;
    };
    SessionSocket& socket = sockets_[slot];
    switch (
        receiveSessionBytes(socket, host_, std::string_view(bytes.data(), bytes.size()), parse)) {
      case ReceiveStatus::kOk:
      case ReceiveStatus::kStopped:
        return;
      case ReceiveStatus::kTooLong:
        fail(SessionFailure::kProtocol, "frame longer than 256 KiB");
        return;
      case ReceiveStatus::kTlsFailed:
        fail(SessionFailure::kConnect, "TLS: " + socket.tls->error());
        return;
      case ReceiveStatus::kWsRefused:
        fail(SessionFailure::kHandshake, socket.ws.problem);
        return;
      case ReceiveStatus::kWsClosed:
        fail(SessionFailure::kDisconnected, socket.ws.problem);
        return;
      case ReceiveStatus::kWsProtocol:
        fail(SessionFailure::kProtocol, socket.ws.problem);
        return;
    }
  }

  void onInputEnd(unsigned slot, int error, std::int64_t nowNs) override {
    if (slot >= kSlots || !sockets_[slot].open()) return;
    const char* why = error != 0 ? std::strerror(error) : slotClosedText(slot);
    if (stage_ != Stage::kReady) {
      fail(SessionFailure::kDisconnected, why);
      return;
    }
    // The end of one socket is not the end of what the broker sent on the others: the loop may
    // hand over a delivery the broker wrote before it went after this end (io_uring completes
    // the sockets in any order). So the session stops publishing (canPublish) and fails once
    // every socket has ended, or at the first tick after kEndGraceNs, whichever comes first.
    sockets_[slot].close(host_.loop());
    if (ending_.empty()) {
      ending_ = why;
      endingSinceNs_ = nowNs;
    }
    for (const SessionSocket& socket : sockets_) {
      if (socket.open()) return;
    }
    fail(SessionFailure::kDisconnected, ending_);
  }

  bool canPublish() const noexcept override { return ending_.empty(); }

  void tick(std::int64_t nowNs) override {
    if (!ending_.empty() && nowNs - endingSinceNs_ >= kEndGraceNs) {
      fail(SessionFailure::kDisconnected, ending_);
    }
  }

  std::size_t queuedBytes() const noexcept override {
    const net::EventLoop& loop = host_.loop();
    return sockets_[kControl].unsentBytes(loop) + sockets_[kPublish].unsentBytes(loop);
  }

  void sealOutput() noexcept override {
    for (SessionSocket& socket : sockets_) {
      if (!socket.seal(host_.loop())) {
        fail(SessionFailure::kProtocol, "TLS: " + socket.tls->error());
        return;
      }
    }
  }
  std::uint64_t unacknowledged() const noexcept override { return pendingAcks_.size(); }

  void close() noexcept override {
    for (SessionSocket& socket : sockets_)
      socket.close(host_.loop());
    if (stage_ != Stage::kFailed) stage_ = Stage::kClosed;
  }

 private:
  bool openSocket(unsigned slot) {
    const std::string error = openSessionSocket(sockets_[slot], config_, host_, slot);
    if (error.empty()) return true;
    fail(SessionFailure::kConnect, error);
    return false;
  }

  void queue(unsigned slot, std::string_view text) { sockets_[slot].send(host_, text); }

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
  std::string ending_;  // why the first socket ended, while the others drain; empty: none has
  std::int64_t endingSinceNs_ = 0;
};

}  // namespace

std::unique_ptr<Session> makeLineSession(SessionHost& host, const SessionConfig& config) {
  return std::make_unique<LineSession>(host, config);
}

}  // namespace tern::loadgen
