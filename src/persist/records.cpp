#include "tern/persist/records.hpp"

#include <cassert>
#include <cstring>

namespace tern::persist {
namespace {

// ---- writing

void putU8(std::string& out, std::uint8_t v) {
  out.push_back(static_cast<char>(v));
}

template <typename T>
void putLe(std::string& out, T v) {
  for (std::size_t i = 0; i < sizeof(T); ++i)
    out.push_back(static_cast<char>((v >> (8 * i)) & 0xFF));
}

template <typename T>
void putBe(std::string& out, T v) {
  for (std::size_t i = sizeof(T); i-- > 0;)
    out.push_back(static_cast<char>((v >> (8 * i)) & 0xFF));
}

void putBytes(std::string& out, std::string_view bytes) {
  putLe<std::uint32_t>(out, static_cast<std::uint32_t>(bytes.size()));
  out.append(bytes);
}

void putHeader(std::string& out, RecordKind kind) {
  out.clear();
  putU8(out, kFormatVersion);
  putU8(out, static_cast<std::uint8_t>(kind));
}

// ---- reading: a cursor over hostile bytes. Every read checks the bytes left first; the first
// failure sticks, so a decoder can read all fields and look at the status once per group.

class Reader {
 public:
  explicit Reader(std::string_view in) noexcept : in_(in) {}

  DecodeStatus status() const noexcept { return status_; }
  bool ok() const noexcept { return status_ == DecodeStatus::kOk; }
  void fail(DecodeStatus s) noexcept {
    if (status_ == DecodeStatus::kOk) status_ = s;
  }
  std::size_t left() const noexcept { return in_.size() - pos_; }

  std::uint8_t u8() noexcept {
    if (!need(1)) return 0;
    return static_cast<std::uint8_t>(in_[pos_++]);
  }

  template <typename T>
  T le() noexcept {
    if (!need(sizeof(T))) return 0;
    T v = 0;
    for (std::size_t i = 0; i < sizeof(T); ++i)
      v |= static_cast<T>(static_cast<std::uint8_t>(in_[pos_ + i])) << (8 * i);
    pos_ += sizeof(T);
    return v;
  }

  bool flag() noexcept {
    const std::uint8_t v = u8();
    if (v > 1) fail(DecodeStatus::kBadValue);
    return v == 1;
  }

  // A length-prefixed byte string of at most `max` bytes, as a view into the input.
  std::string_view bytes(std::size_t max) noexcept {
    const std::uint32_t n = le<std::uint32_t>();
    if (!ok()) return {};
    if (n > max) {
      // A length beyond what is left is a truncation; within it but over the limit, a bad value.
      fail(n > left() ? DecodeStatus::kTruncated : DecodeStatus::kBadValue);
      return {};
    }
    if (!need(n)) return {};
    const std::string_view v = in_.substr(pos_, n);
    pos_ += n;
    return v;
  }

  // A non-empty string without NUL (topic, filter, client id).
  std::string_view name() noexcept {
    const std::string_view v = bytes(kMaxStringBytes);
    if (ok() && (v.empty() || v.find('\0') != std::string_view::npos))
      fail(DecodeStatus::kBadValue);
    return v;
  }

  std::uint8_t qos() noexcept {
    const std::uint8_t v = u8();
    if (v > 2) fail(DecodeStatus::kBadValue);
    return v;
  }

  void header(RecordKind kind) noexcept {
    if (in_.empty()) return fail(DecodeStatus::kEmpty);
    version_ = static_cast<std::uint8_t>(in_[0]);
    if (version_ < kOldestFormatVersion || version_ > kFormatVersion)
      return fail(DecodeStatus::kUnknownVersion);
    pos_ = 1;
    if (!need(1)) return;
    if (static_cast<std::uint8_t>(in_[pos_]) != static_cast<std::uint8_t>(kind))
      return fail(DecodeStatus::kWrongKind);
    ++pos_;
  }

  // The format version header() read (valid once it succeeded).
  std::uint8_t version() const noexcept { return version_; }

  DecodeStatus finish() noexcept {
    if (ok() && pos_ != in_.size()) fail(DecodeStatus::kTrailingBytes);
    return status_;
  }

 private:
  bool need(std::size_t n) noexcept {
    if (!ok()) return false;
    if (left() < n) {
      fail(DecodeStatus::kTruncated);
      return false;
    }
    return true;
  }

