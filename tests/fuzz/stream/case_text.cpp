// The text form of cases: serialize() and parseCases(). See case.hpp for the grammar.
#include "case.hpp"

#include <algorithm>
#include <charconv>

namespace tern::fuzz {

namespace {

constexpr char kHexDigits[] = "0123456789abcdef";

const char* kindName(Action::Kind kind) noexcept {
  switch (kind) {
    case Action::Kind::kOpen:
      return "open";
    case Action::Kind::kSend:
      return "send";
    case Action::Kind::kPause:
      return "pause";
    case Action::Kind::kRead:
      return "read";
    case Action::Kind::kShutdown:
      return "shutdown";
    case Action::Kind::kReset:
      return "reset";
    case Action::Kind::kClose:
      return "close";
    case Action::Kind::kNotify:
      return "notify";
  }
  return "?";
}

constexpr struct {
  Port port;
  std::string_view name;
} kPortNames[] = {{Port::kLine, "line"},        {Port::kMqtt, "mqtt"},
                  {Port::kLineTls, "line+tls"}, {Port::kMqttTls, "mqtt+tls"},
                  {Port::kMqttWs, "mqtt+ws"},   {Port::kMqttWss, "mqtt+wss"}};

constexpr struct {
  WsLayer ws;
  std::string_view name;
} kWsNames[] = {
    {WsLayer::kNone, "nows"}, {WsLayer::kUpgrade, "ws"}, {WsLayer::kNoUpgrade, "noupgrade"}};

// The WebSocket layer an open has when its text names none after the transport word: `raw` on
// a WebSocket port means bytes as they are, so no layer either.
WsLayer impliedWsLayer(Port port, bool rawWord) noexcept {
  return rawWord && isWsPort(port) ? WsLayer::kNone : defaultWsLayer(port);
}

std::string_view portName(Port port) noexcept {
  for (const auto& p : kPortNames)
    if (p.port == port) return p.name;
  return "?";
}

bool printable(unsigned char ch) noexcept {
  return ch >= 0x20 && ch < 0x7f;
}

void appendHexByte(std::string& out, unsigned char ch) {
  out += kHexDigits[ch >> 4];
  out += kHexDigits[ch & 15];
}

// A bytes piece as a quoted C-escaped string when it is mostly text, else as hex:.
void appendBytesPiece(std::string& out, std::string_view bytes) {
  std::size_t binary = 0;
  for (unsigned char ch : bytes)
    if (!printable(ch) && ch != '\n' && ch != '\r' && ch != '\t') ++binary;
  if (!bytes.empty() && binary * 4 > bytes.size()) {
    out += "hex:";
    for (unsigned char ch : bytes)
      appendHexByte(out, ch);
    return;
  }
  out += '"';
  for (unsigned char ch : bytes) {
    switch (ch) {
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '"':
        out += "\\\"";
        break;
      default:
        if (printable(ch)) {
          out += static_cast<char>(ch);
        } else {
          out += "\\x";
          appendHexByte(out, ch);
        }
    }
  }
  out += '"';
}

int hexValue(char ch) noexcept {
  if (ch >= '0' && ch <= '9') return ch - '0';
  if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
  if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
  return -1;
}

template <typename T>
bool parseNumber(std::string_view text, T& value, int base = 10) noexcept {
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value, base);
  return ec == std::errc() && end == text.data() + text.size();
}

// Splits one line into words: runs of non-blanks, or "quoted strings" (returned with their
// quotes, escapes untouched). A '#' that starts a word starts a comment.
bool splitWords(std::string_view line, std::vector<std::string_view>& words, std::string& error) {
  std::size_t i = 0;
  while (i < line.size()) {
    if (line[i] == ' ' || line[i] == '\t' || line[i] == '\r') {
      ++i;
      continue;
    }
    if (line[i] == '#') return true;
    const std::size_t start = i;
    bool quoted = false;
    while (i < line.size() && (quoted || (line[i] != ' ' && line[i] != '\t' && line[i] != '\r'))) {
      if (line[i] == '"') quoted = !quoted;
      if (quoted && line[i] == '\\') ++i;
      ++i;
    }
    if (quoted) {
      error = "unterminated string";
      return false;
    }
    words.push_back(line.substr(start, std::min(i, line.size()) - start));
  }
  return true;
}

bool unescape(std::string_view quoted, std::string& out, std::string& error) {
  for (std::size_t i = 0; i < quoted.size(); ++i) {
    const char ch = quoted[i];
    if (ch == '"') continue;
    if (ch != '\\') {
      out += ch;
      continue;
    }
    if (++i >= quoted.size()) break;
    switch (quoted[i]) {
      case 'n':
        out += '\n';
        break;
      case 'r':
        out += '\r';
        break;
      case 't':
        out += '\t';
        break;
      case '0':
        out += '\0';
        break;
      case '\\':
      case '"':
        out += quoted[i];
        break;
      case 'x': {
        const int hi = i + 1 < quoted.size() ? hexValue(quoted[i + 1]) : -1;
        const int lo = i + 2 < quoted.size() ? hexValue(quoted[i + 2]) : -1;
        if (hi < 0 || lo < 0) {
          error = "\\x needs exactly two hex digits";
          return false;
        }
        out += static_cast<char>(hi * 16 + lo);
        i += 2;
        break;
      }
      default:
        error = std::string("unknown escape \\") + quoted[i];
        return false;
    }
  }
  return true;
}

// One piece word, appended to `pieces` (adjacent literals are merged).
bool parsePiece(std::string_view word, std::vector<Piece>& pieces, std::string& error) {
  const auto literal = [&pieces]() -> std::string& {
    if (pieces.empty() || pieces.back().kind != Piece::Kind::kBytes) pieces.push_back({});
    return pieces.back().bytes;
  };
  if (word.front() == '"') return unescape(word, literal(), error);
  const std::size_t colon = word.find(':');
  const std::string_view kind = word.substr(0, colon);
  const std::string_view rest = colon == std::string_view::npos ? "" : word.substr(colon + 1);
  if (kind == "hex") {
    if (rest.size() % 2 != 0) {
      error = "hex: needs an even number of digits";
      return false;
    }
    std::string& out = literal();
    for (std::size_t i = 0; i < rest.size(); i += 2) {
      const int hi = hexValue(rest[i]);
      const int lo = hexValue(rest[i + 1]);
      if (hi < 0 || lo < 0) {
        error = "bad hex digit";
        return false;
      }
      out += static_cast<char>(hi * 16 + lo);
    }
    return true;
  }
  if (kind == "token") {
    unsigned slot = 0;
    if (!parseNumber(rest, slot) || slot >= kTokenSlots) {
      error = "token:K needs K below " + std::to_string(kTokenSlots);
      return false;
    }
    pieces.push_back(Piece::token(static_cast<std::uint8_t>(slot)));
    return true;
  }
  if (kind == "fill" || kind == "rand") {
    const std::size_t colon2 = rest.find(':');
    Piece p;
    p.kind = kind == "fill" ? Piece::Kind::kFill : Piece::Kind::kRandom;
    const std::string_view second = colon2 == std::string_view::npos ? "" : rest.substr(colon2 + 1);
    unsigned fill = 0;
    const bool ok = parseNumber(rest.substr(0, colon2), p.count) && p.count <= kMaxCaseBytes &&
                    (p.kind == Piece::Kind::kFill ? parseNumber(second, fill, 16) && fill < 256
                                                  : parseNumber(second, p.seed));
    if (!ok) {
      error = p.kind == Piece::Kind::kFill ? "fill:N:HH needs a count and a hex byte"
                                           : "rand:N:SEED needs a count and a decimal seed";
      return false;
    }
    p.fill = static_cast<std::uint8_t>(fill);
    pieces.push_back(std::move(p));
    return true;
  }
  error = "unknown piece '" + std::string(word) + "'";
  return false;
}

bool parseConn(std::string_view word, std::uint8_t& conn, std::string& error) {
  unsigned value = 0;
  if (!parseNumber(word, value) || value >= kMaxConnections) {
    error = "connection index must be 0.." + std::to_string(kMaxConnections - 1);
    return false;
  }
  conn = static_cast<std::uint8_t>(value);
  return true;
}

bool parseMillis(std::string_view word, std::uint32_t max, std::uint32_t& millis,
                 std::string& error) {
  if (!parseNumber(word, millis) || millis > max) {
    error = "milliseconds must be 0.." + std::to_string(max);
    return false;
  }
  return true;
}

bool parseSend(const std::vector<std::string_view>& words, Action& a, std::string& error) {
  std::size_t i = 2;
  const auto keyword = [](std::string_view w) {
    return w == "split" || w == "gap" || w == "raw" || w == "wire" || w == "frag" || w == "ping" ||
           w == "close";
  };
  for (; i < words.size() && !keyword(words[i]); ++i) {
    if (!parsePiece(words[i], a.pieces, error)) return false;
  }
  while (i < words.size()) {
    if (words[i] == "raw" || words[i] == "wire" || words[i] == "frag" || words[i] == "ping" ||
        words[i] == "close") {
      (words[i] == "raw"    ? a.raw
       : words[i] == "wire" ? a.wire
       : words[i] == "frag" ? a.frag
       : words[i] == "ping" ? a.ping
                            : a.closeFrame) = true;
      ++i;
      continue;
    }
    if (!keyword(words[i])) {
      error = "unexpected '" + std::string(words[i]) +
              "' after split, gap, raw, wire, frag, ping or close";
      return false;
    }
    if (i + 1 >= words.size()) {
      error = std::string(words[i]) + " needs a value";
      return false;
    }
    if (words[i] == "gap") {
      if (!parseMillis(words[i + 1], kMaxGapMillis, a.millis, error)) return false;
    } else if (words[i + 1] == "all") {
      a.splitEveryByte = true;
    } else {
      std::string_view list = words[i + 1];
      while (!list.empty()) {
        const std::size_t comma = list.find(',');
        std::uint32_t offset = 0;
        if (!parseNumber(list.substr(0, comma), offset)) {
          error = "split needs 'all' or offsets like 3,10,20";
          return false;
        }
        a.splits.push_back(offset);
        list = comma == std::string_view::npos ? "" : list.substr(comma + 1);
      }
      if (a.splits.size() > kMaxSplits) {
        error = "more than " + std::to_string(kMaxSplits) + " split points";
        return false;
      }
    }
    i += 2;
  }
  return true;
}

bool parseAction(const std::vector<std::string_view>& words, Action& a, std::string& error) {
  static constexpr Action::Kind kKinds[] = {
      Action::Kind::kOpen,     Action::Kind::kSend,  Action::Kind::kPause, Action::Kind::kRead,
      Action::Kind::kShutdown, Action::Kind::kReset, Action::Kind::kClose, Action::Kind::kNotify};
  const auto* kind = std::find_if(std::begin(kKinds), std::end(kKinds),
                                  [&](Action::Kind k) { return words[0] == kindName(k); });
  if (kind == std::end(kKinds)) {
    error = "unknown action '" + std::string(words[0]) + "'";
    return false;
  }
  a.kind = *kind;
  if (a.kind == Action::Kind::kPause) {
    if (words.size() != 2) {
      error = "pause MS";
      return false;
    }
    return parseMillis(words[1], kMaxPauseMillis, a.millis, error);
  }
  if (words.size() < 2 || !parseConn(words[1], a.conn, error)) {
    if (error.empty()) error = std::string(words[0]) + " needs a connection index";
    return false;
  }
  switch (a.kind) {
    case Action::Kind::kOpen: {
      const auto* port = words.size() < 3
                             ? std::end(kPortNames)
                             : std::find_if(std::begin(kPortNames), std::end(kPortNames),
                                            [&](const auto& p) { return words[2] == p.name; });
      if (port == std::end(kPortNames) || words.size() > 5) {
        error =
            "open C line|mqtt|line+tls|mqtt+tls|mqtt+ws|mqtt+wss [raw|tls|cert] "
            "[ws|noupgrade|nows]";
        return false;
      }
      a.port = port->port;
      a.transport = defaultTransport(a.port);
      std::size_t i = 3;
      bool rawWord = false;
      if (i < words.size()) {
        if (words[i] == "raw") {
          a.transport = Transport::kPlain;
          rawWord = true;
          ++i;
        } else if (words[i] == "tls") {
          a.transport = Transport::kTls;
          ++i;
        } else if (words[i] == "cert") {
          a.transport = Transport::kTlsCert;
          ++i;
        }
      }
      a.ws = impliedWsLayer(a.port, rawWord);
      if (i < words.size()) {
        const auto* ws = std::find_if(std::begin(kWsNames), std::end(kWsNames),
                                      [&](const auto& w) { return words[i] == w.name; });
        if (ws == std::end(kWsNames)) {
          error = "open C PORT [raw|tls|cert] [ws|noupgrade|nows]";
          return false;
        }
        a.ws = ws->ws;
        ++i;
      }
      if (i != words.size()) {
        error = "open C PORT [raw|tls|cert] [ws|noupgrade|nows]";
        return false;
      }
      return true;
    }
    case Action::Kind::kSend:
      return parseSend(words, a, error);
    case Action::Kind::kRead: {
      std::size_t i = 2;
      if (i < words.size() && words[i] != "token") {
        if (!parseMillis(words[i], kMaxReadWaitMillis, a.millis, error)) return false;
        ++i;
      }
      if (i < words.size()) {
        unsigned slot = 0;
        if (words[i] != "token" || i + 2 != words.size() || !parseNumber(words[i + 1], slot) ||
            slot >= kTokenSlots) {
          error = "read C [MS] [token K]";
          return false;
        }
        a.tokenSlot = static_cast<int>(slot);
      }
      return true;
    }
    default:
      if (words.size() != 2) {
        error = std::string(words[0]) + " C";
        return false;
      }
      return true;
  }
}

}  // namespace

