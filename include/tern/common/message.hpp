// Message: one published message, immutable and reference-counted, shared by every subscriber.
//
// A publish is copied exactly once, into a Message, by the worker that parsed it. Every delivery
// (local or on another worker, line protocol or MQTT) and the retained store hold references to
// that one copy; nobody copies the payload per subscriber.
//
// Layout: a single allocation holding the header and the bytes "<topic>@<contents>\n", then the
// MQTT 5.0 properties it is forwarded with (empty for other publishers). The line protocol's push
// frames are "MESSAGE@" or "RETAINED@" followed by exactly that tail, so they are written without
// formatting; MQTT reads topic() and contents() separately, and 5.0 subscribers properties().
//
// Thread safety: the bytes never change after make(); any thread may read them while it holds a
// reference. The count is atomic; any thread may add or drop references. The one mutable state
// besides the count, awaitsPublisher(), is atomic: set once by the publisher's worker, read by
// any.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <utility>

namespace tern::common {

class MessageRef;

// The publish a message came from, when the store must be able to tell (a QoS 2 publish of a
// persistent MQTT session, --data-dir): the publisher's client id, its packet id and a serial
// unique in the broker's data directory. serial 0: not named.
struct PublishName {
  std::string_view clientId;
  std::uint16_t packetId = 0;
  std::uint64_t serial = 0;
};

class Message {
 public:
  Message(const Message&) = delete;
  Message& operator=(const Message&) = delete;

  // Copies topic and contents into a new Message with one reference, owned by the returned ref.
  // `qos` is the MQTT quality of service the publisher asked for (0 for the line protocol).
  // Allocates once. Thread-safe.
  static MessageRef make(std::string_view topic, std::string_view contents, bool retain,
                         std::uint8_t qos = 0);
  // An MQTT 5.0 publish: `properties` are the property entries forwarded to 5.0 subscribers as
  // they are (validated, without Topic Alias and Message Expiry Interval), `expiresAt` the
  // monotonic time (ns) after which it is not delivered (0: never), and `origin` names the
  // session that published it (for No Local; 0: none). `name`, when its serial is not 0, is kept
  // with the message (publisher()).
  static MessageRef make5(std::string_view topic, std::string_view contents, bool retain,
                          std::uint8_t qos, std::string_view properties, std::int64_t expiresAt,
                          std::uint64_t origin = 0, const PublishName& name = {});
  // The same for a message parsed from a line-protocol frame, which is line-safe by construction
  // (no '@' in its topic, no LF in its contents): skips the scan of the contents.
  static MessageRef makeFromLine(std::string_view topic, std::string_view contents, bool retain);

  std::string_view topic() const noexcept { return {bytes(), topicSize_}; }
  std::string_view contents() const noexcept { return {bytes() + topicSize_ + 1, contentsSize_}; }
  // "<topic>@<contents>\n": the tail of a line-protocol MESSAGE or RETAINED frame.
  std::string_view lineTail() const noexcept { return {bytes(), topicSize_ + contentsSize_ + 2}; }
  // MQTT 5.0 property entries to forward (see make5); empty otherwise.
  std::string_view properties() const noexcept {
    return {bytes() + topicSize_ + contentsSize_ + 2, propertiesSize_};
  }
  // Monotonic ns after which the message is not delivered; 0: it does not expire.
  std::int64_t expiresAt() const noexcept { return expiresAt_; }
  // The publishing session's id (routing::SubscriberId::key()) for an MQTT 5.0 publish; 0 else.
  std::uint64_t origin() const noexcept { return origin_; }
  // --durability sync: a named message waits for its publisher's QoS 2 packet id to be durable
  // (or for that write to be given up) before a persistent session is sent it at QoS 2, so that a
  // crash cannot leave it both received and rolled back (docs/durability-design.md). True until
  // resolvePublisher(); always false for a message that is not named.
  bool awaitsPublisher() const noexcept {
    // Acquire pairs with resolvePublisher's release. The flag carries no data (the bytes are
    // immutable); the order only keeps a reader from seeing it before the write it announces.
    return publishSerial_ != 0 && !publisherResolved_.load(std::memory_order_acquire);
  }
  // The publisher's worker, once the packet id's write completed (or will not be made).
  void resolvePublisher() const noexcept {
    publisherResolved_.store(true, std::memory_order_release);
  }
  // The publish it came from (see make5); serial 0 when not named.
  PublishName publisher() const noexcept {
    return {{bytes() + topicSize_ + contentsSize_ + 2 + propertiesSize_, publisherSize_},
            publisherPacketId_,
            publishSerial_};
  }
  bool retain() const noexcept { return retain_; }
  std::uint8_t qos() const noexcept { return qos_; }
  // True when the line protocol can carry the message: the topic holds no '@' (the field
  // separator) and no LF, and the contents no LF and no trailing CR (the framing). Always true
  // for messages published with the line protocol; MQTT topics and payloads may not be. Every
  // line frame that carries a message checks this (broker: Worker::pushMessage).
  bool lineSafe() const noexcept { return lineSafe_; }
  // Heap bytes held by this message (header and text), for memory accounting.
  std::size_t footprint() const noexcept {
    return sizeof(Message) + topicSize_ + contentsSize_ + 2 + propertiesSize_ + publisherSize_;
  }

