#include "tern/protocol/line_request.hpp"

#include <algorithm>
#include <array>
#include <cctype>

#include "tern/routing/shared_filter.hpp"
#include "tern/routing/topic.hpp"

namespace tern::protocol {
namespace {

// ASCII case-insensitive comparison against an upper-case literal.
bool equalsUpper(std::string_view text, std::string_view upper) noexcept {
  if (text.size() != upper.size()) return false;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    const char u = (c >= 'a' && c <= 'z') ? static_cast<char>(c - 'a' + 'A') : c;
    if (u != upper[i]) return false;
  }
  return true;
}

LineParse fail(LineError error, std::string_view text) noexcept {
  LineParse result;
  result.error = error;
  result.errorText = text;
  return result;
}

// Up to `max` fields split on '@'; returns how many were found. The last field holds the rest of
// the frame when there are more separators than `max` - 1 (the caller decides whether that is ok).
struct Fields {
  std::array<std::string_view, 4> field;
  std::size_t count = 0;
  bool more = false;  // more separators than fields
};

Fields splitFields(std::string_view frame) noexcept {
  Fields f;
  std::size_t start = 0;
  while (f.count < f.field.size()) {
    const std::size_t at = frame.find('@', start);
    if (at == std::string_view::npos) {
      f.field[f.count++] = frame.substr(start);
      return f;
    }
    f.field[f.count++] = frame.substr(start, at - start);
    start = at + 1;
  }
  f.more = true;
  return f;
}

// Validation shared by SUBSCRIBE, UNSUBSCRIBE and LIST: '*' is a wildcard like '+'. A SUBSCRIBE or
// UNSUBSCRIBE filter that starts with "$share/" must be a whole shared subscription.
LineError checkFilter(std::string_view filter, bool shareable, std::string_view* text) noexcept {
  if (filter.size() > routing::kMaxTopicBytes) {
    *text = routing::describe(routing::TopicStatus::kTooLong);
    return LineError::kBadFilter;
  }
  // Validate the '+' form without allocating: copy into a stack buffer only when a '*' is present.
  std::string_view normalized = filter;
  if (filter.find('*') != std::string_view::npos) {
    static thread_local std::array<char, routing::kMaxTopicBytes> buffer;
    std::replace_copy(filter.begin(), filter.end(), buffer.begin(), '*', '+');
    normalized = std::string_view(buffer.data(), filter.size());
  }
  const routing::TopicStatus status = routing::validateTopicFilter(normalized);
  if (status != routing::TopicStatus::kOk) {
    *text = routing::describe(status);
    return LineError::kBadFilter;
  }
  if (shareable &&
      routing::parseSharedFilter(normalized).kind == routing::SharedFilter::Kind::kInvalid) {
    *text =
        "a shared subscription is $share/<name>/<filter>, with a name of one or more characters "
        "other than '/', '+', '*' and '#'";
    return LineError::kBadFilter;
  }
  return LineError::kNone;
}

LineParse parseFilterRequest(LineType type, const Fields& f, bool optional) noexcept {
  if (f.more || f.count > 2) return fail(LineError::kBadRequest, "expected TYPE@<filter>");
  if (f.count < 2) {
    if (optional) {
      LineParse result;
      result.request.type = type;
      return result;
    }
    return fail(LineError::kBadRequest, "missing filter: expected TYPE@<filter>");
  }
  std::string_view text;
  const LineError error = checkFilter(f.field[1], type != LineType::kList, &text);
  if (error != LineError::kNone) return fail(error, text);
  LineParse result;
  result.request.type = type;
  result.request.subject = f.field[1];
  result.request.hasSubject = true;
  return result;
}

LineParse parsePublish(std::string_view frame) noexcept {
  // PUBLISH@<topic>@<contents>[@retain]: contents run to the end, minus a trailing "@retain" when
  // there are four or more fields.
  const std::size_t first = frame.find('@');
  const std::size_t second = first == std::string_view::npos ? first : frame.find('@', first + 1);
  if (second == std::string_view::npos) {
    return fail(LineError::kBadRequest, "expected PUBLISH@<topic>@<contents>[@retain]");
  }
  std::string_view topic = frame.substr(first + 1, second - first - 1);
  std::string_view contents = frame.substr(second + 1);
  bool retain = false;
  const std::size_t last = contents.rfind('@');
  if (last != std::string_view::npos && equalsUpper(contents.substr(last + 1), "RETAIN")) {
    retain = true;
    contents = contents.substr(0, last);
  }
  if (topic.find('*') != std::string_view::npos) {
    return fail(LineError::kBadTopic, "wildcards are not allowed in a topic name");
  }
  const routing::TopicStatus status = routing::validateTopicName(topic);
  if (status != routing::TopicStatus::kOk) return fail(LineError::kBadTopic, describe(status));
  LineParse result;
  result.request.type = LineType::kPublish;
  result.request.subject = topic;
  result.request.hasSubject = true;
  result.request.contents = contents;
  result.request.retain = retain;
  return result;
}

}  // namespace

