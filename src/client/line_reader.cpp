#include "tern/client/line_reader.hpp"

#include <algorithm>
#include <cstring>

namespace tern::client {

LineReader::LineReader(std::size_t maxFrameBytes) : maxFrameBytes_(maxFrameBytes) {}

std::span<char> LineReader::writable(std::size_t minBytes) {
  if (begin_ > 0 && (begin_ == end_ || buffer_.size() - end_ < minBytes)) {
    // Slide the unread bytes to the front before growing: the buffer stays about one frame long.
    std::memmove(buffer_.data(), buffer_.data() + begin_, end_ - begin_);
    end_ -= begin_;
    scan_ -= begin_;
    begin_ = 0;
  }
  if (buffer_.size() - end_ < minBytes) buffer_.resize(end_ + std::max(minBytes, end_));
  return {buffer_.data() + end_, buffer_.size() - end_};
}

void LineReader::commit(std::size_t bytes) noexcept {
  end_ += bytes;
}

void LineReader::append(std::string_view bytes) {
  std::span<char> space = writable(bytes.size());
  std::memcpy(space.data(), bytes.data(), bytes.size());
  commit(bytes.size());
}

LineReader::Result LineReader::next(std::string_view& frame) noexcept {
  while (!broken_) {
    const char* data = buffer_.data();
    const void* lf = std::memchr(data + scan_, '\n', end_ - scan_);
    if (lf == nullptr) {
      scan_ = end_;
      if (end_ - begin_ > maxFrameBytes_) {
        broken_ = true;
        return Result::kTooLong;
      }
      return Result::kNeedMore;
    }
    const std::size_t lfAt = static_cast<const char*>(lf) - data;
    if (lfAt - begin_ > maxFrameBytes_) {
      broken_ = true;
      return Result::kTooLong;
    }
    std::size_t frameEnd = lfAt;
    if (frameEnd > begin_ && data[frameEnd - 1] == '\r') --frameEnd;
    const std::size_t frameBegin = begin_;
    begin_ = lfAt + 1;
    scan_ = begin_;
    if (frameEnd > frameBegin) {
      frame = std::string_view(data + frameBegin, frameEnd - frameBegin);
      return Result::kFrame;
    }
  }
  return Result::kTooLong;
}

bool LineReader::takeRest(std::string_view& frame) noexcept {
  if (broken_ || begin_ == end_) return false;
  std::size_t frameEnd = end_;
  if (buffer_[frameEnd - 1] == '\r') --frameEnd;
  const std::size_t frameBegin = begin_;
  begin_ = end_;
  scan_ = end_;
  if (frameEnd == frameBegin) return false;
  frame = std::string_view(buffer_.data() + frameBegin, frameEnd - frameBegin);
  return true;
}

}  // namespace tern::client
