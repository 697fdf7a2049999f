// Streaming MQTT 3.1.1 and 5.0 decoder: bytes in, one packet (or "need more", or an error) out.
//
// The protocol level is the caller's (it is a property of the connection, set by its CONNECT):
// decode(buffer, level) reads every packet but CONNECT in the layout of that level. A CONNECT is
// read in the layout its own protocol level names (3, 4 or 5).
//
// The caller owns the input buffer. It appends what the socket delivered, calls decode() on the
// unconsumed bytes, and on kPacket handles the packet and then drops `consumed` bytes; on kNeedMore
// it waits for more bytes; on any error it closes the connection (after CONNACK 0x01 for
// kUnacceptableProtocolLevel). The decoder keeps no state between calls, so the buffer may be
// moved or compacted between calls, but the packet's views point into it until it is consumed.
//
//   for (;;) {
//     const DecodeResult r = decoder.decode(in);
//     if (r.status == DecodeStatus::kNeedMore) break;
//     if (r.status != DecodeStatus::kPacket) { closeAfter(r.status); break; }
//     handle(r.packet);
//     in.remove_prefix(r.consumed);
//   }
//
// Errors are reported as early as the bytes allow: everything the first byte says (packet type,
// flags, PUBLISH QoS) when the first byte arrives, the packet size and the length of fixed-size
// packets as soon as the remaining length is complete, and the body only once it is all there.
// So the same bytes give the same result whatever the split points, and a peer announcing an
// oversized packet is refused before its body is buffered.
//
// Thread safety: decode() is const and touches only its arguments; any thread. Never allocates,
// never throws.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

#include "tern/protocol/mqtt_packet.hpp"

namespace tern::protocol::mqtt {

enum class DecodeStatus : std::uint8_t {
  kPacket,    // a whole valid packet: `packet` and `consumed` are set
  kNeedMore,  // the buffer ends inside a packet; nothing consumed

  // Errors. Every one means "close the network connection" [MQTT-4.8.0-1]; the broker first sends
  // CONNACK 0x01 for kUnacceptableProtocolLevel [MQTT-3.1.2-2].
  kMalformedRemainingLength,   // more than 4 remaining-length bytes
  kPacketTooLarge,             // fixed header announces more than DecoderConfig::maxPacketSize
  kReservedPacketType,         // packet type 0 or 15
  kUnexpectedPacketType,       // a type only the other role sends (DecoderConfig::role)
  kInvalidFixedHeaderFlags,    // flag bits differ from table 2.2 [MQTT-2.2.2-2]
  kInvalidPublishQos,          // PUBLISH with both QoS bits set [MQTT-3.3.1-4]
  kDupWithQos0,                // PUBLISH QoS 0 with DUP set [MQTT-3.3.1-2]
  kTruncated,                  // a field runs past the end of the packet
  kTrailingBytes,              // bytes left in the packet after its last field
  kInvalidUtf8,                // a string is not well-formed UTF-8 [MQTT-1.5.3-1]
  kNulInString,                // a string contains U+0000 [MQTT-1.5.3-2]
  kEmptyTopicName,             // PUBLISH or will topic of zero length [MQTT-4.7.3-1]
  kWildcardInTopicName,        // '+' or '#' in a PUBLISH or will topic [MQTT-3.3.2-2]
  kInvalidProtocolName,        // CONNECT protocol name neither "MQTT" nor "MQIsdp"
  kUnacceptableProtocolLevel,  // "MQTT" without level 4 or 5, "MQIsdp" without 3: CONNACK 0x01
  kConnectReservedFlag,        // CONNECT flags bit 0 set [MQTT-3.1.2-3]
  kInvalidWillQos,             // will QoS 3 [MQTT-3.1.2-14]
  kWillFlagsWithoutWill,      // will QoS or will retain set while will flag is 0 [MQTT-3.1.2-13/15]
  kPasswordWithoutUsername,   // 3.1.1: password flag without username flag [MQTT-3.1.2-22]
  kZeroPacketId,              // packet identifier 0 where one is required [MQTT-2.3.1-1]
  kEmptyPayload,              // SUBSCRIBE, UNSUBSCRIBE or SUBACK without entries [MQTT-3.8.3-3]
  kInvalidRequestedQos,       // SUBSCRIBE requested QoS 3 [MQTT-3.8.3-4]
  kSubscriptionReservedBits,  // SUBSCRIBE options bits 7..2 not zero [MQTT-3.8.3-4]
  kInvalidConnackFlags,       // CONNACK flags bits 7..1 set, or session present with an error
  kInvalidReturnCode,         // CONNACK code above 5, SUBACK code not 0, 1, 2 or 0x80
  // 5.0 only.
  kMalformedProperties,    // a property block the specification calls malformed (2.2.2)
  kPropertyProtocolError,  // a property repeated or with a forbidden value (2.2.2)
  kInvalidReasonCode,      // a reason code this packet may not carry
  kInvalidRetainHandling,  // SUBSCRIBE Retain Handling 3 [MQTT-3.8.3-5]
};

// The reason code a 5.0 server puts in the DISCONNECT it sends before closing for `status`
// (4.13): Packet too large (0x95), Protocol Error (0x82) or Malformed Packet (0x81).
ReasonCode disconnectReason(DecodeStatus status) noexcept;

// Human text, e.g. "PUBLISH with QoS 3", for logs.
std::string_view describe(DecodeStatus status) noexcept;

// True for every status except kPacket and kNeedMore.
constexpr bool isError(DecodeStatus status) noexcept {
  return status != DecodeStatus::kPacket && status != DecodeStatus::kNeedMore;
}

// Which side of the connection decodes: a broker accepts only what clients send, a client only
// what brokers send; kAny accepts both (tests, tools).
enum class Role : std::uint8_t { kServer, kClient, kAny };

struct DecoderConfig {
  // Largest packet accepted, fixed header included. The spec maximum is kMaxPacketSize.
  std::size_t maxPacketSize = kMaxPacketSize;
  Role role = Role::kServer;
};

struct DecodeResult {
  DecodeStatus status = DecodeStatus::kNeedMore;
  // Bytes of the decoded packet (kPacket only; 0 otherwise).
  std::size_t consumed = 0;
  // The whole packet's size once its fixed header is complete (0 before): lets the caller make
  // room for the rest on kNeedMore, or log what a peer tried on kPacketTooLarge.
  std::size_t packetSize = 0;
  Packet packet;  // kPacket only; views into the decoded buffer
  // For kMalformedProperties and kPropertyProtocolError: what was wrong (static text), for a
  // Reason String and the log. Empty otherwise.
  std::string_view detail;
};

class Decoder {
 public:
  explicit Decoder(DecoderConfig config = {}) noexcept : config_(config) {}

  // Decodes the first packet in `buffer`, which may hold part of a packet or several packets,
  // in the layout of protocol `level` (kProtocolLevel31, kProtocolLevel311 or kProtocolLevel5).
  // Never allocates. Any thread.
  DecodeResult decode(std::string_view buffer,
                      std::uint8_t level = kProtocolLevel311) const noexcept;
  DecodeResult decode(std::span<const std::byte> buffer,
                      std::uint8_t level = kProtocolLevel311) const noexcept {
    return decode(std::string_view(reinterpret_cast<const char*>(buffer.data()), buffer.size()),
                  level);
  }

  const DecoderConfig& config() const noexcept { return config_; }

 private:
  DecoderConfig config_;  // constant after construction
};

}  // namespace tern::protocol::mqtt