std::string_view errorCode(LineError error) noexcept {
  switch (error) {
    case LineError::kNone:
      return "none";
    case LineError::kUnknownType:
      return "unknown-type";
    case LineError::kBadTopic:
      return "bad-topic";
    case LineError::kBadFilter:
      return "bad-filter";
    case LineError::kBadRequest:
      return "bad-request";
    case LineError::kNotConnected:
      return "not-connected";
    case LineError::kBadToken:
      return "bad-token";
    case LineError::kTooLong:
      return "too-long";
    case LineError::kTooManySockets:
      return "too-many-sockets";
    case LineError::kTooManySubscriptions:
      return "too-many-subscriptions";
    case LineError::kServerBusy:
      return "server-busy";
    case LineError::kNotAuthorized:
      return "not-authorized";
    case LineError::kStorage:
      return "storage";
  }
  return "bad-request";
}

bool isValidClientId(std::string_view id) noexcept {
  if (id.empty() || id.size() > kMaxClientIdLength) return false;
  return std::all_of(id.begin(), id.end(), [](char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '.' || c == '-';
  });
}

std::string normalizeFilter(std::string_view filter) {
  std::string out(filter);
  std::replace(out.begin(), out.end(), '*', '+');
  return out;
}

LineParse parseLineRequest(std::string_view frame) noexcept {
  const std::string_view type = frame.substr(0, frame.find('@'));
  if (equalsUpper(type, "PUBLISH")) return parsePublish(frame);

  const Fields f = splitFields(frame);
  if (equalsUpper(type, "SUBSCRIBE")) return parseFilterRequest(LineType::kSubscribe, f, false);
  if (equalsUpper(type, "UNSUBSCRIBE")) {
    return parseFilterRequest(LineType::kUnsubscribe, f, false);
  }
  if (equalsUpper(type, "LIST")) return parseFilterRequest(LineType::kList, f, true);

  const auto bare = [&](LineType t, std::string_view usage) {
    if (f.count != 1) return fail(LineError::kBadRequest, usage);
    LineParse result;
    result.request.type = t;
    return result;
  };
  if (equalsUpper(type, "PING")) return bare(LineType::kPing, "PING takes no fields");
  if (equalsUpper(type, "STATS")) return bare(LineType::kStats, "STATS takes no fields");
  if (equalsUpper(type, "DISCONNECT")) {
    return bare(LineType::kDisconnect, "DISCONNECT takes no fields");
  }

  if (equalsUpper(type, "CONNECT")) {
    constexpr std::string_view kUsage =
        "expected CONNECT[@<client-id>] or CONNECT@[<client-id>]@<user>@<password>";
    if (f.count == 3) return fail(LineError::kBadRequest, kUsage);
    LineParse result;
    result.request.type = LineType::kConnect;
    if (f.count == 4) {
      // The password is the rest of the frame after the third '@', '@'s included.
      const std::size_t third = f.field[3].data() - frame.data();
      result.request.hasCredentials = true;
      result.request.user = f.field[2];
      result.request.password = frame.substr(third);
      if (result.request.user.empty()) return fail(LineError::kBadRequest, "the user is empty");
      if (f.field[1].empty()) return result;  // CONNECT@@<user>@<password>: an assigned id
    }
    if (f.count >= 2) {
      if (!isValidClientId(f.field[1])) {
        return fail(LineError::kBadRequest, "client id must be 1-64 characters of [A-Za-z0-9_.-]");
      }
      result.request.subject = f.field[1];
      result.request.hasSubject = true;
    }
    return result;
  }
  if (equalsUpper(type, "ATTACH")) {
    if (f.more || f.count != 3)
      return fail(LineError::kBadRequest, "expected ATTACH@<token>@<role>");
    LineParse result;
    result.request.type = LineType::kAttach;
    result.request.subject = f.field[1];
    result.request.hasSubject = true;
    if (equalsUpper(f.field[2], "REQUEST")) {
      result.request.role = AttachRole::kRequest;
    } else if (equalsUpper(f.field[2], "PUSH")) {
      result.request.role = AttachRole::kPush;
    } else {
      return fail(LineError::kBadRequest, "role must be request or push");
    }
    return result;
  }
  return fail(LineError::kUnknownType, "unknown request type");
}

}  // namespace tern::protocol
