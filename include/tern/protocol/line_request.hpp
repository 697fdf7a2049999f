// The line protocol's request parser: one frame in, one LineRequest (or a LineError) out.
//
// Pure and allocation-free: every string in the result is a view into the frame, valid as long as
// the frame's bytes are. Validates field counts, topic names, filters and client ids exactly as
// docs/protocol.md says; the broker only decides what is state-dependent (not-connected, bad-token,
// too-many-sockets). Any thread.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace tern::protocol {

enum class LineType {
  kConnect,
  kAttach,
  kPublish,
  kSubscribe,
  kUnsubscribe,
  kList,
  kPing,
  kStats,
  kDisconnect,
};

// The error codes of docs/protocol.md; kNone means "no error".
enum class LineError {
  kNone,
  kUnknownType,
  kBadTopic,
  kBadFilter,
  kBadRequest,
  kNotConnected,
  kBadToken,
  kTooLong,
  kTooManySockets,
  kTooManySubscriptions,  // the session holds --max-subscriptions filters
  kServerBusy,            // a broker-wide limit: sessions, connections, memory, retained store
  kNotAuthorized,         // CONNECT credentials refused (--password-file, --allow-anonymous)
  kStorage,               // --data-dir could not store a retained publish: not acknowledged
};

// The code as it appears on the wire, e.g. "bad-topic".
std::string_view errorCode(LineError error) noexcept;

enum class AttachRole { kRequest, kPush };

struct LineRequest {
  LineType type = LineType::kPing;
  // CONNECT: the client id (empty: the broker assigns one). ATTACH: the token. PUBLISH: the topic.
  // SUBSCRIBE/UNSUBSCRIBE/LIST: the filter as sent ('*' not yet rewritten; see normalizeFilter).
  std::string_view subject;
  std::string_view contents;               // PUBLISH only
  bool retain = false;                     // PUBLISH only
  bool hasSubject = false;                 // LIST with a filter, CONNECT with a client id
  AttachRole role = AttachRole::kRequest;  // ATTACH only
  // CONNECT@<client-id>@<user>@<password>: the password is everything after the third '@'.
  bool hasCredentials = false;
  std::string_view user;
  std::string_view password;
};

struct LineParse {
  LineError error = LineError::kNone;
  std::string_view errorText;  // short human text when error != kNone (static storage)
  LineRequest request;
};

// Parses one frame (without its LF and trailing CR). Never allocates. noexcept.
LineParse parseLineRequest(std::string_view frame) noexcept;

// True when `id` is a valid client id: 1..64 characters of [A-Za-z0-9_.-].
bool isValidClientId(std::string_view id) noexcept;
inline constexpr std::size_t kMaxClientIdLength = 64;

// Rewrites the line protocol's '*' wildcard to '+', the form the trie and the retained store use.
// REQUIRES: the filter was accepted by parseLineRequest.
std::string normalizeFilter(std::string_view filter);

}  // namespace tern::protocol
