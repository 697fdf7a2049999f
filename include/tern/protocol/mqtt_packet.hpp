// MQTT 3.1.1 and 5.0 control packets as values: what the decoder produces and the encoder
// consumes. The fields marked "5.0" are meaningful only on a connection of protocol level 5 (they
// keep their defaults on 3.1.1); everything else means the same in both.
//
// Every string and binary field is a view INTO the buffer that was decoded; a packet is valid only
// while the caller keeps those bytes (until it consumes them from its input buffer). Nothing here
// owns memory or allocates; SUBSCRIBE and UNSUBSCRIBE keep their payload as one view and iterate
// over it, because the decoder has already validated its framing once.
//
// Which layer decides what:
//   - The decoder closes the connection for everything the spec calls malformed or a protocol
//     violation within one packet (see DecodeStatus in mqtt_decoder.hpp), and reports the one
//     CONNECT defect that needs an answer first: unacceptable protocol level (CONNACK 0x01).
//   - The broker decides everything that depends on state or policy: the first packet must be
//     CONNECT and only the first; CONNACK 0x02 (clientIdAcceptable below); authentication
//     (CONNACK 0x04/0x05); SUBACK 0x80 for an invalid topic filter (routing::validateTopicFilter,
//     the decoder only guarantees the filter is well-formed UTF-8 without U+0000); packet-id
//     bookkeeping for QoS 1/2.
//
// Pure values and pure functions: any thread.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <span>
#include <string_view>
#include <type_traits>
#include <variant>

#include "tern/protocol/mqtt_properties.hpp"
#include "tern/protocol/mqtt_reason_code.hpp"

namespace tern::protocol::mqtt {

// The values are the packet type field (the high nibble of the first byte).
enum class PacketType : std::uint8_t {
  kConnect = 1,
  kConnack = 2,
  kPublish = 3,
  kPuback = 4,
  kPubrec = 5,
  kPubrel = 6,
  kPubcomp = 7,
  kSubscribe = 8,
  kSuback = 9,
  kUnsubscribe = 10,
  kUnsuback = 11,
  kPingreq = 12,
  kPingresp = 13,
  kDisconnect = 14,
  kAuth = 15,  // 5.0 only (reserved in 3.1.1)
};

// "MQTT", protocol level 4: MQTT 3.1.1. "MQIsdp", level 3: MQTT 3.1, the same wire format.
inline constexpr std::string_view kProtocolName311 = "MQTT";
inline constexpr std::uint8_t kProtocolLevel311 = 4;
inline constexpr std::string_view kProtocolName31 = "MQIsdp";
inline constexpr std::uint8_t kProtocolLevel31 = 3;
// "MQTT", protocol level 5: MQTT 5.0, which adds properties and reason codes to the packets.
inline constexpr std::uint8_t kProtocolLevel5 = 5;

// The remaining length is at most four 7-bit groups; a whole packet is at most 5 + that bytes.
inline constexpr std::uint32_t kMaxRemainingLength = 268'435'455;
inline constexpr std::size_t kMaxFixedHeaderSize = 5;
inline constexpr std::size_t kMaxPacketSize = kMaxFixedHeaderSize + kMaxRemainingLength;
// A string or binary field carries a 16-bit length.
inline constexpr std::size_t kMaxStringBytes = 65535;

enum class ConnectReturnCode : std::uint8_t {
  kAccepted = 0x00,
  kUnacceptableProtocolVersion = 0x01,
  kIdentifierRejected = 0x02,
  kServerUnavailable = 0x03,
  kBadUsernameOrPassword = 0x04,
  kNotAuthorized = 0x05,
};

// SUBACK return codes: the granted QoS (0, 1, 2) or this failure code.
inline constexpr std::uint8_t kSubackFailure = 0x80;

struct Connect {
  std::string_view protocolName = kProtocolName311;
  std::uint8_t protocolLevel = kProtocolLevel311;
  bool cleanSession = true;
  bool willFlag = false;
  std::uint8_t willQos = 0;
  bool willRetain = false;
  bool usernameFlag = false;
  bool passwordFlag = false;
  std::uint16_t keepAlive = 0;  // seconds; 0 turns the keep-alive off
  std::string_view clientId;    // may be empty: see clientIdAcceptable
  std::string_view willTopic;   // valid topic name when willFlag, else empty
  std::string_view willPayload;
  std::string_view username;  // present when usernameFlag
  std::string_view password;  // binary; present when passwordFlag
  Properties properties;      // 5.0
  Properties willProperties;  // 5.0, when willFlag

  bool operator==(const Connect&) const = default;
};

struct Connack {
  bool sessionPresent = false;
  ConnectReturnCode returnCode = ConnectReturnCode::kAccepted;  // 3.1.1
  ReasonCode reason = ReasonCode::kSuccess;                     // 5.0
  Properties properties;                                        // 5.0

