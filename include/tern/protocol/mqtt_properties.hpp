// MQTT 5.0 properties (OASIS MQTT Version 5.0, 2.2.2): decoding with every check the
// specification makes of a property block, and encoding.
//
// A property block is a Variable Byte Integer length followed by that many bytes of
// (identifier, value) entries. decodeProperties() reads one block for a given packet (or the Will
// Properties of a CONNECT) and refuses, with the reason code the specification names:
//   - Malformed Packet (0x81): a length or identifier that is not a minimal Variable Byte Integer,
//     a block longer than the bytes that follow, a value cut short, an identifier the specification
//     does not define or does not allow in this packet (2.2.2.2), a UTF-8 string that is not
//     well-formed or contains U+0000 [MQTT-1.5.4-1, -2];
//   - Protocol Error (0x82): a property other than User Property given twice (Subscription
//     Identifier may repeat only in a PUBLISH sent to a client, and a client's PUBLISH may not
//     carry one at all [MQTT-3.3.4-6]), or a value the specification
//     forbids (Payload Format Indicator, Request Problem / Response Information, Maximum QoS and the
//     "available" flags other than 0 or 1; Receive Maximum, Maximum Packet Size, Topic Alias and
//     Subscription Identifier of 0).
// Checks that need more than the block (a Topic Alias above the maximum that was offered, a
// Payload Format Indicator of 1 over a payload that is not UTF-8) are the caller's.
//
// Decoding allocates nothing: string and binary values are views into the caller's bytes, and
// the properties that may repeat (User Property, Subscription Identifier) are walked again from
// the validated block when asked for (forEachUserProperty, forEachSubscriptionIdentifier).
// Encoding appends to a caller-owned std::string (PropertyWriter).
//
// Pure functions on caller-owned data: any thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "tern/protocol/mqtt_reason_code.hpp"

namespace tern::protocol::mqtt {

enum class PropertyId : std::uint8_t {
  kPayloadFormatIndicator = 0x01,
  kMessageExpiryInterval = 0x02,
  kContentType = 0x03,
  kResponseTopic = 0x08,
  kCorrelationData = 0x09,
  kSubscriptionIdentifier = 0x0B,
  kSessionExpiryInterval = 0x11,
  kAssignedClientIdentifier = 0x12,
  kServerKeepAlive = 0x13,
  kAuthenticationMethod = 0x15,
  kAuthenticationData = 0x16,
  kRequestProblemInformation = 0x17,
  kWillDelayInterval = 0x18,
  kRequestResponseInformation = 0x19,
  kResponseInformation = 0x1A,
  kServerReference = 0x1C,
  kReasonString = 0x1F,
  kReceiveMaximum = 0x21,
  kTopicAliasMaximum = 0x22,
  kTopicAlias = 0x23,
  kMaximumQos = 0x24,
  kRetainAvailable = 0x25,
  kUserProperty = 0x26,
  kMaximumPacketSize = 0x27,
  kWildcardSubscriptionAvailable = 0x28,
  kSubscriptionIdentifierAvailable = 0x29,
  kSharedSubscriptionAvailable = 0x2A,
};

// Where a property block sits: the packet it belongs to, or the Will Properties of a CONNECT.
// kPublishToClient is a PUBLISH sent by the server, the one place where Subscription Identifier
// may appear more than once.
enum class PropertyContext : std::uint8_t {
  kConnect,
  kConnack,
  kPublish,
  kPublishToClient,
  kWill,
  kPuback,
  kPubrec,
  kPubrel,
  kPubcomp,
  kSubscribe,
  kSuback,
  kUnsubscribe,
  kUnsuback,
  kDisconnect,
  kAuth,
};

// The value types of 2.2.2.2.
enum class PropertyType : std::uint8_t {
  kByte,
  kTwoByteInteger,
  kFourByteInteger,
  kVariableByteInteger,
  kUtf8String,
  kBinaryData,
  kUtf8StringPair,
};

// The type of a defined identifier; false for an undefined one.
bool propertyType(std::uint8_t id, PropertyType& type) noexcept;
// True when the specification allows property `id` in `context`.
bool propertyAllowed(PropertyId id, PropertyContext context) noexcept;

// The largest value of a Variable Byte Integer (four bytes).
inline constexpr std::uint32_t kMaxVariableByteInteger = 268'435'455;

// Reads a Variable Byte Integer from the start of `in`: its size in bytes (1..4), 0 when `in`
// ends inside it, or -1 when it is longer than four bytes or not in its minimal form
// [MQTT-1.5.5-1].
int decodeVariableByteInteger(std::string_view in, std::uint32_t& value) noexcept;
// Bytes of the Variable Byte Integer for `value`. REQUIRES: value <= kMaxVariableByteInteger.
constexpr std::size_t variableByteIntegerSize(std::uint32_t value) noexcept {
  return value < 128 ? 1 : value < 16'384 ? 2 : value < 2'097'152 ? 3 : 4;
}

// A decoded property block. Scalars and views are meaningful only when has(id); views point into
// the bytes given to decodeProperties and live as long as they do.
struct Properties {
  std::uint64_t present = 0;  // bit `id` set: property `id` appeared
  std::string_view block;     // the entries (without the length), validated