std::string serialize(const Case& c) {
  std::string out = "case " + (c.name.empty() ? std::string("unnamed") : c.name) + "\n";
  for (const Action& a : c.actions) {
    out += kindName(a.kind);
    if (a.kind != Action::Kind::kPause) out += " " + std::to_string(a.conn);
    switch (a.kind) {
      case Action::Kind::kOpen:
        out += ' ';
        out += portName(a.port);
        {
          bool rawWord = false;
          if (a.transport == Transport::kTlsCert) {
            out += " cert";
          } else if (a.transport != defaultTransport(a.port)) {
            rawWord = a.transport == Transport::kPlain;
            out += rawWord ? " raw" : " tls";
          } else if (isWsPort(a.port) && a.transport == Transport::kPlain &&
                     a.ws == WsLayer::kNone) {
            rawWord = true;  // mqtt+ws raw: a plain socket without the WebSocket layer
            out += " raw";
          }
          if (a.ws != impliedWsLayer(a.port, rawWord)) {
            for (const auto& w : kWsNames)
              if (w.ws == a.ws) out += " " + std::string(w.name);
          }
        }
        break;
      case Action::Kind::kPause:
        out += " " + std::to_string(a.millis);
        break;
      case Action::Kind::kRead:
        out += " " + std::to_string(a.millis);
        if (a.tokenSlot >= 0) out += " token " + std::to_string(a.tokenSlot);
        break;
      case Action::Kind::kSend:
        for (const Piece& p : a.pieces) {
          out += ' ';
          switch (p.kind) {
            case Piece::Kind::kBytes:
              appendBytesPiece(out, p.bytes);
              break;
            case Piece::Kind::kFill:
              out += "fill:" + std::to_string(p.count) + ":";
              appendHexByte(out, p.fill);
              break;
            case Piece::Kind::kRandom:
              out += "rand:" + std::to_string(p.count) + ":" + std::to_string(p.seed);
              break;
            case Piece::Kind::kToken:
              out += "token:" + std::to_string(p.slot);
              break;
          }
        }
        if (a.splitEveryByte) {
          out += " split all";
        } else if (!a.splits.empty()) {
          out += " split ";
          for (std::size_t i = 0; i < a.splits.size(); ++i)
            out += (i == 0 ? "" : ",") + std::to_string(a.splits[i]);
        }
        if (a.millis != 0) out += " gap " + std::to_string(a.millis);
        if (a.raw) out += " raw";
        if (a.wire) out += " wire";
        if (a.frag) out += " frag";
        if (a.ping) out += " ping";
        if (a.closeFrame) out += " close";
        break;
      default:
        break;
    }
    out += '\n';
  }
  return out;
}

