#include "tern/routing/topic.hpp"

#include <cstring>

#include "tern/common/utf8.hpp"

namespace tern::routing {
namespace {

TopicStatus validateCommon(std::string_view text) noexcept {
  if (text.empty()) return TopicStatus::kEmpty;
  if (text.size() > kMaxTopicBytes) return TopicStatus::kTooLong;
  if (std::memchr(text.data(), '\0', text.size()) != nullptr) return TopicStatus::kContainsNul;
  if (!common::isValidUtf8(text)) return TopicStatus::kInvalidUtf8;
  return TopicStatus::kOk;
}

bool startsWithWildcard(std::string_view filter) noexcept {
  return !filter.empty() && (filter[0] == '+' || filter[0] == '#');
}

}  // namespace

std::string_view describe(TopicStatus status) noexcept {
  switch (status) {
    case TopicStatus::kOk:
      return "ok";
    case TopicStatus::kEmpty:
      return "empty topic";
    case TopicStatus::kTooLong:
      return "topic longer than 65535 bytes";
    case TopicStatus::kInvalidUtf8:
      return "topic is not valid UTF-8";
    case TopicStatus::kContainsNul:
      return "topic contains a NUL character";
    case TopicStatus::kWildcardInName:
      return "wildcards are not allowed in a topic name";
    case TopicStatus::kBadWildcard:
      return "a wildcard must be a whole level, and '#' only the last level";
  }
  return "invalid topic";
}

TopicStatus validateTopicName(std::string_view topic) noexcept {
  const TopicStatus status = validateCommon(topic);
  if (status != TopicStatus::kOk) return status;
  if (topic.find_first_of("+#") != std::string_view::npos) return TopicStatus::kWildcardInName;
  return TopicStatus::kOk;
}

TopicStatus validateTopicFilter(std::string_view filter) noexcept {
  const TopicStatus status = validateCommon(filter);
  if (status != TopicStatus::kOk) return status;
  LevelCursor cursor(filter);
  std::string_view level;
  while (cursor.next(level)) {
    if (level.find_first_of("+#") == std::string_view::npos) continue;
    if (level.size() != 1) return TopicStatus::kBadWildcard;
    if (level[0] == '#' && !cursor.done()) return TopicStatus::kBadWildcard;
  }
  return TopicStatus::kOk;
}

bool filterMatches(std::string_view filter, std::string_view topic) noexcept {
  if (!topic.empty() && topic[0] == '$' && startsWithWildcard(filter)) return false;
  LevelCursor f(filter);
  LevelCursor t(topic);
  std::string_view fl;
  std::string_view tl;
  for (;;) {
    const bool hasFilterLevel = f.next(fl);
    if (hasFilterLevel && fl == "#") return true;  // matches the rest, including nothing
    const bool hasTopicLevel = t.next(tl);
    if (!hasFilterLevel || !hasTopicLevel) return hasFilterLevel == hasTopicLevel;
    if (fl != "+" && fl != tl) return false;
  }
}

}  // namespace tern::routing
