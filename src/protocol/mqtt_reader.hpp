// Internal to the MQTT decoder (mqtt_decoder.cpp for 3.1.1, mqtt5_decoder.cpp for 5.0): the
// bounded reader over one packet's body and the field checks both versions share.
// Pure functions; any thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>

#include "tern/common/utf8.hpp"
#include "tern/protocol/mqtt_decoder.hpp"
#include "tern/routing/topic.hpp"

namespace tern::protocol::mqtt::detail {

// Sequential reads over one packet's body; each read fails instead of running past the end.
class Reader {
 public:
  explicit Reader(std::string_view body) noexcept : body_(body) {}

  bool u8(std::uint8_t& value) noexcept {
    if (left() < 1) return false;
    value = static_cast<std::uint8_t>(body_[at_++]);
    return true;
  }
  bool u16(std::uint16_t& value) noexcept {
    if (left() < 2) return false;
    value = static_cast<std::uint16_t>((static_cast<std::uint8_t>(body_[at_]) << 8) |
                                       static_cast<std::uint8_t>(body_[at_ + 1]));
    at_ += 2;
    return true;
  }
  // A 16-bit length followed by that many bytes (strings and binary data alike).
  bool lengthPrefixed(std::string_view& value) noexcept {
    std::uint16_t length = 0;
    if (!u16(length) || left() < length) return false;
    value = body_.substr(at_, length);
    at_ += length;
    return true;
  }
  std::string_view rest() noexcept {
    std::string_view value = body_.substr(at_);
    at_ = body_.size();
    return value;
  }
  // 5.0: a property block for `context`; on failure `detail` says why.
  DecodeStatus properties(PropertyContext context, Properties& out,
                          std::string_view& detail) noexcept {
    const PropertyResult r = decodeProperties(body_.substr(at_), context, out);
    if (!r.ok()) {
      detail = r.detail;
      return r.reason == ReasonCode::kProtocolError ? DecodeStatus::kPropertyProtocolError
                                                    : DecodeStatus::kMalformedProperties;
    }
    at_ += r.consumed;
    return DecodeStatus::kPacket;
  }
  std::size_t left() const noexcept { return body_.size() - at_; }
  std::size_t position() const noexcept { return at_; }

 private:
  std::string_view body_;
  std::size_t at_ = 0;
};

// A UTF-8 encoded string field [MQTT-1.5.3].
inline DecodeStatus checkString(std::string_view text) noexcept {
  if (std::memchr(text.data(), '\0', text.size()) != nullptr) return DecodeStatus::kNulInString;
  if (!common::isValidUtf8(text)) return DecodeStatus::kInvalidUtf8;
  return DecodeStatus::kPacket;
}

// A topic name: PUBLISH topic or will topic.
inline DecodeStatus checkTopicName(std::string_view topic) noexcept {
  switch (routing::validateTopicName(topic)) {
    case routing::TopicStatus::kOk:
      return DecodeStatus::kPacket;
    case routing::TopicStatus::kEmpty:
      return DecodeStatus::kEmptyTopicName;
    case routing::TopicStatus::kContainsNul:
      return DecodeStatus::kNulInString;
    case routing::TopicStatus::kInvalidUtf8:
      return DecodeStatus::kInvalidUtf8;
    case routing::TopicStatus::kWildcardInName:
    case routing::TopicStatus::kBadWildcard:
      return DecodeStatus::kWildcardInTopicName;
    case routing::TopicStatus::kTooLong:  // impossible: the length field has 16 bits
      return DecodeStatus::kTruncated;
  }
  return DecodeStatus::kInvalidUtf8;
}

// Reads a packet identifier that must be non-zero.
inline DecodeStatus readPacketId(Reader& reader, std::uint16_t& packetId) noexcept {
  if (!reader.u16(packetId)) return DecodeStatus::kTruncated;
  if (packetId == 0) return DecodeStatus::kZeroPacketId;
  return DecodeStatus::kPacket;
}

#define TERN_MQTT_CHECK(expr)                                                   \
  do {                                                                          \
    if (const DecodeStatus s_ = (expr); s_ != DecodeStatus::kPacket) return s_; \
  } while (false)

// The entries of a SUBSCRIBE from the reader's position to the end of `body` (the reader's body):
// each a filter and an options byte, which `checkOptions` judges (the rules differ by level).
template <typename CheckOptions>
DecodeStatus readSubscriptions(Reader& reader, std::string_view body, SubscriptionList& out,
                               CheckOptions checkOptions) noexcept {
  const std::size_t start = reader.position();
  if (reader.left() == 0) return DecodeStatus::kEmptyPayload;
  std::size_t count = 0;
  while (reader.left() != 0) {
    std::string_view filter;
    std::uint8_t options = 0;
    if (!reader.lengthPrefixed(filter)) return DecodeStatus::kTruncated;
    TERN_MQTT_CHECK(checkString(filter));
    if (!reader.u8(options)) return DecodeStatus::kTruncated;
    TERN_MQTT_CHECK(checkOptions(options));
    ++count;
  }
  out = SubscriptionList(body.substr(start), count);
  return DecodeStatus::kPacket;
}

// The filters of an UNSUBSCRIBE from the reader's position to the end of `body`.
inline DecodeStatus readFilters(Reader& reader, std::string_view body, FilterList& out) noexcept {
  const std::size_t start = reader.position();
  if (reader.left() == 0) return DecodeStatus::kEmptyPayload;
  std::size_t count = 0;
  while (reader.left() != 0) {
    std::string_view filter;
    if (!reader.lengthPrefixed(filter)) return DecodeStatus::kTruncated;
    TERN_MQTT_CHECK(checkString(filter));
    ++count;
  }
  out = FilterList(body.substr(start), count);
  return DecodeStatus::kPacket;
}

// The body of a 5.0 packet of `type` (the fixed header already checked); a PUBLISH's properties
// are read for `publishContext` (kPublish from a client, kPublishToClient from a server). On a
// property error, `detail` says what was wrong.
DecodeStatus decodeBody5(std::uint8_t type, std::uint8_t flags, std::string_view body,
                         PropertyContext publishContext, Packet& packet,
                         std::string_view& detail) noexcept;

}  // namespace tern::protocol::mqtt::detail