std::optional<std::vector<Case>> parseCases(std::string_view text, std::string_view defaultName,
                                            std::string& error) {
  std::vector<Case> cases;
  std::size_t lineNumber = 0;
  while (!text.empty()) {
    const std::size_t lf = text.find('\n');
    const std::string_view line = text.substr(0, lf);
    text = lf == std::string_view::npos ? "" : text.substr(lf + 1);
    ++lineNumber;
    std::vector<std::string_view> words;
    std::string why;
    Action action;
    bool ok = splitWords(line, words, why);
    if (ok && words.empty()) continue;
    if (ok && words[0] == "case") {
      if (words.size() != 2) {
        why = "case NAME";
        ok = false;
      } else {
        cases.push_back({std::string(words[1]), {}});
        continue;
      }
    }
    if (ok) ok = parseAction(words, action, why);
    if (!ok) {
      error = "line " + std::to_string(lineNumber) + ": " + why;
      return std::nullopt;
    }
    if (cases.empty()) cases.push_back({std::string(defaultName), {}});
    cases.back().actions.push_back(std::move(action));
  }
  if (cases.empty()) cases.push_back({std::string(defaultName), {}});
  for (Case& c : cases) {
    if (c.actions.size() > kMaxActions) {
      error = "case " + c.name + ": more than " + std::to_string(kMaxActions) + " actions";
      return std::nullopt;
    }
  }
  return cases;
}

}  // namespace tern::fuzz
