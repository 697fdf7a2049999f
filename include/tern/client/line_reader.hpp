// LineReader: splits a byte stream into line-protocol frames (docs/protocol.md, "Framing").
//
// A frame is the bytes before a LF; a CR right before the LF is dropped; empty frames are skipped.
// Bytes are read straight into the reader's buffer (writable() + commit()), so a read(2) that
// brings half a frame, or a hundred frames, costs no extra copy. A frame that grows past the limit
// without a LF is reported as kTooLong, and from then on next() returns only kTooLong: the stream
// is broken, the owner closes it.
//
// Owned by one connection; one thread. Not a hot path of the broker: the client, the load generator
// and the tests use it.
#pragma once

#include <cstddef>
#include <span>
#include <string>
#include <string_view>

namespace tern::client {

// Frames from the broker are at most 64 KiB by default, but LIST and STATS replies grow with the
// number of retained messages and workers: the client accepts much longer lines than it sends.
inline constexpr std::size_t kDefaultMaxFrameBytes = std::size_t{64} << 20;

class LineReader {
 public:
  enum class Result {
    kFrame,     // `frame` holds the next frame, valid until the next call on this reader
    kNeedMore,  // no complete frame buffered
    kTooLong,   // more than the limit buffered without a LF; the reader yields nothing more
  };

  // `maxFrameBytes` counts every byte before the LF, a CR included (as the broker counts).
  explicit LineReader(std::size_t maxFrameBytes = kDefaultMaxFrameBytes);

  // Space for at least `minBytes` more bytes; fill a prefix of it, then commit() what was filled.
  // May move buffered bytes (invalidates frames returned earlier).
  std::span<char> writable(std::size_t minBytes = 4096);
  void commit(std::size_t bytes) noexcept;

  // Copies `bytes` in (for callers that already hold the data, and for tests).
  void append(std::string_view bytes);

  // Yields the next complete frame, if any. Never allocates.
  Result next(std::string_view& frame) noexcept;

  // At the end of the stream: the bytes after the last LF as a final frame (a CR at its end
  // dropped), when there are any and the reader is not broken. Returns false otherwise.
  // REQUIRES: next() returned kNeedMore.
  bool takeRest(std::string_view& frame) noexcept;

  // Bytes buffered and not yet yielded.
  std::size_t buffered() const noexcept { return end_ - begin_; }

 private:
  std::string buffer_;
  std::size_t begin_ = 0;  // first byte not yet yielded
  std::size_t end_ = 0;    // one past the last committed byte
  std::size_t scan_ = 0;   // bytes before this offset hold no LF (the search resumes here)
  std::size_t maxFrameBytes_;
  bool broken_ = false;
};

}  // namespace tern::client