  // Adds `count` references in one atomic add (one per destination, not one per subscriber).
  // Never allocates. Thread-safe.
  void addRefs(std::uint32_t count) const noexcept {
    // Relaxed: taking a reference needs no ordering; the caller already holds one, so the message
    // cannot be freed concurrently.
    refs_.fetch_add(count, std::memory_order_relaxed);
  }
  // Drops one reference and frees the message when it was the last. Thread-safe.
  void release() const noexcept {
    // acq_rel: the release publishes this thread's reads of the bytes before the count drops, and
    // the thread that drops the last reference acquires all of them before freeing.
    if (refs_.fetch_sub(1, std::memory_order_acq_rel) == 1) destroy();
  }

 private:
  Message(std::uint32_t topicSize, std::uint32_t contentsSize, std::uint32_t propertiesSize,
          std::int64_t expiresAt, std::uint64_t origin, bool retain, std::uint8_t qos,
          bool lineSafe, const PublishName& name)
      : topicSize_(topicSize),
        contentsSize_(contentsSize),
        propertiesSize_(propertiesSize),
        publisherSize_(name.serial != 0 ? static_cast<std::uint32_t>(name.clientId.size()) : 0),
        expiresAt_(expiresAt),
        origin_(origin),
        publishSerial_(name.serial),
        publisherPacketId_(name.serial != 0 ? name.packetId : 0),
        retain_(retain),
        qos_(qos),
        lineSafe_(lineSafe) {}
  ~Message() = default;
  const char* bytes() const noexcept { return reinterpret_cast<const char*>(this + 1); }
  char* bytes() noexcept { return reinterpret_cast<char*>(this + 1); }
  void destroy() const noexcept;
  static MessageRef create(std::string_view topic, std::string_view contents, bool retain,
                           std::uint8_t qos, bool lineSafe, std::string_view properties = {},
                           std::int64_t expiresAt = 0, std::uint64_t origin = 0,
                           const PublishName& name = {});

  mutable std::atomic<std::uint32_t> refs_{1};
  mutable std::atomic<bool> publisherResolved_{false};
  std::uint32_t topicSize_;
  std::uint32_t contentsSize_;
  std::uint32_t propertiesSize_;
  std::uint32_t publisherSize_;
  std::int64_t expiresAt_;
  std::uint64_t origin_;
  std::uint64_t publishSerial_;
  std::uint16_t publisherPacketId_;
  bool retain_;
  std::uint8_t qos_;
  bool lineSafe_;
};

// Owning handle: holds one reference, move-only so that taking a reference is always explicit.
class MessageRef {
 public:
  MessageRef() noexcept = default;
  // Adopts one reference the caller already holds (from make() or addRefs()).
  static MessageRef adopt(const Message* message) noexcept { return MessageRef(message); }
  // Takes a new reference to a message the caller can see but does not own a reference to.
  static MessageRef share(const Message* message) noexcept {
    if (message != nullptr) message->addRefs(1);
    return MessageRef(message);
  }
  MessageRef(MessageRef&& other) noexcept : message_(std::exchange(other.message_, nullptr)) {}
  MessageRef& operator=(MessageRef&& other) noexcept {
    if (this != &other) {
      reset();
      message_ = std::exchange(other.message_, nullptr);
    }
    return *this;
  }
  MessageRef(const MessageRef&) = delete;
  MessageRef& operator=(const MessageRef&) = delete;
  ~MessageRef() { reset(); }

  const Message* get() const noexcept { return message_; }
  const Message* operator->() const noexcept { return message_; }
  const Message& operator*() const noexcept { return *message_; }
  explicit operator bool() const noexcept { return message_ != nullptr; }
  // Gives up ownership without dropping the reference (the caller now owns it).
  const Message* release() noexcept { return std::exchange(message_, nullptr); }
  void reset() noexcept {
    if (message_ != nullptr) std::exchange(message_, nullptr)->release();
  }

 private:
  explicit MessageRef(const Message* message) noexcept : message_(message) {}
  const Message* message_ = nullptr;
};

}  // namespace tern::common
