// The records tern keeps on disk (issue 13) and their binary encoding: plain structs, a key schema
// of sortable byte strings, and pure encode/decode functions.
//
// Encoding of a value: byte 0 is the format version (kFormatVersion), byte 1 the record kind
// (RecordKind), then the fields in declaration order: integers little-endian and fixed-width,
// booleans one byte (0 or 1), byte strings as a u32 little-endian length and the bytes. A value
// carries its whole record, identity included (a queue entry names its client and sequence), so a
// value read under the wrong key is detected (keyFor(record) != key) instead of being misfiled.
//
// Keys (one byte prefix, '/', then big-endian numbers so that byte order is numeric order):
//   r/<topic>                          retained message of <topic>
//   m/<u64 BE message id>              a message queued for one or more sessions, written once and
//                                      referenced by every queue entry that carries it
//   s/<client id>                      a persistent MQTT session
//   q/<client id>\0<u64 BE sequence>   one entry of that session's outbound queue, in queue order
//   i/<client id>\0<u16 BE packet id>  an inbound QoS 2 packet id awaiting PUBREL (or released
//                                      and kept, see InboundQos2); packet id 0 is the session's
//                                      resolved-through serial
// Why this order: every key of one client is contiguous within its prefix ("q/<id>\0" and
// "i/<id>\0" are prefixes that no other client's keys share, since client ids never contain NUL),
// so a session's queue and inbound ids are one prefix scan (or one DeleteRange) each, the queue comes
// back in sequence order, and the s/, q/ and i/ ranges are all sorted by client id, which lets
// start-up load sessions with one merge pass over three iterators instead of a seek per session.
// Message ids are big-endian so m/ iterates in allocation order.
//
// Decoding treats every byte as hostile: it never reads past its input, never throws, never
// allocates more than the input's size, and refuses (DecodeStatus) an empty input, an unknown
// version or kind, a truncated field, bytes after the last field and impossible values (QoS 3, a
// flag byte other than 0/1, a NUL inside a topic or client id, a sent queue entry without packet
// id, ...). Each decode function lists what it refuses.
//
// Thread safety: every function here is pure and may be called from any thread.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace tern::persist {

// Version 2 added the publish name of a message (MessageRecord::publisher...) and the serials of
// the inbound QoS 2 records. Version 1 records still decode, with those fields 0 (and empty).
inline constexpr std::uint8_t kFormatVersion = 2;
inline constexpr std::uint8_t kOldestFormatVersion = 1;

// Upper bounds of decoded fields: MQTT's own limits (a UTF-8 string is at most 65535 bytes, a
// packet at most 268435455), so no record from disk is larger than a client could have sent.
inline constexpr std::size_t kMaxStringBytes = 65535;      // topics, filters, client ids
inline constexpr std::size_t kMaxBlobBytes = 268'435'455;  // payloads, properties
inline constexpr std::uint32_t kMaxSubscriptionId = 268'435'455;
inline constexpr std::size_t kMaxSubscriptions = 1'000'000;  // per session

enum class RecordKind : std::uint8_t {
  kRetained = 1,
  kMessage = 2,
  kSession = 3,
  kQueueEntry = 4,
  kInboundQos2 = 5,
};

enum class DecodeStatus : std::uint8_t {
  kOk,
  kEmpty,           // no bytes at all
  kUnknownVersion,  // byte 0 is not kFormatVersion
  kWrongKind,       // byte 1 is not the kind asked for
  kTruncated,       // the input ends inside a field
  kTrailingBytes,   // bytes left after the last field
  kBadValue,        // a field holds a value no encoder writes
};

// A static description ("truncated record", ...). Never allocates.
const char* describe(DecodeStatus status) noexcept;

struct RetainedRecord {
  std::string topic;  // non-empty, no NUL
  std::string payload;
  std::uint8_t qos = 0;            // 0..2
  std::string properties;          // MQTT 5 properties as received (opaque here); empty for none
  std::uint64_t expiryUnixMs = 0;  // absolute message-expiry deadline, unix ms; 0: never
  bool operator==(const RetainedRecord&) const = default;
};

// A message waiting in at least one session's queue. Its reference count is not stored: it is the
// number of queue entries naming it, counted at load.
struct MessageRecord {
  std::uint64_t id = 0;  // non-zero
  std::string topic;     // non-empty, no NUL
  std::string payload;
  std::uint8_t qos = 0;  // 0..2 (as published; each queue entry has its own granted QoS)
  bool retain = false;
  std::string properties;
  std::uint64_t expiryUnixMs = 0;
  // The publish it came from, for a QoS 2 publish of a persistent session: the publisher's client
  // id, the packet id and the publish's serial. Start-up rolls back the deliveries of a publish
  // whose packet id never reached the disk (docs/durability-design.md). publishSerial 0: not
  // named (then the other two are empty and 0).
  std::string publisherId;
  std::uint16_t publisherPacketId = 0;
  std::uint64_t publishSerial = 0;
  bool operator==(const MessageRecord&) const = default;
};

struct SubscriptionRecord {
  std::string filter;    // non-empty, no NUL (may be a $share/<group>/ filter)
  std::uint8_t qos = 0;  // 0..2
  bool noLocal = false;
  bool retainAsPublished = false;
  std::uint8_t retainHandling = 0;   // 0..2
  std::uint32_t subscriptionId = 0;  // 0: none; else 1..kMaxSubscriptionId
  bool operator==(const SubscriptionRecord&) const = default;
};

struct WillRecord {
  std::string topic;  // non-empty, no NUL
  std::string payload;
  std::uint8_t qos = 0;  // 0..2
  bool retain = false;
  std::string properties;
  std::uint32_t delaySeconds = 0;  // MQTT 5 will delay interval
  bool operator==(const WillRecord&) const = default;
};

