// libFuzzer target for the line protocol's framing (nextLineFrame) and request parser
// (parseLineRequest): the input is a byte stream as a line-protocol peer would send it.
//
// The stream is cut into frames twice: once from a single buffer, and once fed in chunks whose
// sizes come from a PRNG seeded by a hash of the input (so a crash reproduces from the input
// alone), the way a connection appends socket reads to its buffer, drops consumed bytes and passes
// the knownWithoutLf hint (the bytes it had before the last read, when the previous call asked for
// more). The frame limit is picked from the same hash, often small so that too-long is reached.
// Invariants checked, besides ASan/UBSan finding no fault:
//   Framing, against a naive reference (docs/protocol.md, "Framing"):
//   - with a LF at index i of the data: i <= maxLine gives a frame with consumed == i + 1, and
//     i > maxLine gives too-long; without a LF: size <= maxLine is need-more, more is too-long;
//     need-more and too-long consume nothing;
//   - the frame is a view at the start of the data, holds no LF, and is the raw line (the bytes
//     before the LF) minus exactly one trailing CR when the raw line ends in CR. So a frame ends
//     in CR only when the raw line ends in CR CR ("a\r\r\n" gives "a\r"); consumed > frame size;
//   - a true knownWithoutLf hint (the server's, and past data.size() when there is no LF) gives
//     the same result as no hint;
//   - both passes yield the same frames (bytes and consumed) and end with the same status, with
//     the same unframed bytes left over.
//   Parsing, for every frame (empty ones included), against a naive reference of
//   docs/protocol.md, "Requests" and "Sessions", that splits the whole frame on '@':
//   - the same error, or the same type, subject, contents, retain flag, hasSubject and role; views
//     compared by address, so the subject and contents are the exact fields of the frame;
//   - subject and contents lie inside the frame and are read byte by byte; in pass 1 the frame is
//     parsed from an exact-size heap copy, so ASan catches a read past its end;
//   - an error is one the parser may return (unknown-type, bad-topic, bad-filter, bad-request),
//     errorCode() is non-empty and not "none", errorText is non-empty and outside the frame's
//     buffer (static storage), and is read byte by byte;
//   - a PUBLISH topic passes routing::validateTopicName and holds no '@' or '*'; a SUBSCRIBE,
//     UNSUBSCRIBE or LIST filter passes validateTopicFilter after normalizeFilter, which leaves no
//     '*' and keeps the size, and a SUBSCRIBE/UNSUBSCRIBE filter starting "$share/" is a whole
//     shared subscription; an accepted CONNECT client id passes isValidClientId, and its
//     credentials (user, and the password: everything after the third '@') are the frame's own
//     bytes; only PUBLISH carries contents or a retain flag, only CONNECT credentials.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "tern/protocol/line_framing.hpp"
#include "tern/protocol/line_request.hpp"
#include "tern/routing/topic.hpp"

