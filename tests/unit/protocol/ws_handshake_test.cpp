#include "tern/protocol/ws_handshake.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace tern::protocol {
namespace {

using Status = WsHandshake::Status;

// The client's handshake of RFC 6455 section 1.3, with the subprotocol MQTT asks for.
std::string request(const std::string& extra = "Sec-WebSocket-Protocol: mqtt\r\n",
                    const std::string& version = "13") {
  return "GET /mqtt HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\n"
         "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
         "Origin: http://example.com\r\nSec-WebSocket-Version: " +
         version + "\r\n" + extra + "\r\n";
}

WsHandshake parse(const std::string& input, std::span<const std::string> origins = {}) {
  return parseWsHandshake(input, {8192, origins});
}

TEST(WsHandshake, AcceptKeyIsTheRfcExample) {
  EXPECT_EQ(wsAcceptKey("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

TEST(WsHandshake, TheRfcRequestIsAcceptedWithTheMqttSubprotocol) {
  const std::string input = request() + "\x82\x80";  // a frame follows at once
  const WsHandshake h = parse(input);
  ASSERT_EQ(h.status, Status::kAccepted);
  EXPECT_EQ(h.consumed, input.size() - 2);
  EXPECT_EQ(h.response,
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
            "Sec-WebSocket-Protocol: mqtt\r\n\r\n");
}

TEST(WsHandshake, WhatBrowsersSendIsAccepted) {
  // Firefox's Connection list, lower-case names, several offered subprotocols, no subprotocol.
  std::string firefox = request("sec-websocket-protocol: mqttv3.1, mqtt\r\n");
  firefox.replace(firefox.find("Connection: Upgrade"), 19, "connection: keep-alive, Upgrade");
  EXPECT_EQ(parse(firefox).status, Status::kAccepted);
  const WsHandshake bare = parse(request(""));
  ASSERT_EQ(bare.status, Status::kAccepted);
  EXPECT_EQ(bare.response.find("Sec-WebSocket-Protocol"), std::string::npos);
}

TEST(WsHandshake, WaitsForTheEndOfTheHeadersWithinTheLimit) {
  const std::string full = request();
  for (std::size_t n = 0; n < full.size(); ++n)
    EXPECT_EQ(parse(full.substr(0, n)).status, Status::kIncomplete) << n;
  const WsHandshake big = parseWsHandshake(std::string(100, 'a'), {64, {}});
  EXPECT_EQ(big.status, Status::kRefused);
  EXPECT_TRUE(big.response.starts_with("HTTP/1.1 431 ")) << big.response;
}

struct Refusal {
  std::string input;
  std::string status;
};

TEST(WsHandshake, BadRequestsGetTheStatusTheRfcNames) {
  std::string noKey = request();
  noKey.erase(noKey.find("Sec-WebSocket-Key"), 45);
  std::string noHost = request();
  noHost.erase(noHost.find("Host"), 26);
  std::string notUpgrade = request();
  notUpgrade.replace(notUpgrade.find("Upgrade: websocket"), 18, "Upgrade: h2c");
  std::string keepAlive = request();
  keepAlive.replace(keepAlive.find("Connection: Upgrade"), 19, "Connection: keep-alive");
  std::string shortKey = request();
  shortKey.replace(shortKey.find("dGhlIHNhbXBsZSBub25jZQ=="), 24, "dGhlIHNhbXBsZQ==");
  const std::vector<Refusal> cases = {
      {request("", "8"), "426"},
      {"POST /mqtt HTTP/1.1\r\nHost: x\r\n\r\n", "405"},
      {"GET /mqtt HTTP/1.0\r\nHost: x\r\n\r\n", "400"},
      {"GET /mqtt\r\nHost: x\r\n\r\n", "400"},
      {"\x16\x03\x01\x02\r\n\r\n", "400"},  // a TLS hello on the plain port
      {request("Bad Header\r\n"), "400"},
      {request(" folded\r\n"), "400"},
      {request("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"), "400"},  // twice
      {request("Sec-WebSocket-Protocol: chat\r\n"), "400"},
      {noKey, "400"},
      {noHost, "400"},
      {notUpgrade, "400"},
      {keepAlive, "400"},
      {shortKey, "400"},
  };
  for (const Refusal& c : cases) {
    const WsHandshake h = parse(c.input);
    ASSERT_EQ(h.status, Status::kRefused) << c.input;
    EXPECT_TRUE(h.response.starts_with("HTTP/1.1 " + c.status + " ")) << h.response;
    EXPECT_FALSE(h.problem.empty());
    EXPECT_NE(h.response.find("Connection: close\r\n"), std::string::npos);
  }
  EXPECT_NE(parse(request("", "8")).response.find("Sec-WebSocket-Version: 13\r\n"),
            std::string::npos);
}

TEST(WsHandshake, AnOriginAllowListIsEnforced) {
  const std::vector<std::string> origins = {"https://app.example.com", "http://example.com"};
  EXPECT_EQ(parse(request(), origins).status, Status::kAccepted);
  std::string other = request();
  other.replace(other.find("http://example.com"), 18, "http://evil.example");
  const WsHandshake refused = parse(other, origins);
  ASSERT_EQ(refused.status, Status::kRefused);
  EXPECT_TRUE(refused.response.starts_with("HTTP/1.1 403 ")) << refused.response;
  std::string none = request();
  none.erase(none.find("Origin"), 28);
  EXPECT_EQ(parse(none, origins).status, Status::kRefused);
  EXPECT_EQ(parse(none).status, Status::kAccepted);  // no list: no Origin needed
}

}  // namespace
}  // namespace tern::protocol
