// Topic names and topic filters: validation, level splitting and the reference matcher.
//
// Rules (docs/protocol.md, shared by the line protocol and MQTT):
//   - 1..65535 bytes of well-formed UTF-8 without NUL. Levels are separated by '/'; empty
//     levels are allowed ("a//b", "/a", "a/").
//   - A topic name contains no '+' or '#' (and, in the line protocol, no '*': see
//     line_request.hpp).
//   - In a filter, '+' matches exactly one level and '#' any number of levels including none
//     ("a/#" matches "a"); each wildcard is a whole level and '#' may only be the last level.
//   - A filter whose first level is a wildcard does not match a topic that starts with '$'.
// The trie and the retained store know only '+' and '#'; the line protocol's '*' is rewritten to
// '+' before a filter reaches them (in MQTT '*' is an ordinary character).
//
// Pure functions: any thread, never allocate.
#pragma once

#include <cstddef>
#include <string_view>

namespace tern::routing {

inline constexpr std::size_t kMaxTopicBytes = 65535;

enum class TopicStatus {
  kOk,
  kEmpty,           // zero bytes
  kTooLong,         // more than kMaxTopicBytes
  kInvalidUtf8,     // not well-formed UTF-8
  kContainsNul,     // U+0000
  kWildcardInName,  // '+' or '#' in a topic name
  kBadWildcard,     // in a filter: wildcard not a whole level, or '#' not last
};

// Human text for a status, e.g. "wildcards are not allowed in a topic name".
std::string_view describe(TopicStatus status) noexcept;

// Validates a topic name (what PUBLISH carries).
TopicStatus validateTopicName(std::string_view topic) noexcept;

// Validates a topic filter (what SUBSCRIBE carries).
TopicStatus validateTopicFilter(std::string_view filter) noexcept;

// Splits a topic or filter into levels without copying: views into the input.
//   LevelCursor c(topic); std::string_view level; while (c.next(level)) { ... }
class LevelCursor {
 public:
  explicit LevelCursor(std::string_view text) noexcept : rest_(text) {}
  // Yields the next level; false after the last one. "a//b" yields "a", "", "b"; "a/" yields
  // "a", "". Never allocates.
  bool next(std::string_view& level) noexcept {
    if (done_) return false;
    const std::size_t slash = rest_.find('/');
    if (slash == std::string_view::npos) {
      level = rest_;
      done_ = true;
    } else {
      level = rest_.substr(0, slash);
      rest_.remove_prefix(slash + 1);
    }
    return true;
  }
  // True when no level is left to yield.
  bool done() const noexcept { return done_; }

 private:
  std::string_view rest_;
  bool done_ = false;
};

// The reference matcher: true when `filter` matches `topic`, level by level, with the '$' rule.
// REQUIRES: both valid. O(length). Used by tests and the naive baselines, not by the broker.
bool filterMatches(std::string_view filter, std::string_view topic) noexcept;

}  // namespace tern::routing