struct SessionRecord {
  std::string clientId;                    // non-empty, no NUL
  std::uint8_t protocolLevel = 5;          // 3 (3.1), 4 (3.1.1) or 5 (5.0)
  std::uint32_t sessionExpirySeconds = 0;  // as negotiated; 0xFFFFFFFF: never expires
  std::uint64_t expiryDeadlineUnixMs = 0;  // set once disconnected; 0 while connected
  std::vector<SubscriptionRecord> subscriptions;
  std::optional<WillRecord> will;
  std::uint16_t nextPacketId = 1;  // 1..65535
  bool operator==(const SessionRecord&) const = default;
};

enum class QueueState : std::uint8_t {
  kQueued = 0,       // not sent yet; packetId is 0
  kAwaitingAck = 1,  // sent as PUBLISH with packetId; waiting for PUBACK (QoS 1) / PUBREC (QoS 2)
  kReleasePending = 2,  // QoS 2: PUBREC received, PUBREL sent with packetId; waiting for PUBCOMP
};

struct QueueEntry {
  std::string clientId;         // non-empty, no NUL
  std::uint64_t sequence = 0;   // position in the session's queue
  std::uint64_t messageId = 0;  // non-zero: the m/ record
  std::uint8_t qos = 1;         // granted QoS, 1 or 2
  QueueState state = QueueState::kQueued;
  std::uint16_t packetId = 0;  // 0 iff kQueued; kReleasePending requires qos 2
  bool operator==(const QueueEntry&) const = default;
};

// An inbound QoS 2 packet id of a persistent session. packetId != 0: an id received, awaiting
// its PUBREL (released false), or released and kept because the session's resolved-through serial
// could not cover it yet (released true); `serial` is its publish's. packetId 0: the session's
// resolved-through serial: every QoS 2 publish of the session with a serial up to `serial` was
// released or refused (released is true).
struct InboundQos2 {
  std::string clientId;        // non-empty, no NUL
  std::uint16_t packetId = 0;  // 0: the resolved-through record
  std::uint64_t serial = 0;
  bool released = false;
  bool operator==(const InboundQos2&) const = default;
};

// ---- keys. REQUIRES: client ids and topics contain no NUL (MQTT forbids U+0000 in strings).
std::string retainedKey(std::string_view topic);
std::string messageKey(std::uint64_t id);
std::string sessionKey(std::string_view clientId);
std::string queueKey(std::string_view clientId, std::uint64_t sequence);
std::string inboundKey(std::string_view clientId, std::uint16_t packetId);
// "q/<client id>\0" and "i/<client id>\0": every queue entry / inbound id of that client.
std::string queuePrefix(std::string_view clientId);
std::string inboundPrefix(std::string_view clientId);
// The first key after every key that starts with `prefix` (for DeleteRange and iterate bounds).
// REQUIRES: prefix does not end in 0xFF (no prefix above does).
std::string prefixEnd(std::string_view prefix);

inline constexpr std::string_view kRetainedPrefix = "r/";
inline constexpr std::string_view kMessagePrefix = "m/";
inline constexpr std::string_view kSessionPrefix = "s/";
inline constexpr std::string_view kQueuePrefix = "q/";
inline constexpr std::string_view kInboundPrefix = "i/";

// The key a record is stored under.
std::string keyFor(const RetainedRecord& r);
std::string keyFor(const MessageRecord& r);
std::string keyFor(const SessionRecord& r);
std::string keyFor(const QueueEntry& r);
std::string keyFor(const InboundQos2& r);

// ---- encoding: replaces `out` with the record's value. REQUIRES: the record holds only values
// its decoder accepts (checked by assertions in debug builds, refused at the next decode).
void encode(const RetainedRecord& r, std::string& out);
void encode(const MessageRecord& r, std::string& out);
void encode(const SessionRecord& r, std::string& out);
void encode(const QueueEntry& r, std::string& out);
void encode(const InboundQos2& r, std::string& out);

template <typename Record>
std::string encoded(const Record& r) {
  std::string out;
  encode(r, out);
  return out;
}

// ---- decoding: on kOk `out` holds the record; on any other status `out` is unspecified (valid
// but partially assigned). Pure, never throws except std::bad_alloc, reads only `in`.
// Each refuses, besides the envelope (empty, version, kind, truncation, trailing bytes):
//  RetainedRecord: empty topic or NUL in it; qos > 2; oversized strings.
//  MessageRecord:  id 0; empty topic or NUL in it; qos > 2; retain flag not 0/1; a publish name
//                  with serial 0 but a client id or packet id, or a serial without both.
//  SessionRecord:  empty client id or NUL; protocol level not 3/4/5; empty filter or NUL; qos or
//                  retain handling > 2; flag bytes not 0/1; subscription id > kMaxSubscriptionId;
//                  more than kMaxSubscriptions; a will flag not 0/1 and the will's own rules as for
//                  a message; next packet id 0.
//  QueueEntry:     empty client id or NUL; message id 0; qos not 1/2; unknown state; packet id 0
//                  when sent, non-zero when queued; kReleasePending with qos 1.
//  InboundQos2:    empty client id or NUL; released not 0/1; packet id 0 not released (version
//                  1: packet id 0).
DecodeStatus decode(std::string_view in, RetainedRecord& out);
DecodeStatus decode(std::string_view in, MessageRecord& out);
DecodeStatus decode(std::string_view in, SessionRecord& out);
DecodeStatus decode(std::string_view in, QueueEntry& out);
DecodeStatus decode(std::string_view in, InboundQos2& out);

}  // namespace tern::persist
