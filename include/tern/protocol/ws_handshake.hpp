// The opening handshake of MQTT over WebSockets (RFC 6455 section 4.2, MQTT 5.0 section 6): the
// client's HTTP/1.1 upgrade request, read from the front of a connection's input, and the answer
// to send: "101 Switching Protocols" with the Sec-WebSocket-Accept the RFC derives from the key
// and the subprotocol "mqtt", or an HTTP error after which the connection closes.
//
// What it refuses, each with the status the RFC names and a line for the log:
//   - a request larger than maxBytes without its end (431), a line that is not a request line or
//     a header (400), a method other than GET (405), an HTTP version below 1.1 (400);
//   - a missing Host, an Upgrade without the token "websocket", a Connection without "Upgrade",
//     a Sec-WebSocket-Key that is not 16 bytes in base64, or two of any of these (400);
//   - a Sec-WebSocket-Version other than 13 (426, with "Sec-WebSocket-Version: 13");
//   - a Sec-WebSocket-Protocol list without "mqtt" (400; a request without the header is served,
//     as Mosquitto does, and gets no subprotocol in the answer);
//   - with an Origin allow-list, an Origin missing from it (403).
//
// Pure: bytes in, a value out. Allocates only the answer. Any thread.
#pragma once

#include <cstddef>
#include <span>
#include <string>
#include <string_view>

namespace tern::protocol {

struct WsHandshakeOptions {
  std::size_t maxBytes = 8192;             // the request line and headers together
  std::span<const std::string> origins{};  // empty: any Origin (or none) is accepted
};

struct WsHandshake {
  enum class Status {
    kIncomplete,  // no end of headers yet, within maxBytes: wait for more input
    kAccepted,    // send `response`; the `consumed` bytes were the request, frames follow
    kRefused,     // send `response`, then close the connection
  };
  Status status = Status::kIncomplete;
  std::size_t consumed = 0;
  std::string response;
  std::string_view problem;  // kRefused: what was wrong (a constant string)
};

WsHandshake parseWsHandshake(std::string_view input, const WsHandshakeOptions& options);

// base64(SHA-1(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11")), RFC 6455 section 4.2.2.
std::string wsAcceptKey(std::string_view key);

}  // namespace tern::protocol
