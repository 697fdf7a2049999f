// MQTT 3.1.1 and 5.0 encoders: each appends exactly one packet to a caller-owned std::string.
//
// 5.0 packets carry a property block: the *5 functions take its entries (what PropertyWriter
// builds between its start and finish(), or a decoded Properties::block) without the length, and
// write the length themselves; an empty view is an empty block.
//
// The string only grows (amortised, like any append); nothing else is allocated and no temporary
// is built. The broker writes CONNACK, PUBLISH, PUBACK/PUBREC/PUBREL/PUBCOMP, SUBACK, UNSUBACK and
// PINGRESP; the client and load generator write CONNECT, PUBLISH, SUBSCRIBE, UNSUBSCRIBE, PINGREQ
// and DISCONNECT and the acknowledgements.
//
// For fan-out the broker can write a PUBLISH without its payload (appendPublishHeader) and then
// send the one shared payload from the Message (e.g. with writev), so it is never copied.
//
// The encoders trust their arguments: a REQUIRES is checked with assert in debug builds only, and
// a violated one produces a packet the peer will reject. appendPublish/appendPublishHeader are the
// exception because their sizes come from the network: they check and return false.
//
// Pure functions on the caller's buffer: any thread. Never throw except std::bad_alloc from the
// string growing.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "tern/protocol/mqtt_packet.hpp"

namespace tern::protocol::mqtt {

// Bytes of the remaining-length field for `remaining` (1..4).
// REQUIRES: remaining <= kMaxRemainingLength.
constexpr std::size_t remainingLengthSize(std::size_t remaining) noexcept {
  return remaining < 128 ? 1 : remaining < 16'384 ? 2 : remaining < 2'097'152 ? 3 : 4;
}

// Bytes of the fixed header (type byte + remaining length) for `remaining`.
constexpr std::size_t fixedHeaderSize(std::size_t remaining) noexcept {
  return 1 + remainingLengthSize(remaining);
}

// Writes the remaining-length varint to `out` and returns its size.
// REQUIRES: remaining <= kMaxRemainingLength; `out` has room for remainingLengthSize(remaining).
std::size_t encodeRemainingLength(std::size_t remaining, char* out) noexcept;

// Remaining length of a PUBLISH: topic, packet id when qos > 0, payload.
constexpr std::size_t publishRemainingLength(const Publish& publish) noexcept {
  return 2 + publish.topic.size() + (publish.qos > 0 ? 2 : 0) + publish.payload.size();
}

// ---- Broker to client -------------------------------------------------------------------------

void appendConnack(std::string& out, bool sessionPresent, ConnectReturnCode code);

// Appends the whole PUBLISH. False (nothing appended) when it cannot be encoded: topic longer than
// kMaxStringBytes or remaining length above kMaxRemainingLength.
// REQUIRES: qos <= 2; packetId != 0 when qos > 0 (ignored when qos == 0).
bool appendPublish(std::string& out, const Publish& publish);

// Appends the PUBLISH fixed header, topic and packet id, but not the payload; the remaining
// length counts publish.payload.size(), so the caller must send exactly those payload bytes next.
// False as for appendPublish. Same REQUIRES.
bool appendPublishHeader(std::string& out, const Publish& publish);

// REQUIRES for the acknowledgements: packetId != 0.
void appendPuback(std::string& out, std::uint16_t packetId);
void appendPubrec(std::string& out, std::uint16_t packetId);
void appendPubrel(std::string& out, std::uint16_t packetId);
void appendPubcomp(std::string& out, std::uint16_t packetId);

// REQUIRES: packetId != 0; 1..kMaxRemainingLength-2 codes, each 0, 1, 2 or kSubackFailure.
void appendSuback(std::string& out, std::uint16_t packetId,
                  std::span<const std::uint8_t> returnCodes);

void appendUnsuback(std::string& out, std::uint16_t packetId);
void appendPingresp(std::string& out);

// ---- Client to broker -------------------------------------------------------------------------

// Writes the flags as given (willFlag, usernameFlag, passwordFlag decide which payload fields are
// present). REQUIRES: willQos <= 2; passwordFlag only with usernameFlag; every string at most
// kMaxStringBytes; willQos and willRetain 0 without willFlag.
void appendConnect(std::string& out, const Connect& connect);

// REQUIRES: packetId != 0; at least one entry; each filter at most kMaxStringBytes, qos <= 2.
void appendSubscribe(std::string& out, std::uint16_t packetId,
                     std::span<const Subscription> subscriptions);

// REQUIRES: packetId != 0; at least one filter, each at most kMaxStringBytes.
void appendUnsubscribe(std::string& out, std::uint16_t packetId,
                       std::span<const std::string_view> filters);

void appendPingreq(std::string& out);
void appendDisconnect(std::string& out);

// ---- 5.0 ----------------------------------------------------------------------------------------

// The bytes of a property block whose entries are `properties` (length included).
constexpr std::size_t propertyBlockSize(std::string_view properties) noexcept {
  return variableByteIntegerSize(static_cast<std::uint32_t>(properties.size())) + properties.size();
}

// REQUIRES for all: properties.size() <= kMaxVariableByteInteger and the packet fits.
void appendConnack5(std::string& out, bool sessionPresent, ReasonCode reason,
                    std::string_view properties);
// As appendPublish/appendPublishHeader, with `properties` (the topic may be empty when they hold
// a Topic Alias).
bool appendPublish5(std::string& out, const Publish& publish, std::string_view properties);
bool appendPublishHeader5(std::string& out, const Publish& publish, std::string_view properties);
// PUBACK, PUBREC, PUBREL or PUBCOMP: the short form (packet id only) for Success without
// properties (3.4.2.1). REQUIRES: packetId != 0.
void appendAck5(std::string& out, PacketType type, std::uint16_t packetId, ReasonCode reason,
                std::string_view properties = {});
// REQUIRES: packetId != 0; at least one code.
void appendSuback5(std::string& out, std::uint16_t packetId, std::span<const std::uint8_t> codes,
                   std::string_view properties = {});
void appendUnsuback5(std::string& out, std::uint16_t packetId, std::span<const std::uint8_t> codes,
                     std::string_view properties = {});
// The short form (no bytes after the fixed header) for Normal disconnection without properties.
void appendDisconnect5(std::string& out, ReasonCode reason, std::string_view properties = {});
void appendAuth5(std::string& out, ReasonCode reason, std::string_view properties = {});
// Client side. A Connect of protocol level 5 is written by appendConnect with its properties and
// will properties blocks. Subscribe entries carry their 5.0 options.
void appendSubscribe5(std::string& out, std::uint16_t packetId,
                      std::span<const Subscription> subscriptions,
                      std::string_view properties = {});
void appendUnsubscribe5(std::string& out, std::uint16_t packetId,
                        std::span<const std::string_view> filters,
                        std::string_view properties = {});

// ---- Any packet -------------------------------------------------------------------------------

// Appends any packet value, e.g. one the decoder produced (SUBSCRIBE and UNSUBSCRIBE reuse their
// validated wire payload), in the layout of protocol `level` (a Connect in its own). False when
// `packet` is monostate or a PUBLISH that cannot be encoded.
bool appendPacket(std::string& out, const Packet& packet, std::uint8_t level = kProtocolLevel311);

}  // namespace tern::protocol::mqtt
