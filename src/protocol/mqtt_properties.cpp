#include "tern/protocol/mqtt_properties.hpp"

#include <array>

#include "tern/common/utf8.hpp"

namespace tern::protocol::mqtt {

namespace {

constexpr std::uint16_t bit(PropertyContext context) noexcept {
  return static_cast<std::uint16_t>(1u << static_cast<unsigned>(context));
}

using C = PropertyContext;
constexpr std::uint16_t kPublishes = bit(C::kPublish) | bit(C::kPublishToClient);
constexpr std::uint16_t kMessage = kPublishes | bit(C::kWill);
constexpr std::uint16_t kEveryContext = 0x7FFF;  // the 15 contexts
constexpr std::uint16_t kWithReasonString = bit(C::kConnack) | bit(C::kPuback) | bit(C::kPubrec) |
                                            bit(C::kPubrel) | bit(C::kPubcomp) | bit(C::kSuback) |
                                            bit(C::kUnsuback) | bit(C::kDisconnect) | bit(C::kAuth);

struct Rule {
  bool defined = false;
  PropertyType type = PropertyType::kByte;
  std::uint16_t contexts = 0;  // where it is allowed (2.2.2.2, the table of properties)
};

constexpr Rule rule(PropertyType type, std::uint16_t contexts) noexcept {
  return Rule{true, type, contexts};
}

// Indexed by identifier; every defined one is below 0x2B.
constexpr std::size_t kRules = 0x2B;
constexpr auto kRuleTable = [] {
  using T = PropertyType;
  std::array<Rule, kRules> r{};
  r[0x01] = rule(T::kByte, kMessage);
  r[0x02] = rule(T::kFourByteInteger, kMessage);
  r[0x03] = rule(T::kUtf8String, kMessage);
  r[0x08] = rule(T::kUtf8String, kMessage);
  r[0x09] = rule(T::kBinaryData, kMessage);
  // Also in the PUBLISH table entry, but a client's PUBLISH must not carry it [MQTT-3.3.4-6]:
  // decodeProperties answers that with a Protocol Error before this is looked at.
  r[0x0B] = rule(T::kVariableByteInteger, bit(C::kPublishToClient) | bit(C::kSubscribe));
  r[0x11] = rule(T::kFourByteInteger, bit(C::kConnect) | bit(C::kConnack) | bit(C::kDisconnect));
  r[0x12] = rule(T::kUtf8String, bit(C::kConnack));
  r[0x13] = rule(T::kTwoByteInteger, bit(C::kConnack));
  r[0x15] = rule(T::kUtf8String, bit(C::kConnect) | bit(C::kConnack) | bit(C::kAuth));
  r[0x16] = rule(T::kBinaryData, bit(C::kConnect) | bit(C::kConnack) | bit(C::kAuth));
  r[0x17] = rule(T::kByte, bit(C::kConnect));
  r[0x18] = rule(T::kFourByteInteger, bit(C::kWill));
  r[0x19] = rule(T::kByte, bit(C::kConnect));
  r[0x1A] = rule(T::kUtf8String, bit(C::kConnack));
  r[0x1C] = rule(T::kUtf8String, bit(C::kConnack) | bit(C::kDisconnect));
  r[0x1F] = rule(T::kUtf8String, kWithReasonString);
  r[0x21] = rule(T::kTwoByteInteger, bit(C::kConnect) | bit(C::kConnack));
  r[0x22] = rule(T::kTwoByteInteger, bit(C::kConnect) | bit(C::kConnack));
  r[0x23] = rule(T::kTwoByteInteger, kPublishes);
  r[0x24] = rule(T::kByte, bit(C::kConnack));
  r[0x25] = rule(T::kByte, bit(C::kConnack));
  r[0x26] = rule(T::kUtf8StringPair, kEveryContext);
  r[0x27] = rule(T::kFourByteInteger, bit(C::kConnect) | bit(C::kConnack));
  r[0x28] = rule(T::kByte, bit(C::kConnack));
  r[0x29] = rule(T::kByte, bit(C::kConnack));
  r[0x2A] = rule(T::kByte, bit(C::kConnack));
  return r;
}();

PropertyResult malformed(std::string_view detail) {
  return PropertyResult{ReasonCode::kMalformedPacket, detail, 0};
}
PropertyResult protocolError(std::string_view detail) {
  return PropertyResult{ReasonCode::kProtocolError, detail, 0};
}

std::uint16_t read16(std::string_view in) noexcept {
  return static_cast<std::uint16_t>((static_cast<std::uint8_t>(in[0]) << 8) |
                                    static_cast<std::uint8_t>(in[1]));
}
std::uint32_t read32(std::string_view in) noexcept {
  return (std::uint32_t{static_cast<std::uint8_t>(in[0])} << 24) |
         (std::uint32_t{static_cast<std::uint8_t>(in[1])} << 16) |
         (std::uint32_t{static_cast<std::uint8_t>(in[2])} << 8) |
         std::uint32_t{static_cast<std::uint8_t>(in[3])};
}

// A UTF-8 string of the specification: well-formed and without U+0000 [MQTT-1.5.4-1, -2].
bool validText(std::string_view text) noexcept {
  return text.find('\0') == std::string_view::npos && common::isValidUtf8(text);
}

bool flag(std::uint8_t value) noexcept {
  return value <= 1;
}

}  // namespace

bool propertyType(std::uint8_t id, PropertyType& type) noexcept {
  if (id >= kRules || !kRuleTable[id].defined) return false;
  type = kRuleTable[id].type;
  return true;
}

bool propertyAllowed(PropertyId id, PropertyContext context) noexcept {
  const auto index = static_cast<std::uint8_t>(id);
  return index < kRules && kRuleTable[index].defined &&
         (kRuleTable[index].contexts & bit(context)) != 0;
}

int decodeVariableByteInteger(std::string_view in, std::uint32_t& value) noexcept {
  std::uint32_t result = 0;
  for (std::size_t i = 0; i < 4; ++i) {
    if (i == in.size()) return 0;
    const auto byte = static_cast<std::uint8_t>(in[i]);
    result |= std::uint32_t{byte & 0x7Fu} << (7 * i);
    if ((byte & 0x80) == 0) {
      // Minimal: a last byte of 0 after the first would have fitted in fewer bytes.
      if (i > 0 && byte == 0) return -1;
      value = result;
      return static_cast<int>(i + 1);
    }
  }
  return -1;
}

namespace detail {

std::size_t propertyValueSize(PropertyType type, std::string_view in) noexcept {
  switch (type) {
    case PropertyType::kByte:
      return 1;
    case PropertyType::kTwoByteInteger:
      return 2;
    case PropertyType::kFourByteInteger:
      return 4;
    case PropertyType::kVariableByteInteger: {
      std::uint32_t ignored = 0;
      return static_cast<std::size_t>(decodeVariableByteInteger(in, ignored));
    }
    case PropertyType::kUtf8String:
    case PropertyType::kBinaryData:
      return 2 + read16(in);
    case PropertyType::kUtf8StringPair: {
      const std::size_t name = 2 + read16(in);
      return name + 2 + read16(in.substr(name));
    }
  }
  return 0;
}

}  // namespace detail

PropertyResult decodeProperties(std::string_view in, PropertyContext context, Properties& out) {
  out = Properties{};
  std::uint32_t length = 0;
  const int lengthSize = decodeVariableByteInteger(in, length);
  if (lengthSize < 0) return malformed("property length is not a valid Variable Byte Integer");
  if (lengthSize == 0) return malformed("packet ends inside the property length");
  if (length > in.size() - static_cast<std::size_t>(lengthSize)) {
    return malformed("property length is longer than the packet");
  }
  std::string_view rest = in.substr(static_cast<std::size_t>(lengthSize), length);
  out.block = rest;
  while (!rest.empty()) {
    std::uint32_t id = 0;
    const int idSize = decodeVariableByteInteger(rest, id);
    if (idSize <= 0) return malformed("property identifier is not a valid Variable Byte Integer");
    rest.remove_prefix(static_cast<std::size_t>(idSize));
    if (id >= kRules || !kRuleTable[id].defined) return malformed("unknown property identifier");
    const Rule& r = kRuleTable[id];
    if (id == static_cast<std::uint8_t>(PropertyId::kSubscriptionIdentifier) &&
        context == C::kPublish) {
      return protocolError("a client's PUBLISH carries a Subscription Identifier");
    }
    if ((r.contexts & bit(context)) == 0) return malformed("property not allowed in this packet");
    const auto pid = static_cast<PropertyId>(id);
    const bool repeatable =
        pid == PropertyId::kUserProperty ||
        (pid == PropertyId::kSubscriptionIdentifier && context == C::kPublishToClient);
    if (out.has(pid) && !repeatable) return protocolError("property given more than once");
    out.present |= std::uint64_t{1} << id;

    // The value: its bytes are checked to be there before any is read.
    std::uint8_t byteValue = 0;
    std::uint16_t twoBytes = 0;
    std::uint32_t fourBytes = 0;
    std::string_view text;
    std::string_view second;
    switch (r.type) {
      case PropertyType::kByte:
        if (rest.empty()) return malformed("property value cut short");
        byteValue = static_cast<std::uint8_t>(rest[0]);
        rest.remove_prefix(1);
        break;
      case PropertyType::kTwoByteInteger:
        if (rest.size() < 2) return malformed("property value cut short");
        twoBytes = read16(rest);
        rest.remove_prefix(2);
        break;
      case PropertyType::kFourByteInteger:
        if (rest.size() < 4) return malformed("property value cut short");
        fourBytes = read32(rest);
        rest.remove_prefix(4);
        break;
      case PropertyType::kVariableByteInteger: {
        const int n = decodeVariableByteInteger(rest, fourBytes);
        if (n <= 0) return malformed("property value is not a valid Variable Byte Integer");
        rest.remove_prefix(static_cast<std::size_t>(n));
        break;
      }
      case PropertyType::kUtf8String:
      case PropertyType::kBinaryData:
      case PropertyType::kUtf8StringPair: {
        if (rest.size() < 2 || rest.size() - 2 < read16(rest)) {
          return malformed("property value cut short");
        }
        text = rest.substr(2, read16(rest));
        rest.remove_prefix(2 + text.size());
        if (r.type == PropertyType::kUtf8StringPair) {
          if (rest.size() < 2 || rest.size() - 2 < read16(rest)) {
            return malformed("property value cut short");
          }
          second = rest.substr(2, read16(rest));
          rest.remove_prefix(2 + second.size());
          if (!validText(second)) return malformed("property string is not valid UTF-8");
        }
        if (r.type != PropertyType::kBinaryData && !validText(text)) {
          return malformed("property string is not valid UTF-8");
        }
        break;
      }
    }

    switch (pid) {
      case PropertyId::kPayloadFormatIndicator:
        if (!flag(byteValue)) return protocolError("Payload Format Indicator is not 0 or 1");
        out.payloadFormatIndicator = byteValue;
        break;
      case PropertyId::kMessageExpiryInterval:
        out.messageExpiryInterval = fourBytes;
        break;
      case PropertyId::kContentType:
        out.contentType = text;
        break;
      case PropertyId::kResponseTopic:
        out.responseTopic = text;
        break;
      case PropertyId::kCorrelationData:
        out.correlationData = text;
        break;
      case PropertyId::kSubscriptionIdentifier:
        if (fourBytes == 0) return protocolError("Subscription Identifier of 0");
        if (out.subscriptionIdentifierCount++ == 0) out.subscriptionIdentifier = fourBytes;
        break;
      case PropertyId::kSessionExpiryInterval:
        out.sessionExpiryInterval = fourBytes;
        break;
      case PropertyId::kAssignedClientIdentifier:
        out.assignedClientIdentifier = text;
        break;
      case PropertyId::kServerKeepAlive:
        out.serverKeepAlive = twoBytes;
        break;
      case PropertyId::kAuthenticationMethod:
        out.authenticationMethod = text;
        break;
      case PropertyId::kAuthenticationData:
        out.authenticationData = text;
        break;
      case PropertyId::kRequestProblemInformation:
        if (!flag(byteValue)) return protocolError("Request Problem Information is not 0 or 1");
        out.requestProblemInformation = byteValue;
        break;
      case PropertyId::kWillDelayInterval:
        out.willDelayInterval = fourBytes;
        break;
      case PropertyId::kRequestResponseInformation:
        if (!flag(byteValue)) return protocolError("Request Response Information is not 0 or 1");
        out.requestResponseInformation = byteValue;
        break;
      case PropertyId::kResponseInformation:
        out.responseInformation = text;
        break;
      case PropertyId::kServerReference:
        out.serverReference = text;
        break;
      case PropertyId::kReasonString:
        out.reasonString = text;
        break;
      case PropertyId::kReceiveMaximum:
        if (twoBytes == 0) return protocolError("Receive Maximum of 0");
        out.receiveMaximum = twoBytes;
        break;
      case PropertyId::kTopicAliasMaximum:
        out.topicAliasMaximum = twoBytes;
        break;
      case PropertyId::kTopicAlias:
        if (twoBytes == 0) return protocolError("Topic Alias of 0");
        out.topicAlias = twoBytes;
        break;
      case PropertyId::kMaximumQos:
        if (!flag(byteValue)) return protocolError("Maximum QoS is not 0 or 1");
        out.maximumQos = byteValue;
        break;
      case PropertyId::kRetainAvailable:
        if (!flag(byteValue)) return protocolError("Retain Available is not 0 or 1");
        out.retainAvailable = byteValue;
        break;
      case PropertyId::kUserProperty:
        ++out.userPropertyCount;
        break;
      case PropertyId::kMaximumPacketSize:
        if (fourBytes == 0) return protocolError("Maximum Packet Size of 0");
        out.maximumPacketSize = fourBytes;
        break;
      case PropertyId::kWildcardSubscriptionAvailable:
        if (!flag(byteValue)) return protocolError("Wildcard Subscription Available is not 0 or 1");
        out.wildcardSubscriptionAvailable = byteValue;
        break;
      case PropertyId::kSubscriptionIdentifierAvailable:
        if (!flag(byteValue)) {
          return protocolError("Subscription Identifier Available is not 0 or 1");
        }
        out.subscriptionIdentifierAvailable = byteValue;
        break;
      case PropertyId::kSharedSubscriptionAvailable:
        if (!flag(byteValue)) return protocolError("Shared Subscription Available is not 0 or 1");
        out.sharedSubscriptionAvailable = byteValue;
        break;
    }
  }
  return PropertyResult{ReasonCode::kSuccess, {}, static_cast<std::size_t>(lengthSize) + length};
}

// ---- encoding -------------------------------------------------------------------------------

void appendVariableByteInteger(std::string& out, std::uint32_t value) {
  do {
    char byte = static_cast<char>(value & 0x7F);
    value >>= 7;
    if (value != 0) byte = static_cast<char>(byte | 0x80);
    out.push_back(byte);
  } while (value != 0);
}

void PropertyWriter::put16(std::uint16_t value) {
  out_.push_back(static_cast<char>(value >> 8));
  out_.push_back(static_cast<char>(value & 0xFF));
}

void PropertyWriter::byte(PropertyId id, std::uint8_t value) {
  out_.push_back(static_cast<char>(id));
  out_.push_back(static_cast<char>(value));
}

void PropertyWriter::twoByte(PropertyId id, std::uint16_t value) {
  out_.push_back(static_cast<char>(id));
  put16(value);
}

void PropertyWriter::fourByte(PropertyId id, std::uint32_t value) {
  out_.push_back(static_cast<char>(id));
  put16(static_cast<std::uint16_t>(value >> 16));
  put16(static_cast<std::uint16_t>(value & 0xFFFF));
}

void PropertyWriter::variable(PropertyId id, std::uint32_t value) {
  out_.push_back(static_cast<char>(id));
  appendVariableByteInteger(out_, value);
}

void PropertyWriter::string(PropertyId id, std::string_view text) {
  out_.push_back(static_cast<char>(id));
  put16(static_cast<std::uint16_t>(text.size()));
  out_.append(text);
}

void PropertyWriter::userProperty(std::string_view name, std::string_view value) {
  out_.push_back(static_cast<char>(PropertyId::kUserProperty));
  put16(static_cast<std::uint16_t>(name.size()));
  out_.append(name);
  put16(static_cast<std::uint16_t>(value.size()));
  out_.append(value);
}

std::size_t PropertyWriter::finish() {
  const std::size_t length = out_.size() - start_ - 1;
  const std::size_t lengthSize = variableByteIntegerSize(static_cast<std::uint32_t>(length));
  if (lengthSize > 1) out_.insert(start_ + 1, lengthSize - 1, '\0');
  std::uint32_t value = static_cast<std::uint32_t>(length);
  for (std::size_t i = 0; i < lengthSize; ++i) {
    char byte = static_cast<char>(value & 0x7F);
    value >>= 7;
    if (i + 1 < lengthSize) byte = static_cast<char>(byte | 0x80);
    out_[start_ + i] = byte;
  }
  return lengthSize + length;
}

}  // namespace tern::protocol::mqtt