  bool operator==(const Connack&) const = default;
};

struct Publish {
  bool dup = false;
  std::uint8_t qos = 0;
  bool retain = false;
  std::string_view topic;      // valid topic name (routing::validateTopicName)
  std::uint16_t packetId = 0;  // non-zero when qos > 0, 0 when qos == 0
  std::string_view payload;    // binary, may be empty
  // 5.0. The topic may be empty when properties.topicAlias names it.
  Properties properties;

  bool operator==(const Publish&) const = default;
};

struct Puback {
  std::uint16_t packetId = 0;
  ReasonCode reason = ReasonCode::kSuccess;  // 5.0
  Properties properties;                     // 5.0
  bool operator==(const Puback&) const = default;
};
struct Pubrec {
  std::uint16_t packetId = 0;
  ReasonCode reason = ReasonCode::kSuccess;  // 5.0
  Properties properties;                     // 5.0
  bool operator==(const Pubrec&) const = default;
};
struct Pubrel {
  std::uint16_t packetId = 0;
  ReasonCode reason = ReasonCode::kSuccess;  // 5.0
  Properties properties;                     // 5.0
  bool operator==(const Pubrel&) const = default;
};
struct Pubcomp {
  std::uint16_t packetId = 0;
  ReasonCode reason = ReasonCode::kSuccess;  // 5.0
  Properties properties;                     // 5.0
  bool operator==(const Pubcomp&) const = default;
};

namespace detail {
// The big-endian 16-bit length that prefixes a string on the wire at `at`.
inline std::size_t lengthPrefixAt(const char* at) noexcept {
  return (static_cast<std::size_t>(static_cast<std::uint8_t>(at[0])) << 8) |
         static_cast<std::uint8_t>(at[1]);
}
}  // namespace detail

// One entry of a SUBSCRIBE: a topic filter (well-formed UTF-8 without U+0000; wildcard syntax NOT
// yet checked), the requested QoS (0..2) and, in 5.0, the other subscription options (3.8.3.1).
struct Subscription {
  std::string_view filter;
  std::uint8_t qos = 0;
  bool noLocal = false;             // 5.0: not sent back to the connection that published it
  bool retainAsPublished = false;   // 5.0: forwarded with the retain flag it was published with
  std::uint8_t retainHandling = 0;  // 5.0: 0 send retained, 1 only if new, 2 never

  bool operator==(const Subscription&) const = default;
};

// The entries of a SUBSCRIBE, read in place from the validated payload
// (repeated: 16-bit length, filter bytes, options byte).
//   for (const Subscription s : subscribe.subscriptions) { ... }
class SubscriptionList {
 public:
  class Iterator {
   public:
    using iterator_category = std::input_iterator_tag;
    using value_type = Subscription;
    using difference_type = std::ptrdiff_t;
    using pointer = void;
    using reference = Subscription;

    Iterator() noexcept = default;
    explicit Iterator(const char* at) noexcept : at_(at) {}
    Subscription operator*() const noexcept {
      const std::size_t length = detail::lengthPrefixAt(at_);
      const auto options = static_cast<std::uint8_t>(at_[2 + length]);
      return {std::string_view(at_ + 2, length), static_cast<std::uint8_t>(options & 0x03),
              (options & 0x04) != 0, (options & 0x08) != 0,
              static_cast<std::uint8_t>((options >> 4) & 0x03)};
    }
    Iterator& operator++() noexcept {
      at_ += 3 + detail::lengthPrefixAt(at_);
      return *this;
    }
    Iterator operator++(int) noexcept {
      Iterator before = *this;
      ++*this;
      return before;
    }
    bool operator==(const Iterator&) const = default;

   private:
    const char* at_ = nullptr;
  };

  SubscriptionList() noexcept = default;
  // REQUIRES: `wire` is a SUBSCRIBE payload the decoder validated, holding `count` entries.
  SubscriptionList(std::string_view wire, std::size_t count) noexcept
      : wire_(wire), count_(count) {}

  Iterator begin() const noexcept { return Iterator(wire_.data()); }
  Iterator end() const noexcept { return Iterator(wire_.data() + wire_.size()); }
  std::size_t size() const noexcept { return count_; }
  bool empty() const noexcept { return count_ == 0; }
  // The payload bytes exactly as on the wire, for re-encoding without walking the entries.
  std::string_view wire() const noexcept { return wire_; }

  bool operator==(const SubscriptionList& other) const noexcept {
    return count_ == other.count_ && wire_ == other.wire_;
  }

 private:
  std::string_view wire_;
  std::size_t count_ = 0;
};

// The topic filters of an UNSUBSCRIBE, read in place from the validated payload
// (repeated: 16-bit length, filter bytes). Each is well-formed UTF-8 without U+0000.
class FilterList {
 public:
  class Iterator {
   public:
    using iterator_category = std::input_iterator_tag;
    using value_type = std::string_view;
    using difference_type = std::ptrdiff_t;
    using pointer = void;
    using reference = std::string_view;

