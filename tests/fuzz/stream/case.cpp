// The case model's pure functions: resolving pieces and normalizing. The text form is in
// case_text.cpp.
#include "case.hpp"

#include <algorithm>

#include "rng.hpp"

namespace tern::fuzz {

namespace {

// Adjacent literal pieces become one, as the parser reads them.
void mergeLiterals(std::vector<Piece>& pieces) {
  std::vector<Piece> merged;
  for (Piece& p : pieces) {
    if (p.kind == Piece::Kind::kBytes && !merged.empty() &&
        merged.back().kind == Piece::Kind::kBytes) {
      merged.back().bytes += p.bytes;
    } else {
      merged.push_back(std::move(p));
    }
  }
  pieces = std::move(merged);
}

}  // namespace

std::size_t resolvedSize(const std::vector<Piece>& pieces) noexcept {
  std::size_t size = 0;
  for (const Piece& p : pieces) {
    size += p.kind == Piece::Kind::kBytes   ? p.bytes.size()
            : p.kind == Piece::Kind::kToken ? kTokenSize
                                            : p.count;
  }
  return size;
}

std::string resolve(const std::vector<Piece>& pieces, const std::string (&tokens)[kTokenSlots]) {
  std::string out;
  out.reserve(resolvedSize(pieces));
  for (const Piece& p : pieces) {
    switch (p.kind) {
      case Piece::Kind::kBytes:
        out += p.bytes;
        break;
      case Piece::Kind::kFill:
        out.append(p.count, static_cast<char>(p.fill));
        break;
      case Piece::Kind::kRandom: {
        std::uint64_t state = p.seed;
        std::uint64_t word = 0;
        for (std::uint32_t i = 0; i < p.count; ++i) {
          if (i % 8 == 0) word = splitMix64(state);
          out += static_cast<char>(word >> (8 * (i % 8)));
        }
        break;
      }
      case Piece::Kind::kToken: {
        const std::string& token = tokens[p.slot % kTokenSlots];
        out += token.empty() ? kForgedToken : std::string_view(token);
        break;
      }
    }
  }
  return out;
}

void normalize(Case& c) {
  if (c.actions.size() > kMaxActions) c.actions.resize(kMaxActions);
  std::size_t bytes = 0;
  std::uint32_t paused = 0;
  std::vector<Action> kept;
  kept.reserve(c.actions.size());
  for (Action& a : c.actions) {
    a.conn = static_cast<std::uint8_t>(a.conn % kMaxConnections);
    if (a.kind == Action::Kind::kPause) {
      a.millis = std::min({a.millis, kMaxPauseMillis, kMaxCasePauseMillis - paused});
      paused += a.millis;
    }
    if (a.kind == Action::Kind::kRead) {
      a.millis = std::min(a.millis, kMaxReadWaitMillis);
      if (a.tokenSlot >= static_cast<int>(kTokenSlots)) a.tokenSlot = -1;
    }
    if (a.kind == Action::Kind::kSend) {
      for (Piece& p : a.pieces) {
        // Only the fields of the piece's kind are kept, as the text form has no others.
        Piece canonical;
        canonical.kind = p.kind;
        if (p.kind == Piece::Kind::kBytes) canonical.bytes = std::move(p.bytes);
        if (p.kind == Piece::Kind::kFill || p.kind == Piece::Kind::kRandom)
          canonical.count = p.count;
        if (p.kind == Piece::Kind::kFill) canonical.fill = p.fill;
        if (p.kind == Piece::Kind::kRandom) canonical.seed = p.seed;
        if (p.kind == Piece::Kind::kToken) canonical.slot = p.slot % kTokenSlots;
        p = std::move(canonical);
      }
      std::erase_if(a.pieces, [](const Piece& p) {
        return p.kind == Piece::Kind::kBytes ? p.bytes.empty()
                                             : p.kind != Piece::Kind::kToken && p.count == 0;
      });
      mergeLiterals(a.pieces);
      const std::size_t size = resolvedSize(a.pieces);
      if (a.pieces.empty() || bytes + size > kMaxCaseBytes) continue;
      bytes += size;
      if (size > kMaxSplits + 1) a.splitEveryByte = false;
      std::sort(a.splits.begin(), a.splits.end());
      a.splits.erase(std::unique(a.splits.begin(), a.splits.end()), a.splits.end());
      std::erase_if(a.splits, [size](std::uint32_t s) { return s == 0 || s >= size; });
      if (a.splits.size() > kMaxSplits) a.splits.resize(kMaxSplits);
      if (a.splitEveryByte) a.splits.clear();
      const std::size_t chunks = a.splitEveryByte ? size : a.splits.size() + 1;
      a.millis = std::min(a.millis, kMaxGapMillis);
      // Gaps count against the case's pause budget like pauses do.
      if (a.millis * (chunks - 1) + paused > kMaxCasePauseMillis) a.millis = 0;
      paused += a.millis * static_cast<std::uint32_t>(chunks - 1);
    } else {
      a.pieces.clear();
      a.splits.clear();
      a.splitEveryByte = false;
    }
    if (a.kind != Action::Kind::kRead) a.tokenSlot = -1;
    if (a.kind != Action::Kind::kOpen) {
      a.port = Port::kLine;
      a.transport = Transport::kPlain;
      a.ws = WsLayer::kNone;
    }
    if (a.kind != Action::Kind::kSend) a.raw = a.wire = a.frag = a.ping = a.closeFrame = false;
    if (a.raw) a.wire = false;  // raw bytes are not encrypted, so there is no ciphertext to cut
    // Raw bytes are not framed; one frame (`wire`) is not a fragmented message.
    if (a.raw || a.wire) a.frag = false;
    if (a.raw) a.ping = a.closeFrame = false;
    if (a.kind != Action::Kind::kPause && a.kind != Action::Kind::kRead &&
        a.kind != Action::Kind::kSend)
      a.millis = 0;
    if (a.kind == Action::Kind::kPause) a.conn = 0;
    kept.push_back(std::move(a));
  }
  c.actions = std::move(kept);
}

}  // namespace tern::fuzz
