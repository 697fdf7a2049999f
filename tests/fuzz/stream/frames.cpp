// Line frames and MQTT packets for the generator. See frames.hpp.
#include "frames.hpp"

#include <algorithm>
#include <iterator>
#include <string_view>
#include <vector>

#include "tern/protocol/mqtt_encoder.hpp"

namespace tern::fuzz::frames {

namespace mqtt = protocol::mqtt;

namespace {

constexpr char kIdChars[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-";
constexpr char kHex[] = "0123456789abcdef";

// Topic levels: plain, empty, `$`, non-ASCII UTF-8, a space. The first level comes from all of
// them, the next two from the first four, so that at most 12 * (1 + 4 + 16) = 252 topics can hold
// a retained message: a long run keeps the broker's retained store small.
constexpr std::string_view kLevels[] = {"a",    "b",       "",         "c",
                                        "temp", "sensor",  "x y",      "$SYS",
                                        "1",    "weather", "\xc3\xa9", "long-level-name"};
constexpr std::size_t kDeepLevels = 4;
constexpr std::string_view kWildcards[] = {"+", "*", "#"};

std::string randomString(Rng& rng, std::size_t size, std::string_view alphabet) {
  std::string s;
  for (std::size_t i = 0; i < size; ++i)
    s += alphabet[rng.below(alphabet.size())];
  return s;
}

std::string randomBytes(Rng& rng, std::size_t size) {
  std::string s;
  for (std::size_t i = 0; i < size; ++i)
    s += static_cast<char>(rng.below(256));
  return s;
}

// Contents or payload: short text mostly, sometimes binary, `@`, NUL, or a few KiB.
std::string contents(Rng& rng) {
  switch (rng.below(8)) {
    case 0:
      return "";
    case 1:
      return randomBytes(rng, rng.skewed(6));
    case 2:
      return "a@b@retain";
    case 3:
      return std::string(rng.range(1000, 5000), 'p');
    default:
      return randomString(rng, rng.skewed(5), "abcxyz0123 @");
  }
}

std::uint16_t packetId(Rng& rng) {
  // Mostly a few ids, so that acknowledgements and duplicates meet the packets they name.
  return static_cast<std::uint16_t>(rng.chance(80) ? rng.range(1, 8) : rng.range(1, 65535));
}

std::uint8_t qos(Rng& rng) {
  return static_cast<std::uint8_t>(rng.below(3));
}

// A topic level at `depth` (0 is the first).
std::string_view level(Rng& rng, std::size_t depth) {
  return kLevels[rng.below(depth == 0 ? std::size(kLevels) : kDeepLevels)];
}

// A filter the MQTT side can use (`*` is an ordinary character there, which is fine too).
std::string mqttFilter(Rng& rng) {
  std::string f = topicFilter(rng);
  return f.empty() ? "#" : f;
}

// Now and then a shared subscription of the filter ($share/<name>/<filter>), in one of a few
// groups so that members of every protocol meet in them, or with a share name that is not valid.
std::string maybeShared(Rng& rng, std::string filter) {
  if (!rng.chance(15)) return filter;
  static constexpr std::string_view kShareNames[] = {"g", "g", "h", "w2", "", "a+b", "x#", "*"};
  return "$share/" + std::string(kShareNames[rng.below(std::size(kShareNames))]) + "/" + filter;
}

}  // namespace

std::string lineClientId(Rng& rng) {
  if (rng.chance(70)) return "c" + std::to_string(rng.below(100000));
  return randomString(rng, rng.range(1, 64), kIdChars);
}

std::string topicName(Rng& rng) {
  const std::size_t levels = rng.range(1, 3);
  std::string t;
  for (std::size_t i = 0; i < levels; ++i) {
    if (i != 0) t += '/';
    t += level(rng, i);
  }
  return t.empty() ? "a" : t;
}

std::string topicFilter(Rng& rng) {
  const std::size_t levels = rng.range(1, 4);
  std::string f;
  for (std::size_t i = 0; i < levels; ++i) {
    if (i != 0) f += '/';
    if (rng.chance(35)) {
      f += rng.pick(kWildcards);
    } else {
      f += level(rng, std::min<std::size_t>(i, 1));
    }
  }
  switch (rng.below(12)) {
    case 0:
      return f + "#";  // a wildcard that is not a whole level (invalid)
    case 1:
      return "#/" + f;  // `#` not last (invalid)
    case 2:
      return "#";
    default:
      return f;
  }
}

std::string forgedToken(Rng& rng) {
  std::string token = randomString(rng, 32, kHex);
  switch (rng.below(10)) {
    case 0:
      return token + "00" + randomString(rng, 2, kHex);  // any worker index, mostly out of range
    case 1:
      return randomString(rng, rng.range(0, 40), kHex);  // wrong length
    case 2:
      return "ABCDEF" + randomString(rng, 30, kHex);  // upper case is not a token
    default: {
      static constexpr std::string_view kWorkers[] = {"0000", "0001", "0002", "0003"};
      return token + std::string(rng.pick(kWorkers));
    }
  }
}

std::string lineConnect(Rng& rng) {
  switch (rng.below(10)) {
    case 0:
      return "CONNECT";
    case 1:
      return "connect@" + lineClientId(rng);
    case 2:
      return "CONNECT@" + std::string(65, 'x');  // id too long
    case 3:
      return "CONNECT@bad id!";
    case 4:
      return "CONNECT@" + lineClientId(rng) + "@extra";
    case 5:
      // Credentials: right, wrong, or with '@' in the password (the fuzzer's password file has
      // "user" with "secret").
      return "CONNECT@" + (rng.chance(30) ? std::string() : lineClientId(rng)) + "@user@" +
             (rng.chance(50)   ? "secret"
              : rng.chance(50) ? "wrong"
                               : "se@cr@et");
    default:
      return "CONNECT@" + lineClientId(rng);
  }
}

std::string lineRequest(Rng& rng) {
  const auto retain = [&rng] {
    return rng.chance(50) ? "@retain" : rng.chance(20) ? "@RETAIN" : "";
  };
  switch (rng.below(16)) {
    case 0:
    case 1:
      return "SUBSCRIBE@" + maybeShared(rng, topicFilter(rng));
    case 2:
      return "UNSUBSCRIBE@" + maybeShared(rng, topicFilter(rng));
    case 3:
    case 4:
    case 5:
      return "PUBLISH@" + topicName(rng) + "@" + contents(rng) + retain();
    case 6:
      return "PUBLISH@" + topicName(rng) + "@@retain";  // deletes the retained message
    case 7:
      return rng.chance(50) ? "LIST" : "LIST@" + topicFilter(rng);
    case 8:
      return "STATS";
    case 9:
      return rng.chance(50) ? "PING" : "ping";
    case 10:
      return "DISCONNECT";
    case 11:
      return rng.chance(50) ? lineConnect(rng) : "ATTACH@" + forgedToken(rng) + "@request";
    case 12:
      return "PUBLISH@" + topicFilter(rng) + "@x";  // wildcard in a topic name
    case 13:
      return "SUBSCRIBE@a@b";
    case 14:
      return "publish@" + topicName(rng);  // no contents field
    default:
      return randomString(rng, rng.range(1, 12), "ABCDEFGHIJKLMNOPQRSTUVWXYZ@") + "@" +
             topicName(rng);
  }
}

std::string lineEnd(Rng& rng) {
  return rng.chance(80) ? "\n" : "\r\n";
}

std::string lineNoise(Rng& rng) {
  switch (rng.below(6)) {
    case 0:
      return std::string(rng.range(1, 20), '\n');
    case 1: {
      std::string s;
      for (std::size_t i = rng.range(1, 10); i > 0; --i)
        s += "\r\n";
      return s;
    }
    case 2:
      return std::string(rng.range(1, 8), '\0') + "\n";
    case 3:
      return randomBytes(rng, rng.skewed(12));
    case 4:
      return "\r\r\r\n@@@\n@\n";
    default:
      return partialLine(rng, rng.skewed(9)) + "\n";
  }
}

std::string partialLine(Rng& rng, std::size_t size) {
  std::string s;
  switch (rng.below(3)) {
    case 0:
      s.assign(size, static_cast<char>('A' + rng.below(26)));
      break;
    case 1:
      s = randomString(rng, size, "PUBLISH@CONNECT@ATTACH@a/b/c#+*\r");
      break;
    default:
      s = randomBytes(rng, size);
      for (char& ch : s)
        if (ch == '\n') ch = ' ';
      break;
  }
  return s;
}

std::string mqttConnect(Rng& rng, std::uint8_t* level) {
  mqtt::Connect c;
  c.cleanSession = rng.chance(60);
  // Persistent sessions are kept by the broker forever: take their ids from a small pool.
  std::string id = c.cleanSession ? (rng.chance(15) ? "" : "m" + std::to_string(rng.below(100000)))
                                  : "p" + std::to_string(rng.below(32));
  c.clientId = id;
  static constexpr std::uint16_t kKeepAlives[] = {0, 0, 1, 2, 10, 60, 65535};
  c.keepAlive = rng.pick(kKeepAlives);
  std::string willTopic = topicName(rng);
  std::string willPayload = contents(rng);
  if (rng.chance(30)) {
    c.willFlag = true;
    c.willTopic = willTopic;
    c.willPayload = willPayload;
    c.willQos = qos(rng);
    c.willRetain = rng.chance(40);
  }
  if (rng.chance(15)) {
    c.usernameFlag = true;
    c.username = "user";
    c.passwordFlag = rng.chance(50);
    if (c.passwordFlag) c.password = "secret";
  }
  if (rng.chance(8)) {
    c.protocolName = mqtt::kProtocolName31;
    c.protocolLevel = mqtt::kProtocolLevel31;
  } else if (rng.chance(30)) {
    c.protocolLevel = mqtt::kProtocolLevel5;
  }
  // 5.0 properties (entries as on the wire; the encoder writes the block lengths).
  std::string properties;
  std::string willProperties;
  if (c.protocolLevel == mqtt::kProtocolLevel5) {
    static constexpr std::string_view kConnectEntries[] = {
        {"\x11\x00\x00\x00\x00", 5},  // Session Expiry Interval 0
        {"\x11\x00\x00\x00\x3c", 5},  // 60 s
        {"\x11\xff\xff\xff\xff", 5},  // never
        {"\x21\x00\x01", 3},          // Receive Maximum 1
        {"\x21\x00\x05", 3},
        {"\x27\x00\x00\x00\x40", 5},  // Maximum Packet Size 64
        {"\x22\x00\x04", 3},          // Topic Alias Maximum 4
        {"\x17\x00", 2},              // Request Problem Information 0
        {"\x26\x00\x01"
         "k"
         "\x00\x01"
         "v",
         7},  // a User Property
    };
    for (std::size_t i = rng.below(3); i > 0; --i)
      properties += rng.pick(kConnectEntries);
    if (rng.chance(3)) properties += std::string_view("\x15\x00\x05SCRAM", 8);  // refused
    if (rng.chance(30)) willProperties = std::string_view("\x01\x01\x02\x00\x00\x00\x05", 7);
    c.properties.block = properties;
    c.willProperties.block = willProperties;
    // 5.0 allows a password without a user name.
    if (rng.chance(5)) {
      c.passwordFlag = true;
      c.password = "secret";
    }
  }
  if (level != nullptr) *level = c.protocolLevel;
  std::string out;
  mqtt::appendConnect(out, c);
  return out;
}

namespace {

// The property entries of a 5.0 PUBLISH from a client: mostly ones the broker forwards, sometimes
// ones it refuses (a Topic Alias it never offered, a Subscription Identifier).
std::string publishEntries(Rng& rng) {
  static constexpr std::string_view kEntries[] = {
      {"\x01\x01", 2},  // Payload Format Indicator: UTF-8
      {"\x01\x00", 2},
      {"\x02\x00\x00\x00\x01", 5},  // Message Expiry Interval 1 s
      {"\x02\x00\x00\x0e\x10", 5},  // 1 h
      {"\x03\x00\x04text", 7},      // Content Type
      {"\x08\x00\x03r/t", 6},       // Response Topic
      {"\x09\x00\x02\x00\x01", 5},  // Correlation Data
      {"\x26\x00\x01"
       "a"
       "\x00\x01"
       "b",
       7},  // User Property
      {"\x26\x00\x01"
       "a"
       "\x00\x01"
       "c",
       7},
      {"\x23\x00\x01", 3},  // Topic Alias (refused: 0x94)
      {"\x0b\x01", 2},      // Subscription Identifier (a protocol error)
  };
  std::string out;
  for (std::size_t i = rng.skewed(3); i > 0; --i)
    out += rng.pick(kEntries);
  return out;
}

}  // namespace

std::string mqttPacket(Rng& rng, std::uint8_t level) {
  const bool v5 = level == mqtt::kProtocolLevel5;
  static constexpr mqtt::ReasonCode kAckReasons[] = {
      mqtt::ReasonCode::kSuccess, mqtt::ReasonCode::kSuccess, mqtt::ReasonCode::kUnspecifiedError};
  const auto ack = [&](std::string& out, mqtt::PacketType type, mqtt::ReasonCode reason) {
    const std::uint16_t id = packetId(rng);
    if (v5) {
      mqtt::appendAck5(out, type, id, reason);
    } else if (type == mqtt::PacketType::kPuback) {
      mqtt::appendPuback(out, id);
    } else if (type == mqtt::PacketType::kPubrec) {
      mqtt::appendPubrec(out, id);
    } else if (type == mqtt::PacketType::kPubrel) {
      mqtt::appendPubrel(out, id);
    } else {
      mqtt::appendPubcomp(out, id);
    }
  };
  std::string out;
  switch (rng.below(14)) {
    case 0:
    case 1:
    case 2:
    case 3: {
      const std::string topic = topicName(rng);
      const std::string payload = v5 && rng.chance(10) ? std::string("\xff\xfe", 2) : contents(rng);
      mqtt::Publish p;
      p.qos = qos(rng);
      p.retain = rng.chance(30);
      p.dup = p.qos > 0 && rng.chance(20);
      p.topic = topic;
      p.payload = payload;
      p.packetId = p.qos > 0 ? packetId(rng) : 0;
      if (v5) {
        mqtt::appendPublish5(out, p, publishEntries(rng));
      } else {
        mqtt::appendPublish(out, p);
      }
      break;
    }
    case 4:
      ack(out, mqtt::PacketType::kPuback, rng.pick(kAckReasons));
      break;
    case 5:
      ack(out, mqtt::PacketType::kPubrec, rng.pick(kAckReasons));
      break;
    case 6:
      ack(out, mqtt::PacketType::kPubrel,
          rng.chance(80) ? mqtt::ReasonCode::kSuccess
                         : mqtt::ReasonCode::kPacketIdentifierNotFound);
      break;
    case 7:
      ack(out, mqtt::PacketType::kPubcomp, mqtt::ReasonCode::kSuccess);
      break;
    case 8:
    case 9: {
      std::vector<std::string> filters;
      for (std::size_t i = rng.range(1, 3); i > 0; --i)
        filters.push_back(maybeShared(rng, mqttFilter(rng)));
      std::vector<mqtt::Subscription> entries;
      for (const std::string& f : filters) {
        // 5.0 options: No Local, Retain As Published, Retain Handling.
        entries.push_back({f, qos(rng), v5 && rng.chance(10), v5 && rng.chance(10),
                           static_cast<std::uint8_t>(v5 ? rng.below(3) : 0)});
      }
      if (v5) {
        mqtt::appendSubscribe5(
            out, packetId(rng), entries,
            rng.chance(5) ? std::string_view("\x0b\x07", 2) : std::string_view());
      } else {
        mqtt::appendSubscribe(out, packetId(rng), entries);
      }
      break;
    }
    case 10: {
      const std::string filter = maybeShared(rng, mqttFilter(rng));
      const std::string_view filters[] = {filter};
      if (v5) {
        mqtt::appendUnsubscribe5(out, packetId(rng), filters);
      } else {
        mqtt::appendUnsubscribe(out, packetId(rng), filters);
      }
      break;
    }
    case 11:
    case 12:
      if (v5 && rng.chance(10)) {
        mqtt::appendAuth5(out, mqtt::ReasonCode::kContinueAuthentication);  // refused: 0x82
      } else {
        mqtt::appendPingreq(out);
      }
      break;
    default:
      if (!rng.chance(50)) {
        out = mqttConnect(rng);  // a second CONNECT is a protocol violation
      } else if (v5) {
        mqtt::appendDisconnect5(
            out,
            rng.chance(50) ? mqtt::ReasonCode::kSuccess : mqtt::ReasonCode::kDisconnectWithWill,
            rng.chance(30) ? std::string_view("\x11\x00\x00\x00\x05", 5) : std::string_view());
      } else {
        mqtt::appendDisconnect(out);
      }
      break;
  }
  return out;
}

void mutatePacket(Rng& rng, std::string& packet) {
  if (packet.empty()) packet = mqttPacket(rng);
  switch (rng.below(7)) {
    case 0:
      packet[rng.below(packet.size())] ^= static_cast<char>(1u << rng.below(8));
      break;
    case 1:
      packet.resize(rng.below(packet.size()));
      break;
    case 2:  // remaining length larger or smaller than the body
      if (packet.size() > 1) packet[1] = static_cast<char>(rng.below(256));
      break;
    case 3:  // a remaining length of five bytes, or one that announces far too much
      packet.replace(std::min<std::size_t>(1, packet.size()), 1,
                     rng.chance(50) ? "\xff\xff\xff\xff\x7f" : "\xff\xff\xff\x7f");
      break;
    case 4:  // fixed-header flags
      packet[0] = static_cast<char>((packet[0] & 0xf0) | rng.below(16));
      break;
    case 5:  // packet type, including the reserved 0 and 15
      packet[0] = static_cast<char>((rng.below(16) << 4) | (packet[0] & 0x0f));
      break;
    default:
      packet += randomBytes(rng, rng.range(1, 16));
      break;
  }
}

namespace {

void appendU16(std::string& out, std::size_t value) {
  out += static_cast<char>((value >> 8) & 0xff);
  out += static_cast<char>(value & 0xff);
}

void appendU24(std::string& out, std::size_t value) {
  out += static_cast<char>((value >> 16) & 0xff);
  appendU16(out, value & 0xffff);
}

std::string tlsExtension(std::uint16_t type, std::string_view body) {
  std::string out;
  appendU16(out, type);
  appendU16(out, body.size());
  out += body;
  return out;
}

std::string tlsRecord(std::uint8_t type, std::string_view body, std::uint16_t version = 0x0303) {
  std::string out(1, static_cast<char>(type));
  appendU16(out, version);
  appendU16(out, body.size());
  out += body;
  return out;
}

}  // namespace

std::string tlsClientHello(Rng& rng) {
  const bool tls13 = rng.chance(80);
  std::string body("\x03\x03", 2);  // legacy_version TLS 1.2
  body += randomBytes(rng, 32);     // random
  const std::size_t sessionId = rng.chance(70) ? 32 : 0;
  body += static_cast<char>(sessionId);
  body += randomBytes(rng, sessionId);
  std::string suites;
  if (tls13) suites += std::string("\x13\x01\x13\x02\x13\x03", 6);
  suites += std::string("\xc0\x2b\xc0\x2f\xc0\x2c\xc0\x30\xcc\xa9\xcc\xa8", 12);
  appendU16(body, suites.size());
  body += suites;
  body += std::string("\x01\x00", 2);  // compression: null only
  std::string extensions;
  if (rng.chance(50)) {
    std::string name("\x00", 1);
    appendU16(name, 9);
    name += "localhost";
    std::string list;
    appendU16(list, name.size());
    extensions += tlsExtension(0x0000, list + name);
  }
  extensions += tlsExtension(0x000a, std::string("\x00\x06\x00\x1d\x00\x17\x00\x18", 8));
  extensions += tlsExtension(0x000b, std::string("\x01\x00", 2));
  extensions += tlsExtension(0x000d, std::string("\x00\x10\x04\x03\x08\x04\x04\x01\x05\x03"
                                                 "\x08\x05\x05\x01\x08\x06\x06\x01",
                                                 18));
  extensions += tlsExtension(0x0017, {});  // extended master secret
  extensions += tlsExtension(0x0023, {});  // session ticket
  if (tls13) {
    extensions += tlsExtension(0x002b, std::string("\x04\x03\x04\x03\x03", 5));
    extensions += tlsExtension(0x002d, std::string("\x01\x01", 2));
    std::string share("\x00\x1d\x00\x20", 4);
    share += randomBytes(rng, 32);
    std::string shares;
    appendU16(shares, share.size());
    extensions += tlsExtension(0x0033, shares + share);
  }
  appendU16(body, extensions.size());
  body += extensions;
  std::string handshake("\x01", 1);
  appendU24(handshake, body.size());
  handshake += body;
  return tlsRecord(0x16, handshake, 0x0301);
}

void mutateTlsRecords(Rng& rng, std::string& records) {
  if (records.size() < 10) records = tlsClientHello(rng);
  switch (rng.below(9)) {
    case 0:
      records[rng.below(records.size())] ^= static_cast<char>(1u << rng.below(8));
      break;
    case 1:  // truncated: the broker waits for the rest (until its handshake timeout)
      records.resize(rng.range(1, records.size() - 1));
      break;
    case 2:  // record length
      records[3 + rng.below(2)] = static_cast<char>(rng.below(256));
      break;
    case 3:  // handshake length
      records[6 + rng.below(3)] = static_cast<char>(rng.below(256));
      break;
    case 4:  // a length somewhere in the body (session id, suites, extensions)
      records[9 + rng.below(records.size() - 9)] = static_cast<char>(rng.chance(50) ? 0xff : 0);
      break;
    case 5:  // content type or record version
      if (rng.chance(50)) {
        records[0] = static_cast<char>(rng.chance(50) ? rng.range(20, 24) : rng.below(256));
      } else {
        records[1 + rng.below(2)] = static_cast<char>(rng.below(256));
      }
      break;
    case 6: {  // one handshake message in several records: valid, and reassembled by the server
      if (records[0] != 0x16) break;
      const std::string_view body = std::string_view(records).substr(5);
      std::string out;
      for (std::size_t at = 0; at < body.size();) {
        const std::size_t n = std::min<std::size_t>(body.size() - at, rng.range(1, 64));
        out += tlsRecord(0x16, body.substr(at, n), 0x0301);
        at += n;
      }
      records = std::move(out);
      break;
    }
    case 7:  // a second ClientHello, or an empty record, after the first
      records += rng.chance(50) ? tlsClientHello(rng) : tlsRecord(0x16, {});
      break;
    default:
      records += randomBytes(rng, rng.range(1, 64));
      break;
  }
}

std::string tlsRecordNoise(Rng& rng) {
  switch (rng.below(7)) {
    case 0:  // application data that fails to decrypt
      return tlsRecord(0x17, randomBytes(rng, rng.range(1, 300)));
    case 1:  // an alert, plain text (after the handshake it should be encrypted)
      return tlsRecord(0x15, std::string(1, static_cast<char>(rng.chance(50) ? 1 : 2)) +
                                 static_cast<char>(rng.below(256)));
    case 2:  // ChangeCipherSpec
      return tlsRecord(0x14, std::string("\x01", 1));
    case 3:  // heartbeat request announcing more than it carries
      return tlsRecord(0x18, std::string("\x01\x40\x00xyz", 6));
    case 4:  // renegotiation: another ClientHello, in clear
      return tlsClientHello(rng);
    case 5: {  // a record longer than TLS allows (2^14 + 2048)
      std::string out("\x17\x03\x03\xff\xff", 5);
      out += randomBytes(rng, rng.range(0, 200));
      return out;
    }
    default:
      return randomBytes(rng, rng.range(1, 64));
  }
}

void mutateBytes(Rng& rng, std::string& bytes) {
  if (bytes.empty()) {
    bytes = randomBytes(rng, rng.range(1, 8));
    return;
  }
  const std::size_t at = rng.below(bytes.size());
  switch (rng.below(7)) {
    case 0:
      bytes[at] ^= static_cast<char>(1u << rng.below(8));
      break;
    case 1:
      bytes[at] = static_cast<char>(rng.below(256));
      break;
    case 2:
      bytes.insert(at, randomBytes(rng, rng.range(1, 8)));
      break;
    case 3:
      bytes.erase(at, rng.range(1, 8));
      break;
    case 4:
      bytes.insert(at, 1, '\n');
      break;
    case 5:
      bytes.insert(at, 1, '\r');
      break;
    default:
      bytes.insert(at, std::string(rng.range(1, 600), static_cast<char>('A' + rng.below(26))));
      break;
  }
}

}  // namespace tern::fuzz::frames
