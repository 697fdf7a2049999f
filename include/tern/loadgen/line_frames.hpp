// The client side of the line protocol (docs/protocol.md) as pure functions: splitting received
// bytes into frames and reading the broker's replies. loadgen's LineSession uses them; they do no
// I/O and are unit-tested alone.
//
// Pure functions: any thread, never allocate (except connectFrame, once per session). Views point
// into the caller's buffer.
#pragma once

#include <cstddef>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>

namespace tern::loadgen {

// Calls onFrame(frame) for every complete frame in `data` (the bytes before each LF, a CR right
// before the LF dropped, empty frames skipped) until onFrame returns false or the complete frames
// run out. Returns how many bytes were consumed: the caller keeps data[consumed..] (a partial
// frame) for the next read.
template <typename OnFrame>
std::size_t forEachFrame(std::string_view data, OnFrame&& onFrame) {
  std::size_t start = 0;
  while (start < data.size()) {
    const void* lf = std::memchr(data.data() + start, '\n', data.size() - start);
    if (lf == nullptr) break;
    const std::size_t end = static_cast<std::size_t>(static_cast<const char*>(lf) - data.data());
    std::size_t frameEnd = end;
    if (frameEnd > start && data[frameEnd - 1] == '\r') --frameEnd;
    const std::string_view frame = data.substr(start, frameEnd - start);
    start = end + 1;
    if (!frame.empty() && !onFrame(frame)) break;
  }
  return start;
}

// The CONNECT frame and its LF: "CONNECT@<client-id>", or with a user name
// "CONNECT@<client-id>@<user>@<password>" (the password may hold '@'; absent, it is sent empty, as
// the protocol needs the field). An empty client-id asks for one ("CONNECT", "CONNECT@@<user>@...").
// REQUIRES: no '@' in clientId or username, no LF in any of them (Options::validate()).
std::string connectFrame(std::string_view clientId, std::string_view username,
                         const std::optional<std::string>& password);

// "MESSAGE@<topic>@<contents>": true with the two views set; the contents may hold '@'.
bool parseMessageFrame(std::string_view frame, std::string_view& topic,
                       std::string_view& contents) noexcept;

// "CONNACK@<client-id>@<token>": true with the token set.
bool parseConnack(std::string_view frame, std::string_view& token) noexcept;

// True for "ERROR@<code>@<text>" (or a bare "ERROR@<code>"); `code` is set.
bool parseError(std::string_view frame, std::string_view& code) noexcept;

}  // namespace tern::loadgen
