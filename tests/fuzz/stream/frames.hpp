// The protocols' vocabulary for the generator: line-protocol frames and MQTT 3.1.1 packets,
// mostly valid (so that cases get past the handshakes and reach the interesting states), and the
// byte-level mutations that make them invalid.
//
// Names come from small pools where the broker keeps state per name (persistent MQTT sessions,
// retained topics), so a long run stays bounded in broker memory; line client ids come from a
// large pool, because their FNV-1a hash picks the home worker and hand-overs are the point.
//
// Pure functions of the Rng; single-threaded like the Rng. Allocate their results.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "rng.hpp"

namespace tern::fuzz::frames {

// ---- Line protocol (docs/protocol.md); frames are returned without their LF -------------------

// A valid client id: "c<number>" from a large pool, or random [A-Za-z0-9_.-]{1,64}.
std::string lineClientId(Rng& rng);
// A valid topic name from a bounded set (a few levels, wildcard-free, sometimes `$`).
std::string topicName(Rng& rng);
// A filter with `+`, `*` and `#` in valid and invalid places.
std::string topicFilter(Rng& rng);
// What a client could guess: 32 hex digits and a worker index 0000..0003, or a malformed token.
std::string forgedToken(Rng& rng);
// CONNECT, CONNECT@<id>, or a malformed variant (bad id, extra fields, odd case).
std::string lineConnect(Rng& rng);
// One request: SUBSCRIBE, UNSUBSCRIBE, PUBLISH (with retain), LIST, STATS, PING, DISCONNECT, or a
// malformed or unknown one.
std::string lineRequest(Rng& rng);
// "\n" mostly, "\r\n" sometimes.
std::string lineEnd(Rng& rng);
// Noise for a line socket: empty lines, CRLFs, NULs, random bytes with and without LFs.
std::string lineNoise(Rng& rng);
// `size` bytes without a LF (what a partial line looks like).
std::string partialLine(Rng& rng, std::size_t size);

// ---- MQTT 3.1.1 and 5.0 (docs/mqtt.md), built with tern's encoder -----------------------------

// A CONNECT: clean session 0 (ids from a small pool) or 1, a will sometimes, keep-alive 0..65535,
// sometimes protocol 3.1 or 5.0 (with properties: session expiry, receive maximum, maximum
// packet size, rarely an authentication method), sometimes username and password. `level`, when
// given, gets the protocol level chosen.
std::string mqttConnect(Rng& rng, std::uint8_t* level = nullptr);
// One valid client packet other than CONNECT in the layout of `level`: PUBLISH QoS 0/1/2 (retain,
// dup; 5.0: with properties, sometimes ones the broker refuses), PUBACK, PUBREC, PUBREL, PUBCOMP
// (5.0: with reason codes), SUBSCRIBE (5.0: with options), UNSUBSCRIBE, PINGREQ, or (rarely)
// DISCONNECT (5.0: with a reason, sometimes a session expiry) or AUTH.
std::string mqttPacket(Rng& rng, std::uint8_t level = 4);
// One mutation of an encoded packet: a bit flip, truncation, a corrupted or overlong remaining
// length, changed fixed-header flags, or appended garbage.
void mutatePacket(Rng& rng, std::string& packet);

// ---- TLS (the broker's handshake path) -------------------------------------------------------

// A ClientHello record the broker's TLS listener accepts (it answers with its ServerHello):
// TLS 1.3 and 1.2 suites, an x25519 key share of random bytes, sometimes SNI, sometimes only
// TLS 1.2. Built from the Rng, so a case's bytes do not depend on OpenSSL's randomness.
std::string tlsClientHello(Rng& rng);
// One mutation of TLS records: a bit flip, truncation, a wrong record, handshake or extension
// length, another content type or version, the record cut into several valid fragments,
// appended garbage.
void mutateTlsRecords(Rng& rng, std::string& records);
// Bytes that look like a TLS record after a handshake: application data with a bad MAC, an
// alert, a ChangeCipherSpec, a heartbeat, a handshake message (renegotiation), or an
// over-long record.
std::string tlsRecordNoise(Rng& rng);

// ---- WebSockets (the broker's --ws-port and --wss-port; ws_frames.cpp) --------------------------

// An upgrade request the broker accepts (answers 101): Host, Upgrade, Connection, a random key,
// version 13, subprotocol "mqtt" (sometimes in a list, sometimes without the header), in varied
// header order and case, sometimes with extra headers (Origin, User-Agent, extensions).
std::string wsUpgrade(Rng& rng);
// One the broker refuses, or waits on: a missing or duplicated Host, Upgrade, Connection or key,
// a bad key, another version (426), no "mqtt" subprotocol, another method (405), HTTP/1.0, a line
// that is no header, bare LFs, headers past 8 KiB (431), NULs, garbage, or a mutated valid one.
std::string wsHostileUpgrade(Rng& rng);
// A frame with first header byte `first` (ws::firstByte), the payload masked with a key from
// the Rng (unmasked with !masked).
std::string wsFrame(Rng& rng, std::uint8_t first, std::string_view payload, bool masked = true);
// MQTT bytes framed as a client may: one binary frame, or a fragmented message, with pings and
// pongs between the frames sometimes, and sometimes empty frames.
std::string wsDataFrames(Rng& rng, std::string_view payload);
// A frame the broker refuses or must answer: unmasked, reserved bits, unknown opcodes, a 64-bit
// length with its top bit set, longer than the broker's frame limit, text, close frames with
// codes the RFC forbids, bad UTF-8 reasons or a 1-byte payload, control frames over 125 bytes or
// fragmented, continuations without a start, a new message inside a fragmented one, pongs no ping
// asked for, non-minimal length encodings; and sometimes a valid close or ping.
std::string wsHostileFrame(Rng& rng);
// One mutation of frame bytes: FIN, a reserved bit, the opcode, the mask bit or the length of
// the first frame's header changed, or a byte-level mutation.
void mutateWsFrames(Rng& rng, std::string& frames);

// ---- Any bytes ---------------------------------------------------------------------------------

// One byte-level mutation: flip a bit, set a byte, insert or delete bytes, insert a LF or CR.
void mutateBytes(Rng& rng, std::string& bytes);

}  // namespace tern::fuzz::frames
