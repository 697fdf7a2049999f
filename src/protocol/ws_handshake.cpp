#include "tern/protocol/ws_handshake.hpp"

#include <openssl/evp.h>

#include <algorithm>
#include <cstdint>

#include "tern/protocol/http_tokens.hpp"

namespace tern::protocol {
namespace {

using http::equalsIgnoreCase;
using http::hasToken;
using http::trim;

constexpr std::string_view kGuid = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

bool tokenChar(char ch) noexcept {
  if (ch <= 32 || ch >= 127) return false;
  return std::string_view("()<>@,;:\\\"/[]?={}").find(ch) == std::string_view::npos;
}

bool base64Char(char ch) noexcept {
  return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
         ch == '+' || ch == '/';
}

// 16 bytes in base64: 22 characters of the alphabet and "==".
bool validKey(std::string_view key) noexcept {
  return key.size() == 24 && key.substr(22) == "==" &&
         std::all_of(key.begin(), key.begin() + 22, base64Char);
}

WsHandshake refuse(int status, std::string_view reason, std::string_view problem,
                   std::string_view extraHeader = {}) {
  WsHandshake h;
  h.status = WsHandshake::Status::kRefused;
  h.problem = problem;
  const std::string body = std::string(problem) + "\n";
  h.response = "HTTP/1.1 " + std::to_string(status) + " " + std::string(reason) + "\r\n";
  if (!extraHeader.empty()) h.response += std::string(extraHeader) + "\r\n";
  h.response += "Content-Type: text/plain\r\nContent-Length: " + std::to_string(body.size()) +
                "\r\nConnection: close\r\n\r\n" + body;
  return h;
}

}  // namespace

std::string wsAcceptKey(std::string_view key) {
  std::string input(key);
  input += kGuid;
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  EVP_Digest(input.data(), input.size(), digest, &length, EVP_sha1(), nullptr);
  unsigned char encoded[64];
  const int n = EVP_EncodeBlock(encoded, digest, static_cast<int>(length));
  return std::string(reinterpret_cast<const char*>(encoded), static_cast<std::size_t>(n));
}

WsHandshake parseWsHandshake(std::string_view input, const WsHandshakeOptions& options) {
  const std::size_t end = input.substr(0, options.maxBytes).find("\r\n\r\n");
  if (end == std::string_view::npos) {
    if (input.size() >= options.maxBytes) {
      return refuse(431, "Request Header Fields Too Large", "the upgrade request is too large");
    }
    return {};
  }
  std::string_view head = input.substr(0, end + 2);  // every line with its CRLF
  const auto nextLine = [&head]() {
    const std::size_t crlf = head.find("\r\n");
    const std::string_view line = head.substr(0, crlf);
    head.remove_prefix(crlf + 2);
    return line;
  };

  // GET <target> HTTP/1.x
  const std::string_view requestLine = nextLine();
  const std::size_t space1 = requestLine.find(' ');
  const std::size_t space2 =
      space1 == std::string_view::npos ? space1 : requestLine.find(' ', space1 + 1);
  if (space2 == std::string_view::npos || space2 == space1 + 1 ||
      requestLine.find(' ', space2 + 1) != std::string_view::npos) {
    return refuse(400, "Bad Request", "not an HTTP request line");
  }
  const std::string_view method = requestLine.substr(0, space1);
  const std::string_view version = requestLine.substr(space2 + 1);
  if (!version.starts_with("HTTP/1.") || version.size() != 8 || version[7] < '0' ||
      version[7] > '9') {
    return refuse(400, "Bad Request", "not an HTTP request line");
  }
  if (method != "GET") return refuse(405, "Method Not Allowed", "the upgrade request is not a GET");
  if (version == "HTTP/1.0") return refuse(400, "Bad Request", "HTTP/1.1 is needed to upgrade");

  std::string_view host, upgrade, connection, key, wsVersion, protocols, origin;
  bool sawProtocols = false, sawOrigin = false;
  while (!head.empty()) {
    const std::string_view line = nextLine();
    const std::size_t colon = line.find(':');
    if (colon == std::string_view::npos || colon == 0 ||
        !std::all_of(line.begin(), line.begin() + colon, tokenChar)) {
      return refuse(400, "Bad Request", "a header line is malformed");
    }
    const std::string_view name = line.substr(0, colon);
    const std::string_view value = trim(line.substr(colon + 1));
    struct Single {
      std::string_view name;
      std::string_view* value;
    };
    const Single singles[] = {{"Host", &host},
                              {"Upgrade", &upgrade},
                              {"Connection", &connection},
                              {"Sec-WebSocket-Key", &key},
                              {"Sec-WebSocket-Version", &wsVersion},
                              {"Origin", &origin}};
    bool known = false;
    for (const Single& s : singles) {
      if (!equalsIgnoreCase(name, s.name)) continue;
      known = true;
      if (s.value->data() != nullptr) return refuse(400, "Bad Request", "a header is repeated");
      *s.value = value.data() == nullptr ? std::string_view("", 0) : value;
      if (s.value == &origin) sawOrigin = true;
    }
    if (!known && equalsIgnoreCase(name, "Sec-WebSocket-Protocol")) {
      // Several headers are one list (RFC 7230 3.2.2): "mqtt" in any of them counts.
      if (hasToken(value, "mqtt")) protocols = "mqtt";
      sawProtocols = true;
    }
  }
  if (host.data() == nullptr) return refuse(400, "Bad Request", "the Host header is missing");
  if (upgrade.data() == nullptr || !hasToken(upgrade, "websocket")) {
    return refuse(400, "Bad Request", "the request does not ask to upgrade to websocket");
  }
  if (connection.data() == nullptr || !hasToken(connection, "upgrade")) {
    return refuse(400, "Bad Request", "the Connection header does not say Upgrade");
  }
  if (wsVersion != "13") {
    return refuse(426, "Upgrade Required", "only WebSocket version 13 is served",
                  "Sec-WebSocket-Version: 13");
  }
  if (key.data() == nullptr || !validKey(key)) {
    return refuse(400, "Bad Request", "Sec-WebSocket-Key is not 16 bytes in base64");
  }
  if (sawProtocols && protocols.empty()) {
    return refuse(400, "Bad Request", "the subprotocol mqtt is not among those offered");
  }
  if (!options.origins.empty()) {
    const bool allowed =
        sawOrigin && std::any_of(options.origins.begin(), options.origins.end(),
                                 [&](const std::string& o) { return o == origin; });
    if (!allowed) return refuse(403, "Forbidden", "the Origin is not allowed (--ws-origin)");
  }

  WsHandshake h;
  h.status = WsHandshake::Status::kAccepted;
  h.consumed = end + 4;
  h.response =
      "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
      "Sec-WebSocket-Accept: " +
      wsAcceptKey(key) + "\r\n";
  if (sawProtocols) h.response += "Sec-WebSocket-Protocol: mqtt\r\n";
  h.response += "\r\n";
  return h;
}

}  // namespace tern::protocol
