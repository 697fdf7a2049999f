// Line framing: how the line protocol's byte stream is cut into frames (docs/protocol.md,
// "Framing"): a frame is the bytes up to a LF, a CR right before the LF is dropped, and a frame
// longer than the limit (or that many bytes buffered without a LF) is refused.
//
// Pure and allocation-free: the frame is a view into the input. Any thread.
#pragma once

#include <cstddef>
#include <string_view>

namespace tern::protocol {

struct LineFrame {
  enum class Status {
    kFrame,     // `frame` is complete (possibly empty); drop `consumed` bytes to get past it
    kNeedMore,  // no LF yet and at most `maxLine` bytes: wait for more input
    kTooLong,   // the frame is (or will be) longer than `maxLine`: refuse it
  };
  Status status = Status::kNeedMore;
  std::string_view frame;    // kFrame: the bytes before the LF, without a trailing CR
  std::size_t consumed = 0;  // kFrame: the frame's length including its LF
};

// Finds the first frame at the front of `data`. `knownWithoutLf` is how many leading bytes the
// caller already searched for a LF in vain (the bytes it had before its last read), so that a long
// partial frame read in many small pieces is scanned once, not once per piece; 0 is always correct,
// and a value past data.size() is treated as data.size(). Never allocates. noexcept.
LineFrame nextLineFrame(std::string_view data, std::size_t maxLine,
                        std::size_t knownWithoutLf = 0) noexcept;

}  // namespace tern::protocol