  std::string_view in_;
  std::size_t pos_ = 0;
  DecodeStatus status_ = DecodeStatus::kOk;
  std::uint8_t version_ = 0;
};

[[maybe_unused]] bool validName(std::string_view s) {
  return !s.empty() && s.size() <= kMaxStringBytes && s.find('\0') == std::string_view::npos;
}

std::string prefixed(std::string_view prefix, std::string_view name) {
  std::string key;
  key.reserve(prefix.size() + name.size() + 9);
  key.append(prefix).append(name);
  return key;
}

}  // namespace

const char* describe(DecodeStatus status) noexcept {
  switch (status) {
    case DecodeStatus::kOk:
      return "ok";
    case DecodeStatus::kEmpty:
      return "empty record";
    case DecodeStatus::kUnknownVersion:
      return "unknown record format version";
    case DecodeStatus::kWrongKind:
      return "record of another kind";
    case DecodeStatus::kTruncated:
      return "truncated record";
    case DecodeStatus::kTrailingBytes:
      return "bytes after the end of the record";
    case DecodeStatus::kBadValue:
      return "impossible value in record";
  }
  return "unknown decode status";
}

// ---- keys

std::string retainedKey(std::string_view topic) {
  return prefixed(kRetainedPrefix, topic);
}

std::string messageKey(std::uint64_t id) {
  std::string key(kMessagePrefix);
  putBe(key, id);
  return key;
}

std::string sessionKey(std::string_view clientId) {
  return prefixed(kSessionPrefix, clientId);
}

std::string queuePrefix(std::string_view clientId) {
  std::string key = prefixed(kQueuePrefix, clientId);
  key.push_back('\0');
  return key;
}

std::string inboundPrefix(std::string_view clientId) {
  std::string key = prefixed(kInboundPrefix, clientId);
  key.push_back('\0');
  return key;
}

std::string queueKey(std::string_view clientId, std::uint64_t sequence) {
  std::string key = queuePrefix(clientId);
  putBe(key, sequence);
  return key;
}

std::string inboundKey(std::string_view clientId, std::uint16_t packetId) {
  std::string key = inboundPrefix(clientId);
  putBe(key, packetId);
  return key;
}

std::string prefixEnd(std::string_view prefix) {
  assert(!prefix.empty() && static_cast<std::uint8_t>(prefix.back()) != 0xFF);
  std::string end(prefix);
  end.back() = static_cast<char>(static_cast<std::uint8_t>(end.back()) + 1);
  return end;
}

std::string keyFor(const RetainedRecord& r) {
  return retainedKey(r.topic);
}
std::string keyFor(const MessageRecord& r) {
  return messageKey(r.id);
}
std::string keyFor(const SessionRecord& r) {
  return sessionKey(r.clientId);
}
std::string keyFor(const QueueEntry& r) {
  return queueKey(r.clientId, r.sequence);
}
std::string keyFor(const InboundQos2& r) {
  return inboundKey(r.clientId, r.packetId);
}

// ---- retained

void encode(const RetainedRecord& r, std::string& out) {
  assert(validName(r.topic) && r.qos <= 2);
  putHeader(out, RecordKind::kRetained);
  putBytes(out, r.topic);
  putBytes(out, r.payload);
  putU8(out, r.qos);
  putBytes(out, r.properties);
  putLe(out, r.expiryUnixMs);
}

DecodeStatus decode(std::string_view in, RetainedRecord& out) {
  Reader rd(in);
  rd.header(RecordKind::kRetained);
  const std::string_view topic = rd.name();
  const std::string_view payload = rd.bytes(kMaxBlobBytes);
  out.qos = rd.qos();
  const std::string_view properties = rd.bytes(kMaxBlobBytes);
  out.expiryUnixMs = rd.le<std::uint64_t>();
  if (const DecodeStatus s = rd.finish(); s != DecodeStatus::kOk) return s;
  out.topic.assign(topic);
  out.payload.assign(payload);
  out.properties.assign(properties);
  return DecodeStatus::kOk;
}

// ---- message

namespace {

void putMessageBody(std::string& out, std::string_view topic, std::string_view payload,
                    std::uint8_t qos, bool retain, std::string_view properties) {
  putBytes(out, topic);
  putBytes(out, payload);
  putU8(out, qos);
  putU8(out, retain ? 1 : 0);
  putBytes(out, properties);
}

}  // namespace

void encode(const MessageRecord& r, std::string& out) {
  assert(r.id != 0 && validName(r.topic) && r.qos <= 2);
  assert(r.publishSerial == 0 ? r.publisherId.empty() && r.publisherPacketId == 0
                              : validName(r.publisherId) && r.publisherPacketId != 0);
  putHeader(out, RecordKind::kMessage);
  putLe(out, r.id);
  putMessageBody(out, r.topic, r.payload, r.qos, r.retain, r.properties);
  putLe(out, r.expiryUnixMs);
  putLe(out, r.publishSerial);
  if (r.publishSerial != 0) {
    putBytes(out, r.publisherId);
    putLe(out, r.publisherPacketId);
  }
}

DecodeStatus decode(std::string_view in, MessageRecord& out) {
  Reader rd(in);
  rd.header(RecordKind::kMessage);
  out.id = rd.le<std::uint64_t>();
  if (rd.ok() && out.id == 0) rd.fail(DecodeStatus::kBadValue);
  const std::string_view topic = rd.name();
  const std::string_view payload = rd.bytes(kMaxBlobBytes);
  out.qos = rd.qos();
  out.retain = rd.flag();
  const std::string_view properties = rd.bytes(kMaxBlobBytes);
  out.expiryUnixMs = rd.le<std::uint64_t>();
  out.publishSerial = 0;
  out.publisherPacketId = 0;
  std::string_view publisher;
  if (rd.ok() && rd.version() >= 2) {
    out.publishSerial = rd.le<std::uint64_t>();
    if (rd.ok() && out.publishSerial != 0) {
      publisher = rd.name();
      out.publisherPacketId = rd.le<std::uint16_t>();
      if (rd.ok() && out.publisherPacketId == 0) rd.fail(DecodeStatus::kBadValue);
    }
  }
  if (const DecodeStatus s = rd.finish(); s != DecodeStatus::kOk) return s;
  out.topic.assign(topic);
  out.payload.assign(payload);
  out.properties.assign(properties);
  out.publisherId.assign(publisher);
  return DecodeStatus::kOk;
}

// ---- session

void encode(const SessionRecord& r, std::string& out) {
  assert(validName(r.clientId) && r.protocolLevel >= 3 && r.protocolLevel <= 5 &&
         r.nextPacketId != 0 && r.subscriptions.size() <= kMaxSubscriptions);
  putHeader(out, RecordKind::kSession);
  putBytes(out, r.clientId);
  putU8(out, r.protocolLevel);
  putLe(out, r.sessionExpirySeconds);
  putLe(out, r.expiryDeadlineUnixMs);
  putLe<std::uint32_t>(out, static_cast<std::uint32_t>(r.subscriptions.size()));
  for (const SubscriptionRecord& s : r.subscriptions) {
    assert(validName(s.filter) && s.qos <= 2 && s.retainHandling <= 2 &&
           s.subscriptionId <= kMaxSubscriptionId);
    putBytes(out, s.filter);
    putU8(out, s.qos);
    putU8(out, s.noLocal ? 1 : 0);
    putU8(out, s.retainAsPublished ? 1 : 0);
    putU8(out, s.retainHandling);
    putLe(out, s.subscriptionId);
  }
  putU8(out, r.will ? 1 : 0);
  if (r.will) {
    assert(validName(r.will->topic) && r.will->qos <= 2);
    putMessageBody(out, r.will->topic, r.will->payload, r.will->qos, r.will->retain,
                   r.will->properties);
    putLe(out, r.will->delaySeconds);
  }
  putLe(out, r.nextPacketId);
}

DecodeStatus decode(std::string_view in, SessionRecord& out) {
  Reader rd(in);
  rd.header(RecordKind::kSession);
  const std::string_view clientId = rd.name();
  out.protocolLevel = rd.u8();
  if (rd.ok() && (out.protocolLevel < 3 || out.protocolLevel > 5)) rd.fail(DecodeStatus::kBadValue);
  out.sessionExpirySeconds = rd.le<std::uint32_t>();
  out.expiryDeadlineUnixMs = rd.le<std::uint64_t>();
  const std::uint32_t count = rd.le<std::uint32_t>();
  // Each subscription takes at least 4 (length) + 1 (filter) + 8 bytes: a count the bytes left
  // cannot hold is a truncation, found before anything is allocated for it.
  constexpr std::size_t kMinSubscriptionBytes = 13;
  if (rd.ok() && count > kMaxSubscriptions) rd.fail(DecodeStatus::kBadValue);
  if (rd.ok() && count > rd.left() / kMinSubscriptionBytes) rd.fail(DecodeStatus::kTruncated);
  if (!rd.ok()) return rd.status();
  out.clientId.assign(clientId);
  out.subscriptions.clear();
  out.subscriptions.reserve(count);
  for (std::uint32_t i = 0; i < count && rd.ok(); ++i) {
    SubscriptionRecord s;
    const std::string_view filter = rd.name();
    s.qos = rd.qos();
    s.noLocal = rd.flag();
    s.retainAsPublished = rd.flag();
    s.retainHandling = rd.u8();
    if (rd.ok() && s.retainHandling > 2) rd.fail(DecodeStatus::kBadValue);
    s.subscriptionId = rd.le<std::uint32_t>();
    if (rd.ok() && s.subscriptionId > kMaxSubscriptionId) rd.fail(DecodeStatus::kBadValue);
    if (!rd.ok()) break;
    s.filter.assign(filter);
    out.subscriptions.push_back(std::move(s));
  }
  const bool hasWill = rd.flag();
  out.will.reset();
  if (rd.ok() && hasWill) {
    const std::string_view topic = rd.name();
    const std::string_view payload = rd.bytes(kMaxBlobBytes);
    const std::uint8_t qos = rd.qos();
    const bool retain = rd.flag();
    const std::string_view properties = rd.bytes(kMaxBlobBytes);
    const std::uint32_t delay = rd.le<std::uint32_t>();
    if (rd.ok()) {
      out.will = WillRecord{
          std::string(topic), std::string(payload), qos, retain, std::string(properties), delay};
    }
  }
  out.nextPacketId = rd.le<std::uint16_t>();
  if (rd.ok() && out.nextPacketId == 0) rd.fail(DecodeStatus::kBadValue);
  return rd.finish();
}

// ---- queue entry

void encode(const QueueEntry& r, std::string& out) {
  assert(validName(r.clientId) && r.messageId != 0 && (r.qos == 1 || r.qos == 2));
  assert((r.state == QueueState::kQueued) == (r.packetId == 0));
  assert(r.state != QueueState::kReleasePending || r.qos == 2);
  putHeader(out, RecordKind::kQueueEntry);
  putBytes(out, r.clientId);
  putLe(out, r.sequence);
  putLe(out, r.messageId);
  putU8(out, r.qos);
  putU8(out, static_cast<std::uint8_t>(r.state));
  putLe(out, r.packetId);
}

DecodeStatus decode(std::string_view in, QueueEntry& out) {
  Reader rd(in);
  rd.header(RecordKind::kQueueEntry);
  const std::string_view clientId = rd.name();
  out.sequence = rd.le<std::uint64_t>();
  out.messageId = rd.le<std::uint64_t>();
  out.qos = rd.u8();
  const std::uint8_t state = rd.u8();
  out.packetId = rd.le<std::uint16_t>();
  if (const DecodeStatus s = rd.finish(); s != DecodeStatus::kOk) return s;
  if (out.messageId == 0 || (out.qos != 1 && out.qos != 2) || state > 2)
    return DecodeStatus::kBadValue;
  out.state = static_cast<QueueState>(state);
  if ((out.state == QueueState::kQueued) != (out.packetId == 0)) return DecodeStatus::kBadValue;
  if (out.state == QueueState::kReleasePending && out.qos != 2) return DecodeStatus::kBadValue;
  out.clientId.assign(clientId);
  return DecodeStatus::kOk;
}

// ---- inbound QoS 2

void encode(const InboundQos2& r, std::string& out) {
  assert(validName(r.clientId) && (r.packetId != 0 || r.released));
  putHeader(out, RecordKind::kInboundQos2);
  putBytes(out, r.clientId);
  putLe(out, r.packetId);
  putLe(out, r.serial);
  putU8(out, r.released ? 1 : 0);
}

DecodeStatus decode(std::string_view in, InboundQos2& out) {
  Reader rd(in);
  rd.header(RecordKind::kInboundQos2);
  const std::string_view clientId = rd.name();
  out.packetId = rd.le<std::uint16_t>();
  out.serial = 0;
  out.released = false;
  if (rd.ok() && rd.version() >= 2) {
    out.serial = rd.le<std::uint64_t>();
    out.released = rd.flag();
  }
  if (const DecodeStatus s = rd.finish(); s != DecodeStatus::kOk) return s;
  if (out.packetId == 0 && !out.released) return DecodeStatus::kBadValue;
  out.clientId.assign(clientId);
  return DecodeStatus::kOk;
}

}  // namespace tern::persist
