// libFuzzer target for the MQTT decoder: the input is a byte stream as a peer would send it.
//
// The stream is decoded twice: once from a single buffer, and once fed in chunks whose sizes come
// from a PRNG seeded by a hash of the input (so a crash reproduces from the input alone), the way a
// connection appends socket reads and drops consumed bytes. The role and maximum packet size are
// picked from the same hash, and so is the protocol level the stream starts with (3.1.1 or 5.0);
// a CONNECT sets the level of what follows it, as on a connection. Invariants checked, besides
// ASan/UBSan finding no fault:
//   - consumed <= the bytes offered; a packet consumes at least 2 bytes and exactly packetSize;
//     need-more and errors consume nothing, and need-more never claims a size already present;
//   - both passes yield the same packets and end with the same status (split independence);
//   - every decoded packet re-encodes (appendPacket) to bytes that decode to an equal packet, and
//     to the very same bytes when the input's remaining length used the minimal encoding (3.1.1;
//     the 5.0 encoder may write a shorter form, leaving out an empty property block).
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "tern/protocol/mqtt_decoder.hpp"
#include "tern/protocol/mqtt_encoder.hpp"
#include "tern/routing/topic.hpp"

namespace {

using namespace tern::protocol::mqtt;

void check(bool condition, const char* what) {
  if (condition) return;
  std::fprintf(stderr, "mqtt_decoder_fuzz: invariant violated: %s\n", what);
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

std::size_t touchProperties(const Properties& p) {
  std::size_t sum = p.block.size() + p.contentType.size() + p.reasonString.size();
  std::uint32_t users = 0;
  p.forEachUserProperty([&](std::string_view name, std::string_view value) {
    sum += name.size() + value.size();
    ++users;
  });
  check(users == p.userPropertyCount, "user property count");
  std::uint32_t ids = 0;
  p.forEachSubscriptionIdentifier([&](std::uint32_t id) {
    check(id != 0, "subscription identifier 0");
    ++ids;
  });
  check(ids == p.subscriptionIdentifierCount, "subscription identifier count");
  return sum;
}

// The protocol level of the packets after `packet` on the same stream.
std::uint8_t levelAfter(const Packet& packet, std::uint8_t level) {
  if (const auto* c = std::get_if<Connect>(&packet)) {
    return c->protocolLevel == kProtocolLevel5 ? kProtocolLevel5 : kProtocolLevel311;
  }
  return level;
}

// Reads every field the broker would read, so ASan sees each view dereferenced.
std::size_t touch(const Packet& packet) {
  std::size_t sum = packetTypeName(typeOf(packet)).size();
  std::visit(
      [&](const auto& p) {
        if constexpr (requires { p.properties; }) sum += touchProperties(p.properties);
      },
      packet);
  if (const auto* s = std::get_if<Subscribe>(&packet)) {
    std::size_t count = 0;
    for (const Subscription entry : s->subscriptions) {
      check(entry.qos <= 2, "subscription QoS above 2");
      sum += entry.filter.size() +
             static_cast<std::size_t>(tern::routing::validateTopicFilter(entry.filter));
      ++count;
    }
    check(count == s->subscriptions.size() && count > 0, "subscription count");
  } else if (const auto* u = std::get_if<Unsubscribe>(&packet)) {
    std::size_t count = 0;
    for (const std::string_view filter : u->filters) {
      sum += filter.size();
      ++count;
    }
    check(count == u->filters.size() && count > 0, "filter count");
  } else if (const auto* p = std::get_if<Publish>(&packet)) {
    check(tern::routing::validateTopicName(p->topic) == tern::routing::TopicStatus::kOk ||
              (p->topic.empty() && p->properties.has(PropertyId::kTopicAlias)),
          "PUBLISH topic invalid");
    check((p->qos == 0) == (p->packetId == 0), "PUBLISH packet id vs QoS");
    for (const char c : p->payload)
      sum += static_cast<unsigned char>(c);
  } else if (const auto* c = std::get_if<Connect>(&packet)) {
    sum += clientIdAcceptable(*c, 23) ? 1 : 0;
    for (const char ch : c->password)
      sum += static_cast<unsigned char>(ch);
    for (const char ch : c->willPayload)
      sum += static_cast<unsigned char>(ch);
  }
  return sum;
}

// Size of the fixed header at the start of `wire` (which holds a whole decoded packet).
std::size_t headerSizeOf(std::string_view wire) {
  std::size_t at = 1;
  while ((static_cast<std::uint8_t>(wire[at]) & 0x80) != 0)
    ++at;
  return at + 1;
}

void checkReencoding(const Decoder& decoder, std::string_view original, const Packet& packet,
                     std::uint8_t level) {
  std::string again;
  check(appendPacket(again, packet, level), "decoded packet does not re-encode");
  const DecodeResult r = decoder.decode(again, level);
  check(r.status == DecodeStatus::kPacket, "re-encoded packet does not decode");
  check(r.consumed == again.size(), "re-encoded packet size");
  check(r.packet == packet, "re-encoded packet differs");
  const std::size_t header = headerSizeOf(original);
  if (level != kProtocolLevel5 && header == fixedHeaderSize(original.size() - header)) {
    check(again == original, "minimal encoding does not round-trip byte for byte");
  }
}

void checkResult(const DecodeResult& r, std::size_t offered) {
  check(r.consumed <= offered, "consumed more than offered");
  switch (r.status) {
    case DecodeStatus::kPacket:
      check(r.consumed >= 2 && r.consumed == r.packetSize, "packet size");
      check(r.packet.index() != 0, "packet without a value");
      break;
    case DecodeStatus::kNeedMore:
      check(r.consumed == 0, "need-more consumed bytes");
      check(r.packetSize == 0 || r.packetSize > offered, "need-more with the whole packet present");
      break;
    default:
      check(isError(r.status), "unknown status");
      check(r.consumed == 0, "error consumed bytes");
      check(r.packet.index() == 0, "error with a packet");
      check(!describe(r.status).empty(), "undescribed error");
      check(isFailure(disconnectReason(r.status)), "error without a failure reason code");
      break;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::uint64_t hash = fnv1a(data, size);
  DecoderConfig config;
  switch (hash % 4) {
    case 0:
      config.role = Role::kServer;
      break;
    case 1:
      config.role = Role::kClient;
      break;
    default:
      config.role = Role::kAny;
      break;
  }
  if ((hash >> 8) % 8 == 0) config.maxPacketSize = 2 + (hash >> 16) % 512;
  const Decoder decoder(config);
  const std::uint8_t startLevel = (hash >> 40) % 2 == 0 ? kProtocolLevel311 : kProtocolLevel5;
  const std::string_view stream(reinterpret_cast<const char*>(data), size);

  // Pass 1: the whole stream in one buffer. The packets view `data`, which outlives this call.
  std::vector<Packet> packets;
  std::vector<std::size_t> sizes;
  DecodeStatus whole = DecodeStatus::kNeedMore;
  std::size_t sink = 0;
  std::uint8_t level = startLevel;
  for (std::string_view rest = stream;;) {
    const DecodeResult r = decoder.decode(rest, level);
    checkResult(r, rest.size());
    whole = r.status;
    if (r.status != DecodeStatus::kPacket) break;
    sink += touch(r.packet);
    checkReencoding(decoder, rest.substr(0, r.consumed), r.packet, level);
    level = levelAfter(r.packet, level);
    packets.push_back(r.packet);
    sizes.push_back(r.consumed);
    rest.remove_prefix(r.consumed);
  }

  // Pass 2: the same stream in random chunks through a buffer that is compacted as it is consumed.
  Random random{hash | 1};
  std::string buffer;
  std::size_t fed = 0, index = 0;
  DecodeStatus last = DecodeStatus::kNeedMore;
  level = startLevel;
  while (fed < size && !isError(last)) {
    const std::uint64_t roll = random.next();
    std::size_t chunk = roll % 4 == 0 ? 1 : 1 + (roll >> 8) % (roll % 4 == 1 ? 512 : 16);
    if (chunk > size - fed) chunk = size - fed;
    buffer.append(stream.substr(fed, chunk));
    fed += chunk;
    for (;;) {
      const DecodeResult r = decoder.decode(buffer, level);
      checkResult(r, buffer.size());
      last = r.status;
      if (r.status != DecodeStatus::kPacket) break;
      level = levelAfter(r.packet, level);
      check(index < packets.size(), "split decode found an extra packet");
      check(r.consumed == sizes[index] && r.packet == packets[index],
            "split decode differs from whole decode");
      ++index;
      buffer.erase(0, r.consumed);
    }
  }
  check(index == packets.size(), "split decode found fewer packets");
  check(last == whole, "split decode ends with a different status");
  if (sink == 0xFFFFFFFF) std::fputc(' ', stderr);  // keeps `touch` from being optimised away
  return 0;
}