namespace {

using namespace tern::protocol;
namespace routing = tern::routing;
using Status = LineFrame::Status;

void check(bool condition, const char* what) {
  if (condition) return;
  std::fprintf(stderr, "line_request_fuzz: invariant violated: %s\n", what);
  std::abort();
}

std::uint64_t fnv1a(const std::uint8_t* data, std::size_t size) {
  std::uint64_t hash = 0xcbf29ce484222325ULL;
  for (std::size_t i = 0; i < size; ++i)
    hash = (hash ^ data[i]) * 0x100000001b3ULL;
  return hash;
}

// xorshift64*: small, deterministic, good enough to pick split points.
struct Random {
  std::uint64_t state;
  std::uint64_t next() {
    state ^= state >> 12;
    state ^= state << 25;
    state ^= state >> 27;
    return state * 0x2545F4914F6CDD1DULL;
  }
};

std::size_t sink = 0;  // what touch() reads lands here, so the reads are not optimised away

// Reads every byte of `text`, so ASan sees the view dereferenced.
void touch(std::string_view text) {
  for (const char c : text)
    sink += static_cast<unsigned char>(c);
}

std::uintptr_t address(const char* p) {
  return reinterpret_cast<std::uintptr_t>(p);
}

// True when `part` lies inside `whole` (an empty view may also be null or sit at its end).
bool inside(std::string_view part, std::string_view whole) {
  if (part.empty() && part.data() == nullptr) return true;
  return address(part.data()) >= address(whole.data()) &&
         address(part.data()) + part.size() <= address(whole.data()) + whole.size();
}

bool overlaps(std::string_view a, std::string_view b) {
  if (a.empty() || b.empty()) return false;
  return address(a.data()) < address(b.data()) + b.size() &&
         address(b.data()) < address(a.data()) + a.size();
}

// ---- Framing ---------------------------------------------------------------------------------

// Checks `r = nextLineFrame(data, maxLine, ...)` against the contract, computed naively.
void checkFrame(std::string_view data, std::size_t maxLine, const LineFrame& r) {
  const std::size_t lf = data.find('\n');
  if (lf == std::string_view::npos) {
    check(r.status == (data.size() > maxLine ? Status::kTooLong : Status::kNeedMore),
          "without a LF: need-more up to maxLine bytes, too-long past it");
    check(r.consumed == 0, "need-more or too-long consumed bytes");
    return;
  }
  if (lf > maxLine) {
    check(r.status == Status::kTooLong, "a LF past maxLine bytes is not too-long");
    check(r.consumed == 0, "too-long consumed bytes");
    return;
  }
  check(r.status == Status::kFrame, "a LF within maxLine bytes is not a frame");
  check(r.consumed == lf + 1, "consumed is not the bytes up to and including the first LF");
  check(r.consumed > r.frame.size(), "consumed not larger than the frame");
  check(inside(r.frame, data), "frame not a view inside the buffer");
  check(r.frame.empty() || r.frame.data() == data.data(), "frame does not start the buffer");
  const bool rawEndsInCr = lf >= 1 && data[lf - 1] == '\r';
  check(r.frame.size() == (rawEndsInCr ? lf - 1 : lf),
        "frame is not the raw line minus exactly one trailing CR");
  check(std::memchr(r.frame.data(), '\n', r.frame.size()) == nullptr, "frame holds a LF");
  if (!r.frame.empty() && r.frame.back() == '\r') {
    check(lf >= 2 && data[lf - 1] == '\r' && data[lf - 2] == '\r',
          "frame ends in CR although the raw line does not end in CR CR");
  }
  touch(r.frame);
}

bool sameFrame(const LineFrame& a, const LineFrame& b) {
  return a.status == b.status && a.consumed == b.consumed && a.frame.size() == b.frame.size() &&
         (a.frame.empty() || a.frame.data() == b.frame.data());
}

// ---- Parsing: a naive reference of docs/protocol.md ---------------------------------------

bool equalsIgnoreCase(std::string_view text, std::string_view upper) {
  if (text.size() != upper.size()) return false;
  for (std::size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
    if (c != upper[i]) return false;
  }
  return true;
}

std::vector<std::string_view> splitAll(std::string_view frame) {
  std::vector<std::string_view> fields;
  for (;;) {
    const std::size_t at = frame.find('@');
    fields.push_back(frame.substr(0, at));
    if (at == std::string_view::npos) return fields;
    frame.remove_prefix(at + 1);
  }
}

bool referenceClientId(std::string_view id) {
  if (id.empty() || id.size() > 64) return false;
  for (const char c : id) {
    const bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                    c == '_' || c == '.' || c == '-';
    if (!ok) return false;
  }
  return true;
}

// `shareable`: SUBSCRIBE and UNSUBSCRIBE, where "$share/" must start a whole shared subscription:
// a share name of one or more characters without '/', '+' ('*') or '#', then a filter.
bool referenceFilterOk(std::string_view filter, bool shareable) {
  std::string plus(filter);
  for (char& c : plus)
    if (c == '*') c = '+';
  if (routing::validateTopicFilter(plus) != routing::TopicStatus::kOk) return false;
  if (!shareable || plus.rfind("$share/", 0) != 0) return true;
  const std::string rest = plus.substr(7);
  const std::size_t slash = rest.find('/');
  if (slash == std::string::npos || slash == 0 || slash + 1 == rest.size()) return false;
  return rest.substr(0, slash).find_first_of("+#") == std::string::npos;
}

LineParse referenceFail(LineError error) {
  LineParse p;
  p.error = error;
  return p;
}

LineParse referenceOk(LineType type) {
  LineParse p;
  p.request.type = type;
  return p;
}

LineParse referenceFilter(LineType type, const std::vector<std::string_view>& fields,
                          bool optional) {
  if (fields.size() == 1 && optional) return referenceOk(type);
  if (fields.size() != 2) return referenceFail(LineError::kBadRequest);
  if (!referenceFilterOk(fields[1], type != LineType::kList)) {
    return referenceFail(LineError::kBadFilter);
  }
  LineParse p = referenceOk(type);
  p.request.subject = fields[1];
  p.request.hasSubject = true;
  return p;
}

LineParse reference(std::string_view frame) {
  const std::vector<std::string_view> fields = splitAll(frame);
  const std::string_view type = fields[0];
  if (equalsIgnoreCase(type, "PUBLISH")) {
    if (fields.size() < 3) return referenceFail(LineError::kBadRequest);
    const std::string_view topic = fields[1];
    if (topic.find('*') != std::string_view::npos ||
        routing::validateTopicName(topic) != routing::TopicStatus::kOk) {
      return referenceFail(LineError::kBadTopic);
    }
    const bool retain = fields.size() >= 4 && equalsIgnoreCase(fields.back(), "RETAIN");
    const char* begin = fields[2].data();
    const char* end = retain ? fields.back().data() - 1 : frame.data() + frame.size();
    LineParse p = referenceOk(LineType::kPublish);
    p.request.subject = topic;
    p.request.hasSubject = true;
    p.request.contents = std::string_view(begin, static_cast<std::size_t>(end - begin));
    p.request.retain = retain;
    return p;
  }
  if (equalsIgnoreCase(type, "SUBSCRIBE")) {
    return referenceFilter(LineType::kSubscribe, fields, false);
  }
  if (equalsIgnoreCase(type, "UNSUBSCRIBE")) {
    return referenceFilter(LineType::kUnsubscribe, fields, false);
  }
  if (equalsIgnoreCase(type, "LIST")) return referenceFilter(LineType::kList, fields, true);
  const struct {
    std::string_view name;
    LineType type;
  } bare[] = {{"PING", LineType::kPing},
              {"STATS", LineType::kStats},
              {"DISCONNECT", LineType::kDisconnect}};
  for (const auto& b : bare) {
    if (!equalsIgnoreCase(type, b.name)) continue;
    return fields.size() == 1 ? referenceOk(b.type) : referenceFail(LineError::kBadRequest);
  }
  if (equalsIgnoreCase(type, "CONNECT")) {
    // CONNECT, CONNECT@<id>, CONNECT@[<id>]@<user>@<password> (the password: all after the
    // third '@').
    if (fields.size() == 1) return referenceOk(LineType::kConnect);
    if (fields.size() == 3) return referenceFail(LineError::kBadRequest);
    LineParse p = referenceOk(LineType::kConnect);
    if (fields.size() >= 4) {
      if (fields[2].empty()) return referenceFail(LineError::kBadRequest);
      p.request.hasCredentials = true;
      p.request.user = fields[2];
      p.request.password = frame.substr(static_cast<std::size_t>(fields[3].data() - frame.data()));
      if (fields[1].empty()) return p;
    }
    if (!referenceClientId(fields[1])) return referenceFail(LineError::kBadRequest);
    p.request.subject = fields[1];
    p.request.hasSubject = true;
    return p;
  }
  if (equalsIgnoreCase(type, "ATTACH")) {
    if (fields.size() != 3) return referenceFail(LineError::kBadRequest);
    LineParse p = referenceOk(LineType::kAttach);
    p.request.subject = fields[1];
    p.request.hasSubject = true;
    if (equalsIgnoreCase(fields[2], "REQUEST")) {
      p.request.role = AttachRole::kRequest;
    } else if (equalsIgnoreCase(fields[2], "PUSH")) {
      p.request.role = AttachRole::kPush;
    } else {
      return referenceFail(LineError::kBadRequest);
    }
    return p;
  }
  return referenceFail(LineError::kUnknownType);
}

bool sameView(std::string_view a, std::string_view b) {
  return a.size() == b.size() && (a.empty() || a.data() == b.data());
}

// Parses `frame`, a view into `buffer` (the bytes the frame was cut from), and checks the result.
void checkParse(std::string_view frame, std::string_view buffer) {
  const LineParse p = parseLineRequest(frame);
  const LineParse want = reference(frame);
  check(p.error == want.error, "error differs from the reference");
  if (p.error != LineError::kNone) {
    check(p.error == LineError::kUnknownType || p.error == LineError::kBadTopic ||
              p.error == LineError::kBadFilter || p.error == LineError::kBadRequest,
          "the parser returned a state-dependent error");
    const std::string_view code = errorCode(p.error);
    check(!code.empty() && code != "none", "error without a wire code");
    touch(code);
    check(!p.errorText.empty(), "error without a text");
    check(!overlaps(p.errorText, buffer), "errorText points into the input, not static storage");
    touch(p.errorText);
    return;
  }
  const LineRequest& r = p.request;
  const LineRequest& w = want.request;
  check(inside(r.subject, frame), "subject outside the frame");
  check(inside(r.contents, frame), "contents outside the frame");
  touch(r.subject);
  touch(r.contents);
  check(r.type == w.type, "type differs from the reference");
  check(sameView(r.subject, w.subject), "subject differs from the reference");
  check(sameView(r.contents, w.contents), "contents differ from the reference");
  check(r.retain == w.retain, "retain flag differs from the reference");
  check(r.hasSubject == w.hasSubject, "hasSubject differs from the reference");
  check(r.hasCredentials == w.hasCredentials, "hasCredentials differs from the reference");
  check(sameView(r.user, w.user), "user differs from the reference");
  check(sameView(r.password, w.password), "password differs from the reference");
  check(inside(r.user, frame) && inside(r.password, frame), "credentials outside the frame");
  touch(r.user);
  touch(r.password);
  if (r.type != LineType::kConnect) {
    check(!r.hasCredentials && r.user.empty() && r.password.empty(), "credentials outside CONNECT");
  }
  if (r.type == LineType::kAttach) check(r.role == w.role, "role differs from the reference");
  if (r.type != LineType::kPublish) {
    check(r.contents.empty() && !r.retain, "contents or retain outside PUBLISH");
  }
  switch (r.type) {
    case LineType::kPublish:
      check(r.hasSubject, "PUBLISH without a topic");
      check(routing::validateTopicName(r.subject) == routing::TopicStatus::kOk,
            "PUBLISH topic fails validateTopicName");
      check(r.subject.find_first_of("@*") == std::string_view::npos,
            "PUBLISH topic holds '@' or '*'");
      break;
    case LineType::kSubscribe:
    case LineType::kUnsubscribe:
    case LineType::kList: {
      check(r.hasSubject || r.type == LineType::kList, "SUBSCRIBE/UNSUBSCRIBE without a filter");
      if (!r.hasSubject) break;
      const std::string normal = normalizeFilter(r.subject);
      check(normal.size() == r.subject.size(), "normalizeFilter changed the size");
      check(normal.find('*') == std::string::npos, "normalizeFilter left a '*'");
      check(routing::validateTopicFilter(normal) == routing::TopicStatus::kOk,
            "filter fails validateTopicFilter after normalizeFilter");
      break;
    }
    case LineType::kConnect:
      if (r.hasSubject) check(isValidClientId(r.subject), "CONNECT id fails isValidClientId");
      break;
    case LineType::kAttach:
      check(r.subject.find('@') == std::string_view::npos, "ATTACH token holds '@'");
      break;
    case LineType::kPing:
    case LineType::kStats:
    case LineType::kDisconnect:
      check(!r.hasSubject, "a bare request with a subject");
      break;
  }
}

// Parses a copy of `frame` in a heap block of exactly its size, so ASan sees any read past it.
void checkParseExact(std::string_view frame) {
  const std::unique_ptr<char[]> copy(new char[frame.size()]);
  if (!frame.empty()) std::memcpy(copy.get(), frame.data(), frame.size());
  const std::string_view exact(copy.get(), frame.size());
  checkParse(exact, exact);
}

std::size_t pickMaxLine(std::uint64_t hash) {
  const std::uint64_t pick = (hash >> 16) % 4096;
  switch ((hash >> 8) % 4) {
    case 0:
      return 64 + pick % 449;  // 64..512: the broker's smallest limits
    case 1:
      return pick % 64;  // below the broker's minimum: framing at its edges (0 included)
    case 2:
      return 64 + pick;  // up to about libFuzzer's default input size
    default:
      return 65536;  // the broker's default
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::uint64_t hash = fnv1a(data, size);
  const std::size_t maxLine = pickMaxLine(hash);
  const std::string_view stream(reinterpret_cast<const char*>(data), size);

  // Pass 1: the whole stream in one buffer.
  std::vector<std::string_view> frames;  // views into `data`, which outlives this call
  std::vector<std::size_t> sizes;
  Status whole = Status::kNeedMore;
  std::string_view rest = stream;
  for (;;) {
    const LineFrame r = nextLineFrame(rest, maxLine);
    checkFrame(rest, maxLine, r);
    whole = r.status;
    if (r.status != Status::kFrame) break;
    checkParse(r.frame, stream);
    checkParseExact(r.frame);
    frames.push_back(r.frame);
    sizes.push_back(r.consumed);
    rest.remove_prefix(r.consumed);
  }

  // Pass 2: the same stream in random chunks through a buffer that is compacted as it is consumed,
  // with the hint a server passes. Stops at too-long, where the broker closes the socket.
  Random random{hash | 1};
  std::string buffer;
  std::size_t fed = 0, index = 0;
  Status last = Status::kNeedMore;
  while (fed < size && last != Status::kTooLong) {
    const std::uint64_t roll = random.next();
    std::size_t chunk = roll % 4 == 0 ? 1 : 1 + (roll >> 8) % (roll % 4 == 1 ? 512 : 16);
    if (chunk > size - fed) chunk = size - fed;
    // The previous call said need-more: what is buffered now was searched for a LF in vain.
    std::size_t known = buffer.size();
    buffer.append(stream.substr(fed, chunk));
    fed += chunk;
    for (;;) {
      const LineFrame r = nextLineFrame(buffer, maxLine, known);
      checkFrame(buffer, maxLine, r);
      if (known != 0) {
        check(sameFrame(r, nextLineFrame(buffer, maxLine, 0)), "the hint changed the result");
      }
      if (buffer.find('\n') == std::string::npos) {
        const std::size_t past = (roll >> 32) % 2 == 0 ? buffer.size() + 1 + (roll >> 40) % 64
                                                       : std::numeric_limits<std::size_t>::max();
        check(sameFrame(r, nextLineFrame(buffer, maxLine, past)),
              "a hint past the end changed the result");
      }
      known = 0;  // the hint covers the first frame only
      last = r.status;
      if (r.status != Status::kFrame) break;
      check(index < frames.size(), "split framing found an extra frame");
      check(r.frame == frames[index] && r.consumed == sizes[index],
            "split framing differs from whole framing");
      checkParse(r.frame, buffer);
      ++index;
      buffer.erase(0, r.consumed);
    }
  }
  check(index == frames.size(), "split framing found fewer frames");
  check(last == whole, "split framing ends with a different status");
  if (last == Status::kNeedMore) {
    check(buffer == rest, "split framing left different bytes unframed");
  }
  if (sink == 0xFFFFFFFF) std::fputc(' ', stderr);  // keeps touch() from being optimised away
  return 0;
}
