// Generator: makes new cases from the protocols' grammar and mutates existing ones.
//
// generate() builds a case from a few blocks, each a small scenario on its own connections, and
// interleaves them (keeping each block's order):
//   - a line session: CONNECT on one socket, the CONNACK token captured into a slot, ATTACH of a
//     request and a push socket with that token, then pipelined requests, PINGs, a DISCONNECT;
//   - a hand-over: a partial line (no LF), a pause, then "\n" and a frame that moves the socket
//     to another worker (CONNECT@<id>, ATTACH@<forged token>, ATTACH@<captured token>);
//   - forged ATTACHs, noise (random bytes, CRLFs, empty lines, over-long lines);
//   - an MQTT client: CONNECT then packets, some mutated (bit flips, truncation, corrupted
//     remaining length), some dropped, duplicated or reordered;
//   - one protocol's bytes on the other's port;
//   - endings: half-close, RST, close.
// About 28% of cases are TLS cases: their blocks mostly run over TLS (client sessions, sometimes
// with a certificate; some sends cut the ciphertext rather than the plaintext), and they add
// TLS-only blocks: raw garbage and mutated ClientHellos on the TLS ports, stalled handshakes,
// TLS clients on the plain ports, raw records injected after a handshake, close_notify.
// About 17% of cases are WebSocket cases: MQTT clients over mqtt+ws and mqtt+wss (the same
// packets, in one frame per chunk, one frame cut at the split points, or fragmented messages,
// sometimes with pings), frames that arrive around the hand-over after CONNECT, hostile upgrade
// requests (some sent in pieces with waits), hostile frames, WebSocket clients on the other
// ports and other protocols on the WebSocket ports.
// Sends are split at random offsets, or byte by byte, sometimes with small gaps.
//
// mutate() changes a case: splice with another case, insert a block, delete, duplicate or swap
// actions, move split points, flip bytes (TLS records with TLS-aware mutations), change pauses,
// connections, tokens, a connection's transport (plain, TLS, raw on a TLS port), its WebSocket
// layer (on, off, without the upgrade, a move to a WebSocket port) and a send's mode (per-chunk
// records or frames, cut ciphertext or one frame, raw, fragmented, pings, a close frame);
// raw sends on WebSocket ports get frame-aware mutations.
//
// Every result is normalized (case.hpp). Deterministic: the same seed and calls give the same
// cases. Single-threaded.
#pragma once

#include <cstdint>
#include <string>

#include "case.hpp"
#include "rng.hpp"

namespace tern::fuzz {

class Generator {
 public:
  explicit Generator(std::uint64_t seed) noexcept : rng_(seed) {}

  Case generate(std::string name);
  // A mutation of `base`; `other` is the partner for splicing (may be `base` itself).
  Case mutate(const Case& base, const Case& other, std::string name);

  Rng& rng() noexcept { return rng_; }

 private:
  Rng rng_;
};

}  // namespace tern::fuzz