    Iterator() noexcept = default;
    explicit Iterator(const char* at) noexcept : at_(at) {}
    std::string_view operator*() const noexcept { return {at_ + 2, detail::lengthPrefixAt(at_)}; }
    Iterator& operator++() noexcept {
      at_ += 2 + detail::lengthPrefixAt(at_);
      return *this;
    }
    Iterator operator++(int) noexcept {
      Iterator before = *this;
      ++*this;
      return before;
    }
    bool operator==(const Iterator&) const = default;

   private:
    const char* at_ = nullptr;
  };

  FilterList() noexcept = default;
  // REQUIRES: `wire` is an UNSUBSCRIBE payload the decoder validated, holding `count` filters.
  FilterList(std::string_view wire, std::size_t count) noexcept : wire_(wire), count_(count) {}

  Iterator begin() const noexcept { return Iterator(wire_.data()); }
  Iterator end() const noexcept { return Iterator(wire_.data() + wire_.size()); }
  std::size_t size() const noexcept { return count_; }
  bool empty() const noexcept { return count_ == 0; }
  std::string_view wire() const noexcept { return wire_; }

  bool operator==(const FilterList& other) const noexcept {
    return count_ == other.count_ && wire_ == other.wire_;
  }

 private:
  std::string_view wire_;
  std::size_t count_ = 0;
};

struct Subscribe {
  std::uint16_t packetId = 0;
  SubscriptionList subscriptions;  // at least one entry
  Properties properties;           // 5.0
  bool operator==(const Subscribe&) const = default;
};

struct Suback {
  std::uint16_t packetId = 0;
  // One per requested filter, in order: 0, 1, 2 or kSubackFailure (5.0: a SUBACK reason code).
  std::span<const std::uint8_t> returnCodes;
  Properties properties;  // 5.0

  bool operator==(const Suback& other) const noexcept {
    return packetId == other.packetId && properties == other.properties &&
           std::equal(returnCodes.begin(), returnCodes.end(), other.returnCodes.begin(),
                      other.returnCodes.end());
  }
};

struct Unsubscribe {
  std::uint16_t packetId = 0;
  FilterList filters;     // at least one filter
  Properties properties;  // 5.0
  bool operator==(const Unsubscribe&) const = default;
};

struct Unsuback {
  std::uint16_t packetId = 0;
  std::span<const std::uint8_t> reasonCodes;  // 5.0: one per filter, in order
  Properties properties;                      // 5.0
  bool operator==(const Unsuback& other) const noexcept {
    return packetId == other.packetId && properties == other.properties &&
           std::equal(reasonCodes.begin(), reasonCodes.end(), other.reasonCodes.begin(),
                      other.reasonCodes.end());
  }
};

struct Pingreq {
  bool operator==(const Pingreq&) const = default;
};
struct Pingresp {
  bool operator==(const Pingresp&) const = default;
};
struct Disconnect {
  ReasonCode reason = ReasonCode::kSuccess;  // 5.0 (Normal disconnection)
  Properties properties;                     // 5.0
  bool operator==(const Disconnect&) const = default;
};
// 5.0 only: the enhanced authentication exchange.
struct Auth {
  ReasonCode reason = ReasonCode::kSuccess;
  Properties properties;
  bool operator==(const Auth&) const = default;
};

// One decoded packet. The alternative's index is its PacketType value; monostate means "none".
using Packet =
    std::variant<std::monostate, Connect, Connack, Publish, Puback, Pubrec, Pubrel, Pubcomp,
                 Subscribe, Suback, Unsubscribe, Unsuback, Pingreq, Pingresp, Disconnect, Auth>;

static_assert(std::variant_size_v<Packet> == 16);
static_assert(std::is_same_v<std::variant_alternative_t<1, Packet>, Connect>);
static_assert(std::is_same_v<std::variant_alternative_t<14, Packet>, Disconnect>);
static_assert(std::is_same_v<std::variant_alternative_t<15, Packet>, Auth>);

// REQUIRES: `packet` holds a packet (not monostate).
inline PacketType typeOf(const Packet& packet) noexcept {
  return static_cast<PacketType>(packet.index());
}

// Upper-case name of a packet type, e.g. "PUBLISH".
std::string_view packetTypeName(PacketType type) noexcept;

// The CONNACK 0x02 decision, which belongs to the broker. False (refuse with 0x02) when:
//   - the id is empty and cleanSession is 0 in 3.1.1 [MQTT-3.1.3-8] (5.0 allows it), or the
//     protocol is 3.1 (level 3),
//     which requires 1..23 characters;
//   - the id is longer than `maxBytes` (or than 23 bytes for 3.1).
// An empty id with cleanSession 1 is acceptable: the broker assigns a unique id [MQTT-3.1.3-6].
// 3.1.1 requires accepting 1..23 bytes of [0-9a-zA-Z] [MQTT-3.1.3-5], so `maxBytes` should be at
// least 23; any other well-formed UTF-8 is accepted (the decoder has already checked it).
// Never allocates.
bool clientIdAcceptable(const Connect& connect, std::size_t maxBytes) noexcept;

}  // namespace tern::protocol::mqtt
