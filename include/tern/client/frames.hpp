// The client's view of line-protocol frames (docs/protocol.md): what a typed line asks for, how a
// PUBLISH request is built from command-line options, and how frames from the broker are shown.
//
// Pure functions: any thread; the ones taking `std::string& out` append to it and allocate only
// through it.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace tern::client {

// True when the frame's first field (the text before the first '@', or all of it) equals `type`
// ignoring ASCII case, as the broker matches request types.
bool frameTypeIs(std::string_view frame, std::string_view type) noexcept;

// An ERROR reply: "ERROR" or "ERROR@<code>@<text>".
inline bool isErrorFrame(std::string_view frame) noexcept {
  return frameTypeIs(frame, "ERROR");
}

// What a line typed by the user (or read from stdin) asks the client to do.
enum class InputKind {
  kEmpty,       // nothing but blanks: ignored
  kConnect,     // "connect" or "connect@<client-id>" (any case): open the three sockets
  kDisconnect,  // "disconnect" (any case): DISCONNECT, then wait for DISCONNACK
  kRequest,     // anything else: sent to the broker as typed
};

struct Input {
  InputKind kind = InputKind::kEmpty;
  // The frame to send: the line as typed for kRequest, the line without surrounding blanks for
  // kConnect and kDisconnect (so "connect@alice " asks for client-id "alice"). A view into the
  // line.
  std::string_view frame;
};

Input classifyInput(std::string_view line) noexcept;

// The CONNECT frame to send for `connect` (a kConnect input as typed, or "CONNECT" /
// "CONNECT@<client-id>") with the credentials of --username/--password added:
// "CONNECT@<client-id>@<user>@<password>", or "CONNECT@@<user>@<password>" without a client-id
// (an absent password is sent empty: the protocol needs the field). Without a user name, or when
// the typed frame already holds credentials (more than one '@'), `connect` as it is.
std::string connectWithCredentials(std::string_view connect, std::string_view username,
                                   const std::optional<std::string>& password);

// A pushed frame: MESSAGE@<topic>@<contents> or RETAINED@<topic>@<contents>. The contents are
// everything after the second '@'. Views into the frame.
struct Push {
  bool retained = false;
  std::string_view topic;
  std::string_view contents;
};

// Parses a MESSAGE or RETAINED frame; nullopt for anything else (PONG, ERROR, a malformed frame).
std::optional<Push> parsePush(std::string_view frame) noexcept;

// Appends "<topic>: <contents>", the interactive display of a push.
void appendPushLine(std::string& out, const Push& push);

// Appends "server: <frame>", the interactive display of a reply.
void appendReplyLine(std::string& out, std::string_view frame);

// Appends `text` with every control character made visible, so that bytes from the network cannot
// move the cursor or reprogram the terminal: C0 controls and DEL in caret notation ("^[", "^?"),
// the C1 controls U+0080..U+009F (which some terminals obey as escapes) as "M-^[" and so on,
// like `cat -v`. Everything else, invalid UTF-8 included, is copied.
void appendTerminalSafe(std::string& out, std::string_view text);

// Why a PUBLISH frame cannot be built from the given topic and contents.
enum class PublishCheck {
  kOk,
  kEmptyTopic,       // the broker would answer bad-topic; caught before connecting
  kTopicSeparator,   // '@' in the topic would end the topic field early
  kLineBreak,        // a LF in topic or contents would end the frame
  kTrailingCr,       // unretained contents ending in CR: the framing would drop the CR
  kAmbiguousRetain,  // contents ending in "@retain" (any case) sent without the retain flag
                     // would be read as the flag: such contents can only be sent retained
};

// Human text for a check result, e.g. "the topic must not contain '@'".
std::string_view describe(PublishCheck check) noexcept;

// Checks, then appends "PUBLISH@<topic>@<contents>" (+ "@retain") to `out` when kOk. Appends
// nothing otherwise.
PublishCheck appendPublish(std::string& out, std::string_view topic, std::string_view contents,
                           bool retain);

}  // namespace tern::client
