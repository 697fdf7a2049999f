#include "tern/protocol/line_framing.hpp"

#include <algorithm>
#include <cassert>
#include <cstring>

namespace tern::protocol {

LineFrame nextLineFrame(std::string_view data, std::size_t maxLine,
                        std::size_t knownWithoutLf) noexcept {
  const std::size_t from = std::min(knownWithoutLf, data.size());
  assert(std::memchr(data.data(), '\n', from) == nullptr);  // the caller's claim
  LineFrame result;
  const void* lf =
      from == data.size() ? nullptr : std::memchr(data.data() + from, '\n', data.size() - from);
  if (lf == nullptr) {
    result.status =
        data.size() <= maxLine ? LineFrame::Status::kNeedMore : LineFrame::Status::kTooLong;
    return result;
  }
  const auto end = static_cast<std::size_t>(static_cast<const char*>(lf) - data.data());
  if (end > maxLine) {
    result.status = LineFrame::Status::kTooLong;
    return result;
  }
  std::string_view frame = data.substr(0, end);
  if (!frame.empty() && frame.back() == '\r') frame.remove_suffix(1);
  result.status = LineFrame::Status::kFrame;
  result.frame = frame;
  result.consumed = end + 1;
  return result;
}

}  // namespace tern::protocol
