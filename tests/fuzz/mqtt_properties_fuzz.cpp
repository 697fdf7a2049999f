// libFuzzer target for MQTT 5.0 property blocks (src/protocol/mqtt_properties.cpp): the first byte
// picks the packet the block belongs to (PropertyContext), the rest is the block as a peer sends
// it. Invariants checked, besides ASan/UBSan finding no fault:
//   - a refusal is Malformed Packet or Protocol Error with a detail; success consumes at most the
//     bytes offered, exactly the length prefix plus the length, and every view lies inside them;
//   - the walks (forEachUserProperty, forEachSubscriptionIdentifier) visit exactly as many entries
//     as the decoder counted, reading only validated bytes;
//   - the block written back through PropertyWriter::raw decodes to the same properties, and is
//     byte for byte the input's block when the input's length was minimal (it always is: a
//     non-minimal length is refused).
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "tern/protocol/mqtt_properties.hpp"

namespace {

using namespace tern::protocol::mqtt;

void check(bool condition, const char* what) {
  if (condition) return;
  std::fprintf(stderr, "mqtt_properties_fuzz: invariant violated: %s\n", what);
  std::abort();
}

bool inside(std::string_view part, std::string_view whole) {
  return part.empty() ||
         (part.data() >= whole.data() && part.data() + part.size() <= whole.data() + whole.size());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const auto context = static_cast<PropertyContext>(data[0] % 15);
  const std::string_view in(reinterpret_cast<const char*>(data) + 1, size - 1);
  Properties p;
  const PropertyResult r = decodeProperties(in, context, p);
  if (!r.ok()) {
    check(r.reason == ReasonCode::kMalformedPacket || r.reason == ReasonCode::kProtocolError,
          "a refusal other than Malformed Packet or Protocol Error");
    check(!r.detail.empty(), "a refusal without a detail");
    return 0;
  }
  check(r.consumed <= in.size() && r.consumed >= 1, "consumed outside the input");
  check(r.consumed ==
            variableByteIntegerSize(static_cast<std::uint32_t>(p.block.size())) + p.block.size(),
        "consumed is not the length prefix plus the block");
  const std::string_view taken = in.substr(0, r.consumed);
  check(inside(p.block, taken), "block outside the input");
  for (const std::string_view view :
       {p.contentType, p.responseTopic, p.correlationData, p.assignedClientIdentifier,
        p.authenticationMethod, p.authenticationData, p.responseInformation, p.serverReference,
        p.reasonString}) {
    check(inside(view, p.block), "a value outside the block");
  }
  std::uint32_t users = 0;
  p.forEachUserProperty([&](std::string_view name, std::string_view value) {
    check(inside(name, p.block) && inside(value, p.block), "a user property outside the block");
    ++users;
  });
  check(users == p.userPropertyCount, "user property walk and count differ");
  std::uint32_t ids = 0;
  p.forEachSubscriptionIdentifier([&](std::uint32_t id) {
    check(id >= 1 && id <= kMaxVariableByteInteger, "subscription identifier out of range");
    if (ids == 0) check(id == p.subscriptionIdentifier, "first subscription identifier differs");
    ++ids;
  });
  check(ids == p.subscriptionIdentifierCount, "subscription identifier walk and count differ");

  std::string again;
  PropertyWriter writer(again);
  writer.raw(p.block);
  const std::size_t written = writer.finish();
  check(written == again.size(), "finish() size differs from what was written");
  check(again == taken, "the block written back differs from the input");
  Properties q;
  const PropertyResult r2 = decodeProperties(again, context, q);
  check(r2.ok() && r2.consumed == again.size(), "the block written back does not decode");
  check(q.present == p.present && q.userPropertyCount == p.userPropertyCount &&
            q.subscriptionIdentifierCount == p.subscriptionIdentifierCount &&
            q.messageExpiryInterval == p.messageExpiryInterval &&
            q.sessionExpiryInterval == p.sessionExpiryInterval &&
            q.receiveMaximum == p.receiveMaximum && q.topicAlias == p.topicAlias &&
            q.maximumPacketSize == p.maximumPacketSize && q.reasonString == p.reasonString &&
            q.correlationData == p.correlationData,
        "the block written back decodes to other properties");
  return 0;
}
