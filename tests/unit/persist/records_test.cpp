#include "tern/persist/records.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace tern::persist {
namespace {

std::string bytes(std::size_t n, char seed) {
  std::string s(n, '\0');
  for (std::size_t i = 0; i < n; ++i)
    s[i] = static_cast<char>(seed + i * 7);
  return s;
}

std::string name(std::size_t n) {
  return std::string(n, 'a');
}

RetainedRecord minimalRetained() {
  return RetainedRecord{"t", "", 0, "", 0};
}
RetainedRecord maximalRetained() {
  return RetainedRecord{name(kMaxStringBytes), bytes(300'000, 1), 2, bytes(70'000, 3),
                        ~std::uint64_t{0}};
}
MessageRecord minimalMessage() {
  return MessageRecord{1, "t", "", 0, false, "", 0};
}
MessageRecord maximalMessage() {
  return MessageRecord{~std::uint64_t{0}, name(kMaxStringBytes), bytes(200'000, 5), 2, true,
                       bytes(1000, 9),    ~std::uint64_t{0}};
}
SessionRecord minimalSession() {
  SessionRecord s;
  s.clientId = "c";
  s.protocolLevel = 4;
  return s;
}
SessionRecord maximalSession() {
  SessionRecord s;
  s.clientId = name(kMaxStringBytes);
  s.protocolLevel = 5;
  s.sessionExpirySeconds = 0xFFFFFFFF;
  s.expiryDeadlineUnixMs = ~std::uint64_t{0};
  for (int i = 0; i < 50; ++i) {
    s.subscriptions.push_back(SubscriptionRecord{
        "a/" + std::to_string(i) + "/#", static_cast<std::uint8_t>(i % 3), i % 2 == 0, i % 3 == 0,
        static_cast<std::uint8_t>(i % 3), i == 0 ? kMaxSubscriptionId : std::uint32_t(i)});
  }
  s.subscriptions.push_back(SubscriptionRecord{"$share/g/x", 1, false, false, 0, 0});
  s.will = WillRecord{"will/topic", bytes(5000, 2), 2, true, bytes(40, 4), 0xFFFFFFFF};
  s.nextPacketId = 0xFFFF;
  return s;
}
QueueEntry queued() {
  return QueueEntry{"c", 0, 1, 1, QueueState::kQueued, 0};
}
QueueEntry releasePending() {
  return QueueEntry{name(300), ~std::uint64_t{0},           ~std::uint64_t{0},
                    2,         QueueState::kReleasePending, 0xFFFF};
}

template <typename Record>
void expectRoundTrip(const Record& r) {
  const std::string value = encoded(r);
  ASSERT_GE(value.size(), 2u);
  EXPECT_EQ(static_cast<std::uint8_t>(value[0]), kFormatVersion);
  Record back;
  ASSERT_EQ(decode(value, back), DecodeStatus::kOk);
  EXPECT_EQ(back, r);
  EXPECT_EQ(encoded(back), value) << "re-encoding is byte for byte the same";
}

// Every proper prefix of a valid value is refused, and so is the value with one byte more.
template <typename Record>
void expectEveryTruncationRefused(const Record& r) {
  const std::string value = encoded(r);
  for (std::size_t n = 0; n < value.size(); ++n) {
    Record out;
    const DecodeStatus s = decode(std::string_view(value).substr(0, n), out);
    ASSERT_NE(s, DecodeStatus::kOk) << "prefix of " << n << " of " << value.size() << " bytes";
    if (n == 0) {
      EXPECT_EQ(s, DecodeStatus::kEmpty);
    } else if (n >= 2) {
      EXPECT_EQ(s, DecodeStatus::kTruncated) << "prefix of " << n << " bytes";
    }
  }
  Record out;
  EXPECT_EQ(decode(value + '\0', out), DecodeStatus::kTrailingBytes);
}

TEST(PersistRecord, RoundTripsEveryRecordMinimalAndMaximal) {
  expectRoundTrip(minimalRetained());
  expectRoundTrip(maximalRetained());
  expectRoundTrip(minimalMessage());
  expectRoundTrip(maximalMessage());
  expectRoundTrip(minimalSession());
  expectRoundTrip(maximalSession());
  SessionRecord noWill = maximalSession();
  noWill.will.reset();
  expectRoundTrip(noWill);
  SessionRecord emptyWill = minimalSession();
  emptyWill.will = WillRecord{"w", "", 0, false, "", 0};
  expectRoundTrip(emptyWill);
  expectRoundTrip(queued());
  expectRoundTrip(releasePending());
  expectRoundTrip(QueueEntry{"c", 7, 9, 1, QueueState::kAwaitingAck, 1});
  expectRoundTrip(QueueEntry{"c", 7, 9, 2, QueueState::kAwaitingAck, 42});
  expectRoundTrip(InboundQos2{"c", 1});
  expectRoundTrip(InboundQos2{name(kMaxStringBytes), 0xFFFF});
}

TEST(PersistRecord, EveryTruncationPointIsRefused) {
  expectEveryTruncationRefused(minimalRetained());
  expectEveryTruncationRefused(RetainedRecord{"a/b", "payload", 1, "props", 123});
  expectEveryTruncationRefused(minimalMessage());
  expectEveryTruncationRefused(MessageRecord{5, "a/b", "payload", 2, true, "p", 9});
  expectEveryTruncationRefused(minimalSession());
  SessionRecord s = minimalSession();
  s.subscriptions.push_back({"a/#", 1, true, true, 2, 77});
  s.subscriptions.push_back({"b", 0, false, false, 0, 0});
  s.will = WillRecord{"w", "bye", 1, true, "pp", 30};
  expectEveryTruncationRefused(s);
  expectEveryTruncationRefused(queued());
  expectEveryTruncationRefused(releasePending());
  expectEveryTruncationRefused(InboundQos2{"client", 5});
}

TEST(PersistRecord, RefusesUnknownVersionAndWrongKind) {
  std::string value = encoded(minimalRetained());
  RetainedRecord r;
  value[0] = static_cast<char>(kFormatVersion + 1);
  EXPECT_EQ(decode(value, r), DecodeStatus::kUnknownVersion);
  value[0] = 0;
  EXPECT_EQ(decode(value, r), DecodeStatus::kUnknownVersion);
  MessageRecord m;
  EXPECT_EQ(decode(encoded(minimalRetained()), m), DecodeStatus::kWrongKind);
  SessionRecord s;
  EXPECT_EQ(decode(encoded(queued()), s), DecodeStatus::kWrongKind);
}

// Patches one byte of a valid encoding at `offset` and expects a refusal.
template <typename Record>
DecodeStatus decodePatched(const Record& r, std::size_t offset, std::uint8_t byte) {
  std::string value = encoded(r);
  EXPECT_LT(offset, value.size());
  value[offset] = static_cast<char>(byte);
  Record out;
  return decode(value, out);
}

TEST(PersistRecord, RefusesImpossibleValues) {
  // Retained: version, kind, u32 len, "t", u32 len (payload), qos at 2+5+4 = 11.
  EXPECT_EQ(decodePatched(minimalRetained(), 11, 3), DecodeStatus::kBadValue) << "qos 3";
  EXPECT_EQ(decodePatched(minimalRetained(), 6, 0), DecodeStatus::kBadValue) << "NUL in topic";
  RetainedRecord emptyTopic;
  std::string v = encoded(minimalRetained());
  v.erase(6, 1);
  v[2] = 0;  // topic length 0
  EXPECT_EQ(decode(v, emptyTopic), DecodeStatus::kBadValue) << "empty topic";

  // Message: id at 2..9.
  MessageRecord m = minimalMessage();
  std::string mv = encoded(m);
  mv[2] = 0;
  MessageRecord out;
  EXPECT_EQ(decode(mv, out), DecodeStatus::kBadValue) << "message id 0";
  // retain flag after id(8) topic(4+1) payload(4) qos(1): offset 2+8+5+4+1 = 20.
  EXPECT_EQ(decodePatched(m, 20, 2), DecodeStatus::kBadValue) << "retain flag 2";

  // Session: client id (4+1) at 2, protocol level at 7.
  EXPECT_EQ(decodePatched(minimalSession(), 7, 6), DecodeStatus::kBadValue) << "level 6";
  EXPECT_EQ(decodePatched(minimalSession(), 7, 2), DecodeStatus::kBadValue) << "level 2";
  {
    SessionRecord s = minimalSession();
    std::string sv = encoded(s);
    sv[sv.size() - 2] = 0;  // next packet id 0 (little-endian u16 at the end; 1 -> 0)
    sv[sv.size() - 1] = 0;
    SessionRecord so;
    EXPECT_EQ(decode(sv, so), DecodeStatus::kBadValue) << "next packet id 0";
    sv = encoded(s);
    sv[sv.size() - 3] = 2;  // will flag
    EXPECT_EQ(decode(sv, so), DecodeStatus::kBadValue) << "will flag 2";
  }
  {
    SessionRecord s = minimalSession();
    s.subscriptions.push_back({"f", 0, false, false, 0, 0});
    // filter at 2+5+1+4+8+4 = 24 (len) .. 28 ('f'), qos 29, noLocal 30, rap 31, rh 32, id 33..36.
    EXPECT_EQ(decodePatched(s, 29, 3), DecodeStatus::kBadValue) << "subscription qos 3";
    EXPECT_EQ(decodePatched(s, 30, 2), DecodeStatus::kBadValue) << "no-local 2";
    EXPECT_EQ(decodePatched(s, 31, 2), DecodeStatus::kBadValue) << "retain-as-published 2";
    EXPECT_EQ(decodePatched(s, 32, 3), DecodeStatus::kBadValue) << "retain handling 3";
    EXPECT_EQ(decodePatched(s, 36, 0xFF), DecodeStatus::kBadValue) << "subscription id too big";
    // A subscription count far beyond what the bytes can hold is refused before allocating.
    EXPECT_NE(decodePatched(s, 23, 0x7F), DecodeStatus::kOk) << "count 0x7F000001";
  }

  // Queue entry: client id 2..6, seq 7..14, message id 15..22, qos 23, state 24, packet id 25..26.
  EXPECT_EQ(decodePatched(queued(), 23, 0), DecodeStatus::kBadValue) << "queue qos 0";
  EXPECT_EQ(decodePatched(queued(), 23, 3), DecodeStatus::kBadValue) << "queue qos 3";
  EXPECT_EQ(decodePatched(queued(), 24, 3), DecodeStatus::kBadValue) << "unknown state";
  EXPECT_EQ(decodePatched(queued(), 25, 1), DecodeStatus::kBadValue) << "queued with packet id";
  EXPECT_EQ(decodePatched(queued(), 24, 1), DecodeStatus::kBadValue) << "sent without packet id";
  EXPECT_EQ(decodePatched(queued(), 15, 0), DecodeStatus::kBadValue) << "message id 0";
  {
    QueueEntry q{"c", 0, 1, 1, QueueState::kAwaitingAck, 3};
    EXPECT_EQ(decodePatched(q, 24, 2), DecodeStatus::kBadValue) << "PUBREL pending at QoS 1";
  }
  EXPECT_EQ(decodePatched(InboundQos2{"c", 1}, 7, 0), DecodeStatus::kBadValue) << "packet id 0";
}

MessageRecord namedMessage() {
  MessageRecord m = minimalMessage();
  m.publisherId = "p";
  m.publisherPacketId = 0x0102;
  m.publishSerial = 3;
  return m;
}

TEST(PersistRecord, PublishNamesAndInboundSerialsRoundTrip) {
  expectRoundTrip(namedMessage());
  expectEveryTruncationRefused(namedMessage());
  MessageRecord big = maximalMessage();
  big.publisherId = name(kMaxStringBytes);
  big.publisherPacketId = 0xFFFF;
  big.publishSerial = ~std::uint64_t{0};
  expectRoundTrip(big);
  for (const InboundQos2& in : {InboundQos2{"c", 9, 42, false}, InboundQos2{"c", 9, 42, true},
                                InboundQos2{"c", 0, ~std::uint64_t{0}, true}}) {
    expectRoundTrip(in);
    expectEveryTruncationRefused(in);
  }
}

TEST(PersistRecord, RefusesImpossiblePublishNamesAndInboundRecords) {
  // Named message: id 2..9, topic 10..14, payload length 15..18, qos 19, retain 20, properties
  // length 21..24, expiry 25..32, serial 33..40, publisher 41..45, its packet id 46..47.
  EXPECT_EQ(decodePatched(namedMessage(), 45, 0), DecodeStatus::kBadValue) << "NUL in publisher";
  {
    MessageRecord m = namedMessage();
    m.publisherPacketId = 0x0100;  // low byte (46) already 0: patch the high byte
    EXPECT_EQ(decodePatched(m, 47, 0), DecodeStatus::kBadValue) << "publisher packet id 0";
  }
  {
    // Serial 0 names no publish: the name's bytes after it are trailing.
    std::string v = encoded(namedMessage());
    v[33] = 0;
    MessageRecord out;
    EXPECT_EQ(decode(v, out), DecodeStatus::kTrailingBytes);
  }
  // Inbound: client id 2..6, packet id 7..8, serial 9..16, released 17.
  EXPECT_EQ(decodePatched(InboundQos2{"c", 0, 5, true}, 17, 0), DecodeStatus::kBadValue)
      << "packet id 0 (the resolved-through serial) not released";
  EXPECT_EQ(decodePatched(InboundQos2{"c", 1, 5, true}, 17, 2), DecodeStatus::kBadValue)
      << "released flag 2";
}

TEST(PersistRecord, DecodesVersion1Records) {
  // Version 1 had no publish name and no inbound serial: they decode as 0, and the same bytes
  // with the version 2 fields are refused.
  std::string message = encoded(minimalMessage());
  message.resize(message.size() - 8);  // serial 0, nothing after it
  message[0] = 1;
  MessageRecord m;
  ASSERT_EQ(decode(message, m), DecodeStatus::kOk);
  EXPECT_EQ(m, minimalMessage());
  std::string inbound = encoded(InboundQos2{"c", 5, 0, false});
  inbound.resize(inbound.size() - 9);
  inbound[0] = 1;
  InboundQos2 in;
  ASSERT_EQ(decode(inbound, in), DecodeStatus::kOk);
  EXPECT_EQ(in, (InboundQos2{"c", 5, 0, false}));
  inbound[7] = 0;  // packet id 0 in version 1
  EXPECT_EQ(decode(inbound, in), DecodeStatus::kBadValue);
  std::string longer = encoded(namedMessage());
  longer[0] = 1;
  EXPECT_EQ(decode(longer, m), DecodeStatus::kTrailingBytes);
}

TEST(PersistRecord, RefusesOversizedLengths) {
  // A topic length over the MQTT limit, with the bytes present, is a bad value; a length beyond
  // the input is a truncation. Neither allocates.
  std::string v;
  v.push_back(static_cast<char>(kFormatVersion));
  v.push_back(static_cast<char>(RecordKind::kRetained));
  const std::uint32_t n = kMaxStringBytes + 1;
  for (int i = 0; i < 4; ++i)
    v.push_back(static_cast<char>((n >> (8 * i)) & 0xFF));
  RetainedRecord r;
  EXPECT_EQ(decode(v, r), DecodeStatus::kTruncated);
  v.append(n, 'x');
  EXPECT_EQ(decode(v, r), DecodeStatus::kBadValue);
  std::string huge = v.substr(0, 2) + std::string("\xff\xff\xff\xff", 4);
  EXPECT_EQ(decode(huge, r), DecodeStatus::kTruncated);
}

TEST(PersistRecordKeys, SortPerClientAndNumerically) {
  EXPECT_EQ(retainedKey("a/b"), "r/a/b");
  EXPECT_EQ(sessionKey("c"), "s/c");
  EXPECT_EQ(messageKey(0x0102), std::string("m/\0\0\0\0\0\0\x01\x02", 10));
  EXPECT_EQ(queueKey("c", 1), std::string("q/c\0\0\0\0\0\0\0\0\x01", 12));
  EXPECT_EQ(inboundKey("c", 0x0203), std::string("i/c\0\x02\x03", 6));
  EXPECT_LT(messageKey(255), messageKey(256)) << "big-endian: byte order is numeric order";
  EXPECT_LT(queueKey("c", 255), queueKey("c", 256));
  EXPECT_LT(inboundKey("c", 255), inboundKey("c", 256));
  // One client's keys are a contiguous prefix range that no other client's keys enter, even when
  // one client id is a prefix of another.
  const std::string prefix = queuePrefix("ab");
  const std::string end = prefixEnd(prefix);
  for (const std::string& other : {queueKey("a", 5), queueKey("abc", 0), queueKey("ab\x01", 0),
                                   queueKey("b", 0), queueKey("aa", ~std::uint64_t{0})}) {
    EXPECT_FALSE(other >= prefix && other < end) << "a key of another client inside the range";
  }
  EXPECT_TRUE(queueKey("ab", 0) >= prefix && queueKey("ab", ~std::uint64_t{0}) < end);
  // s/ and q/ order clients the same way (the merge at load relies on it).
  EXPECT_LT(sessionKey("a"), sessionKey("ab"));
  EXPECT_LT(queuePrefix("a"), queuePrefix("ab"));
  EXPECT_EQ(keyFor(queued()), queueKey("c", 0));
  EXPECT_EQ(keyFor(minimalMessage()), messageKey(1));
  EXPECT_EQ(keyFor(InboundQos2{"c", 9}), inboundKey("c", 9));
}

}  // namespace
}  // namespace tern::persist
