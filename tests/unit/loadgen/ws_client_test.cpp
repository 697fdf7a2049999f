// The WebSocket client framing of loadgen (tern/loadgen/ws_client.hpp): the RFC 6455 examples
// (section 5.7) and length boundaries of the masked frame encoder, the decoder of the broker's
// frames fed whole, split at every offset and one byte at a time, the frames it refuses, and the
// opening handshake against the RFC's accept-key example and the broker's own request parser.
#include "tern/loadgen/ws_client.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "tern/protocol/ws_handshake.hpp"

namespace tern::loadgen::ws {
namespace {

std::string bytes(std::initializer_list<unsigned> values) {
  std::string out;
  for (const unsigned v : values)
    out.push_back(static_cast<char>(v));
  return out;
}

std::string frame(Opcode opcode, std::string_view payload, std::uint32_t mask) {
  net::ByteBuffer out;
  appendFrame(out, opcode, payload, mask);
  return std::string(out.view());
}

constexpr std::uint32_t kRfcMask = 0x37fa213d;  // the mask key of RFC 6455 section 5.7

TEST(WsFrameEncoder, RfcMaskedHelloAndItsBinaryAndPongEquivalents) {
  // "A single-frame masked text message": the header writer and the masking as the RFC has them.
  char header[kMaxMaskedHeaderBytes];
  const std::size_t n = writeMaskedHeader(Opcode::kText, 5, kRfcMask, header);
  std::string text(header, n);
  text.resize(n + 5);
  maskCopy("Hello", text.data() + n, 5, kRfcMask);
  EXPECT_EQ(text, bytes({0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58}));
  // The binary frame loadgen sends differs in the opcode only.
  EXPECT_EQ(frame(Opcode::kBinary, "Hello", kRfcMask),
            bytes({0x82, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58}));
  // "A masked Pong response": what a ping "Hello" is answered with.
  EXPECT_EQ(frame(Opcode::kPong, "Hello", kRfcMask),
            bytes({0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58}));
}

TEST(WsFrameEncoder, LengthsUseSevenSixteenOrSixtyFourBits) {
  const auto headerOf = [](std::size_t length) {
    const std::string f = frame(Opcode::kBinary, std::string(length, 'x'), 0x01020304);
    EXPECT_EQ(f.size() - length, length < 126 ? 6u : length <= 0xffff ? 8u : 14u);
    return f.substr(0, f.size() - length);
  };
  EXPECT_EQ(headerOf(0), bytes({0x82, 0x80, 1, 2, 3, 4}));
  EXPECT_EQ(headerOf(125), bytes({0x82, 0xfd, 1, 2, 3, 4}));
  EXPECT_EQ(headerOf(126), bytes({0x82, 0xfe, 0x00, 0x7e, 1, 2, 3, 4}));
  EXPECT_EQ(headerOf(256), bytes({0x82, 0xfe, 0x01, 0x00, 1, 2, 3, 4}));  // RFC: 256 bytes
  EXPECT_EQ(headerOf(65535), bytes({0x82, 0xfe, 0xff, 0xff, 1, 2, 3, 4}));
  EXPECT_EQ(headerOf(65536),  // RFC: "a single unmasked binary message of 64KiB", masked
            bytes({0x82, 0xff, 0, 0, 0, 0, 0, 1, 0, 0, 1, 2, 3, 4}));
}

TEST(WsFrameEncoder, WordSizedMaskingEqualsBytewiseMaskingAtAnyOffsetAndLength) {
  std::string payload(1 << 20, '\0');
  for (std::size_t i = 0; i < payload.size(); ++i)
    payload[i] = static_cast<char>(i * 131 + 7);
  const std::uint32_t mask = 0xdeadbeef;
  const unsigned char key[4] = {0xde, 0xad, 0xbe, 0xef};
  for (const std::size_t offset : {0u, 1u, 2u, 3u, 5u}) {
    for (const std::size_t size : {0u, 1u, 7u, 8u, 9u, 15u, 16u, 17u, 1000u}) {
      std::string masked(size, '\0');
      maskCopy(payload.data(), masked.data(), size, mask, offset);
      for (std::size_t i = 0; i < size; ++i) {
        ASSERT_EQ(static_cast<unsigned char>(masked[i]),
                  static_cast<unsigned char>(payload[i]) ^ key[(i + offset) % 4])
            << "offset " << offset << " size " << size << " byte " << i;
      }
    }
  }
  // 1 MiB in one frame, unmasked again in place: the payload comes back.
  const std::string f = frame(Opcode::kBinary, payload, mask);
  ASSERT_EQ(f.size(), payload.size() + 14);
  std::string back = f.substr(14);
  maskCopy(back.data(), back.data(), back.size(), mask);
  EXPECT_TRUE(back == payload);
}

TEST(WsMaskKeys, DifferFromOneCallToTheNextAndBetweenSockets) {
  MaskKeys a(1);
  MaskKeys b(2);
  const std::uint32_t a1 = a.next();
  EXPECT_NE(a1, a.next());
  EXPECT_NE(a1, b.next());
  MaskKeys seeded = MaskKeys::fromRandom();
  MaskKeys other = MaskKeys::fromRandom();
  EXPECT_NE(seeded.next(), other.next());  // RAND_bytes seeds: equal with chance 2^-32
}

// --- decoding ---------------------------------------------------------------------------------

// Server frames (unmasked): header and payload.
std::string serverFrame(unsigned first, std::string_view payload) {
  std::string out(1, static_cast<char>(first));
  if (payload.size() < 126) {
    out.push_back(static_cast<char>(payload.size()));
  } else if (payload.size() <= 0xffff) {
    out += bytes({126, static_cast<unsigned>(payload.size() >> 8),
                  static_cast<unsigned>(payload.size() & 0xff)});
  } else {
    out.push_back(127);
    for (int i = 7; i >= 0; --i)
      out.push_back(static_cast<char>(static_cast<std::uint64_t>(payload.size()) >> (8 * i)));
  }
  out += payload;
  return out;
}

struct Decoded {
  std::string payload;
  std::vector<std::string> pongs;  // unmasked payloads of the pongs queued
  FrameDecoder::Result last;
  std::string reason;  // of a close
};

// The pongs in `replies`, unmasked.
std::vector<std::string> pongsIn(std::string_view replies) {
  std::vector<std::string> pongs;
  while (replies.size() >= 6) {
    EXPECT_EQ(static_cast<unsigned char>(replies[0]), 0x8a);
    const auto b1 = static_cast<unsigned char>(replies[1]);
    EXPECT_EQ(b1 & 0x80, 0x80) << "a client frame must be masked";
    const std::size_t length = b1 & 0x7f;
    const auto k = [&](int i) {
      return static_cast<std::uint32_t>(static_cast<unsigned char>(replies[2 + i]));
    };
    const std::uint32_t mask = (k(0) << 24) | (k(1) << 16) | (k(2) << 8) | k(3);
    std::string payload(replies.substr(6, length));
    maskCopy(payload.data(), payload.data(), payload.size(), mask);
    pongs.push_back(payload);
    replies.remove_prefix(6 + length);
  }
  EXPECT_TRUE(replies.empty());
  return pongs;
}

// Feeds `stream` in pieces cut at `cuts` (ascending offsets).
Decoded decodeInPieces(std::string_view stream, const std::vector<std::size_t>& cuts) {
  FrameDecoder decoder;
  MaskKeys masks(7);
  net::ByteBuffer payload;
  net::ByteBuffer replies;
  Decoded d;
  std::size_t at = 0;
  std::vector<std::size_t> ends = cuts;
  ends.push_back(stream.size());
  for (const std::size_t end : ends) {
    d.last = decoder.decode(stream.substr(at, end - at), payload, replies, masks);
    at = end;
    if (d.last.status != FrameDecoder::Status::kOk) break;
  }
  d.payload = payload.view();
  d.pongs = pongsIn(replies.view());
  d.reason = d.last.reason;
  return d;
}

// The RFC's unmasked examples in their binary form, with control frames between the fragments of
// a message, a pong to ignore, the 126-byte boundary and an empty frame.
std::string mixedStream(bool large) {
  std::string s;
  s += serverFrame(0x82, "Hello");
  s += bytes({0x02, 0x03}) + "Hel";   // first fragment, FIN clear
  s += serverFrame(0x89, "Hello");    // a ping between fragments
  s += serverFrame(0x8a, "ignored");  // an unsolicited pong
  s += bytes({0x80, 0x02}) + "lo";    // final continuation
  s += serverFrame(0x82, std::string(256, 'a'));
  s += serverFrame(0x82, "");
  s += serverFrame(0x89, "");
  if (large) s += serverFrame(0x82, std::string(65536, 'b'));
  s += serverFrame(0x82, "end");
  return s;
}

std::string mixedPayload(bool large) {
  return "Hello"
         "Hello" +
         std::string(256, 'a') + (large ? std::string(65536, 'b') : "") + "end";
}

TEST(WsFrameDecoder, PayloadsAndPingsWholeSplitAtEveryOffsetAndByteByByte) {
  const std::vector<std::string> pongs = {"Hello", ""};
  {
    const std::string stream = mixedStream(true);
    const Decoded whole = decodeInPieces(stream, {});
    EXPECT_EQ(whole.last.status, FrameDecoder::Status::kOk);
    EXPECT_TRUE(whole.payload == mixedPayload(true));
    EXPECT_EQ(whole.pongs, pongs);
    std::vector<std::size_t> everyByte;
    for (std::size_t i = 1; i < stream.size(); ++i)
      everyByte.push_back(i);
    const Decoded bytewise = decodeInPieces(stream, everyByte);
    EXPECT_EQ(bytewise.last.status, FrameDecoder::Status::kOk);
    EXPECT_TRUE(bytewise.payload == mixedPayload(true));
    EXPECT_EQ(bytewise.pongs, pongs);
  }
  const std::string stream = mixedStream(false);
  for (std::size_t cut = 1; cut < stream.size(); ++cut) {
    const Decoded d = decodeInPieces(stream, {cut});
    ASSERT_EQ(d.last.status, FrameDecoder::Status::kOk) << "cut at " << cut;
    ASSERT_EQ(d.payload, mixedPayload(false)) << "cut at " << cut;
    ASSERT_EQ(d.pongs, pongs) << "cut at " << cut;
  }
}

TEST(WsFrameDecoder, PayloadIsHandedOnAsItArrives) {
  // Half of a 64 KiB frame's payload is handed on before the rest has come.
  const std::string stream = serverFrame(0x82, std::string(65536, 'z'));
  FrameDecoder decoder;
  MaskKeys masks(1);
  net::ByteBuffer payload;
  net::ByteBuffer replies;
  EXPECT_EQ(decoder.decode(std::string_view(stream).substr(0, 10 + 30000), payload, replies, masks)
                .status,
            FrameDecoder::Status::kOk);
  EXPECT_EQ(payload.size(), 30000u);
  EXPECT_EQ(
      decoder.decode(std::string_view(stream).substr(10 + 30000), payload, replies, masks).status,
      FrameDecoder::Status::kOk);
  EXPECT_EQ(payload.size(), 65536u);
  EXPECT_TRUE(replies.empty());
}

TEST(WsFrameDecoder, CloseReportsItsCodeAndReasonInAnySplit) {
  const std::string stream = serverFrame(0x82, "data") +
                             serverFrame(0x88, bytes({0x03, 0xe9}) + "going away") +
                             serverFrame(0x82, "after");
  for (std::size_t cut = 0; cut < stream.size(); ++cut) {
    const Decoded d = decodeInPieces(
        stream, cut == 0 ? std::vector<std::size_t>{} : std::vector<std::size_t>{cut});
    ASSERT_EQ(d.last.status, FrameDecoder::Status::kClosed) << "cut at " << cut;
    EXPECT_EQ(d.last.closeCode, 1001);
    EXPECT_EQ(d.reason, "going away");
    EXPECT_EQ(d.payload, "data");  // nothing after the close
  }
  const Decoded empty = decodeInPieces(serverFrame(0x88, ""), {});
  EXPECT_EQ(empty.last.status, FrameDecoder::Status::kClosed);
  EXPECT_EQ(empty.last.closeCode, 1005);
}

TEST(WsFrameDecoder, FramesAServerMustNotSendAreProtocolErrors) {
  struct Case {
    std::string stream;
    std::string_view what;
  };
  const std::vector<Case> cases = {
      {serverFrame(0x81, "text"), "text frame"},
      {bytes({0x82, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58}), "masked"},
      {serverFrame(0xc2, "x"), "reserved bits"},
      {serverFrame(0x92, "x"), "reserved bits"},
      {serverFrame(0x83, "x"), "unknown opcode"},
      {serverFrame(0x8b, "x"), "unknown opcode"},
      {serverFrame(0x89, std::string(126, 'p')), "longer than 125"},
      {bytes({0x09, 0x00}), "fragmented"},
      {serverFrame(0x80, "x"), "continuation"},
      {serverFrame(0x02, "a") + serverFrame(0x82, "b"), "inside a fragmented"},
      {serverFrame(0x88, "x"), "one-byte body"},
      {bytes({0x82, 0x7f, 0x80, 0, 0, 0, 0, 0, 0, 0}), "2^63"},
  };
  for (const Case& c : cases) {
    for (std::size_t cut = 0; cut < c.stream.size(); ++cut) {
      const Decoded d = decodeInPieces(
          c.stream, cut == 0 ? std::vector<std::size_t>{} : std::vector<std::size_t>{cut});
      ASSERT_EQ(d.last.status, FrameDecoder::Status::kProtocol) << c.what << " cut at " << cut;
      EXPECT_NE(d.last.problem.find(c.what), std::string_view::npos) << d.last.problem;
    }
  }
  // Once failed, the decoder says so again and takes nothing more.
  FrameDecoder decoder;
  MaskKeys masks(1);
  net::ByteBuffer payload;
  net::ByteBuffer replies;
  EXPECT_EQ(decoder.decode(serverFrame(0x81, "t"), payload, replies, masks).status,
            FrameDecoder::Status::kProtocol);
  EXPECT_EQ(decoder.decode(serverFrame(0x82, "b"), payload, replies, masks).status,
            FrameDecoder::Status::kProtocol);
  EXPECT_TRUE(payload.empty());
  decoder.reset();
  EXPECT_EQ(decoder.decode(serverFrame(0x82, "b"), payload, replies, masks).status,
            FrameDecoder::Status::kOk);
  EXPECT_EQ(payload.view(), "b");
}

// --- the opening handshake --------------------------------------------------------------------

TEST(WsHandshakeClient, AcceptKeyOfTheRfcExample) {
  // RFC 6455 section 1.3 (a base64 SHA-1 digest: 28 characters, the last '=').
  EXPECT_EQ(acceptKey("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
  // And the broker's own computation of it, for a fresh key.
  const std::string key = makeKey();
  EXPECT_EQ(acceptKey(key), protocol::wsAcceptKey(key));
}

TEST(WsHandshakeClient, KeysAreSixteenRandomBytesInBase64) {
  const std::string a = makeKey();
  const std::string b = makeKey();
  EXPECT_EQ(a.size(), 24u);
  EXPECT_EQ(a.substr(22), "==");
  EXPECT_NE(a, b);
}

TEST(WsHandshakeClient, TheBrokersParserAcceptsTheRequestAndItsAnswerPassesInAnySplit) {
  const std::string key = makeKey();
  const std::string request = upgradeRequest("127.0.0.1:8083", "/mqtt", key);
  EXPECT_TRUE(request.starts_with("GET /mqtt HTTP/1.1\r\n")) << request;
  EXPECT_NE(request.find("\r\nSec-WebSocket-Protocol: mqtt\r\n"), std::string::npos);
  const protocol::WsHandshake server = protocol::parseWsHandshake(request + "frames", {});
  ASSERT_EQ(server.status, protocol::WsHandshake::Status::kAccepted) << server.problem;
  EXPECT_EQ(server.consumed, request.size());

  // The 101 with frames behind it: whole, and every prefix of it incomplete.
  const std::string input = server.response + bytes({0x82, 0x02}) + "ab";
  const UpgradeResponse whole = parseUpgradeResponse(input, key);
  ASSERT_EQ(whole.status, UpgradeResponse::Status::kAccepted) << whole.problem;
  EXPECT_EQ(whole.consumed, server.response.size());
  for (std::size_t n = 0; n < server.response.size(); ++n) {
    ASSERT_EQ(parseUpgradeResponse(std::string_view(input).substr(0, n), key).status,
              UpgradeResponse::Status::kIncomplete)
        << n;
  }
}

TEST(WsHandshakeClient, RefusalsAndWrongAnswersAreRefused) {
  const std::string key = "dGhlIHNhbXBsZSBub25jZQ==";
  const std::string good =
      "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
      "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
  EXPECT_EQ(parseUpgradeResponse(good, key).status, UpgradeResponse::Status::kAccepted);
  // Header names and tokens are case-insensitive.
  EXPECT_EQ(parseUpgradeResponse("HTTP/1.1 101 OK\r\nupgrade: WebSocket\r\nconnection: upgrade\r\n"
                                 "sec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n",
                                 key)
                .status,
            UpgradeResponse::Status::kAccepted);
  const std::vector<std::pair<std::string, std::string_view>> bad = {
      {"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n", "400 Bad Request"},
      {"HTTP/1.1 1010 X\r\n\r\n", "refused"},
      {"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
       "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n",
       "Upgrade: websocket"},
      {"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
       "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n",
       "Connection: Upgrade"},
      {"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
       "lacks Sec-WebSocket-Accept"},
      {"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
       "Sec-WebSocket-Accept: AAAPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n",
       "does not match"},
      {"HTTP/1.1 101 Switching Protocols\r\nno colon here\r\n\r\n", "malformed"},
      {std::string(kMaxResponseBytes, 'x'), "no end of headers"},
  };
  for (const auto& [answer, why] : bad) {
    const UpgradeResponse r = parseUpgradeResponse(answer, key);
    EXPECT_EQ(r.status, UpgradeResponse::Status::kRefused) << answer.substr(0, 60);
    EXPECT_NE(r.problem.find(why), std::string::npos) << r.problem;
  }
}

}  // namespace
}  // namespace tern::loadgen::ws