  std::uint8_t payloadFormatIndicator = 0;
  std::uint32_t messageExpiryInterval = 0;
  std::string_view contentType;
  std::string_view responseTopic;
  std::string_view correlationData;
  std::uint32_t subscriptionIdentifier = 0;  // the first one
  std::uint32_t subscriptionIdentifierCount = 0;
  std::uint32_t sessionExpiryInterval = 0;
  std::string_view assignedClientIdentifier;
  std::uint16_t serverKeepAlive = 0;
  std::string_view authenticationMethod;
  std::string_view authenticationData;
  std::uint8_t requestProblemInformation = 1;  // the default when absent
  std::uint32_t willDelayInterval = 0;
  std::uint8_t requestResponseInformation = 0;  // the default when absent
  std::string_view responseInformation;
  std::string_view serverReference;
  std::string_view reasonString;
  std::uint16_t receiveMaximum = 65'535;  // the default when absent
  std::uint16_t topicAliasMaximum = 0;
  std::uint16_t topicAlias = 0;
  std::uint8_t maximumQos = 2;
  std::uint8_t retainAvailable = 1;
  std::uint32_t userPropertyCount = 0;
  std::uint32_t maximumPacketSize = 0;  // 0: absent, no limit
  std::uint8_t wildcardSubscriptionAvailable = 1;
  std::uint8_t subscriptionIdentifierAvailable = 1;
  std::uint8_t sharedSubscriptionAvailable = 1;

  bool has(PropertyId id) const noexcept { return (present >> static_cast<unsigned>(id) & 1) != 0; }
  bool operator==(const Properties&) const = default;
  bool empty() const noexcept { return block.empty(); }

  // Calls f(name, value) for every User Property, in the order they appeared [MQTT-3.3.2-18].
  template <typename F>
  void forEachUserProperty(F&& f) const;
  // Calls f(identifier) for every Subscription Identifier, in order.
  template <typename F>
  void forEachSubscriptionIdentifier(F&& f) const;
};

struct PropertyResult {
  ReasonCode reason = ReasonCode::kSuccess;  // kSuccess, kMalformedPacket or kProtocolError
  std::string_view detail;                   // what was wrong, for a Reason String and the log
  std::size_t consumed = 0;                  // bytes of `in` the block took (length included)
  bool ok() const noexcept { return reason == ReasonCode::kSuccess; }
};

// Decodes the property block at the start of `in` (its length, then the entries) for `context`
// into `out` (reset first). On failure `out` is unspecified.
PropertyResult decodeProperties(std::string_view in, PropertyContext context, Properties& out);

// Appends one property block to `out`: the writer reserves the length, each call appends one
// entry, and finish() writes the length in front (moving the entries when the length needs more
// than one byte, which happens only for blocks of 128 bytes or more). The caller keeps to what the
// context allows; the writer checks nothing.
class PropertyWriter {
 public:
  explicit PropertyWriter(std::string& out) : out_(out), start_(out.size()) { out_.push_back(0); }
  void byte(PropertyId id, std::uint8_t value);
  void twoByte(PropertyId id, std::uint16_t value);
  void fourByte(PropertyId id, std::uint32_t value);
  // REQUIRES: value <= kMaxVariableByteInteger.
  void variable(PropertyId id, std::uint32_t value);
  // REQUIRES: text.size() <= 65535 (UTF-8 string or binary data).
  void string(PropertyId id, std::string_view text);
  void userProperty(std::string_view name, std::string_view value);
  // Appends entries that were validated by decodeProperties (e.g. Properties::block, to pass a
  // message's properties through unchanged).
  void raw(std::string_view entries) { out_.append(entries); }
  // Writes the block's length. Returns the size of the whole block. Call once.
  std::size_t finish();

 private:
  void put16(std::uint16_t value);
  std::string& out_;
  std::size_t start_;
};

// Appends the Variable Byte Integer for `value`. REQUIRES: value <= kMaxVariableByteInteger.
void appendVariableByteInteger(std::string& out, std::uint32_t value);

// ---- implementation of the walks ------------------------------------------------------------

namespace detail {
// The size of the value of a property of type `type` at the start of `in` (validated bytes).
std::size_t propertyValueSize(PropertyType type, std::string_view in) noexcept;
inline std::string_view lengthPrefixed(std::string_view in) noexcept {
  const std::size_t n = (static_cast<std::uint8_t>(in[0]) << 8) | static_cast<std::uint8_t>(in[1]);
  return in.substr(2, n);
}
}  // namespace detail

namespace detail {
// Calls f(id, value bytes onward) for every entry of a validated block, in order.
template <typename F>
void forEachEntry(std::string_view block, F&& f) {
  while (!block.empty()) {
    const auto id = static_cast<std::uint8_t>(block[0]);
    block.remove_prefix(1);
    PropertyType type{};
    propertyType(id, type);
    f(id, block);
    block.remove_prefix(propertyValueSize(type, block));
  }
}
}  // namespace detail

template <typename F>
void Properties::forEachUserProperty(F&& f) const {
  detail::forEachEntry(block, [&](std::uint8_t id, std::string_view value) {
    if (id != static_cast<std::uint8_t>(PropertyId::kUserProperty)) return;
    const std::string_view name = detail::lengthPrefixed(value);
    f(name, detail::lengthPrefixed(value.substr(2 + name.size())));
  });
}

template <typename F>
void Properties::forEachSubscriptionIdentifier(F&& f) const {
  detail::forEachEntry(block, [&](std::uint8_t id, std::string_view value) {
    if (id != static_cast<std::uint8_t>(PropertyId::kSubscriptionIdentifier)) return;
    std::uint32_t identifier = 0;
    decodeVariableByteInteger(value, identifier);
    f(identifier);
  });
}

}  // namespace tern::protocol::mqtt
