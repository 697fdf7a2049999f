#include "tern/loadgen/payload.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace tern::loadgen {
namespace {

TEST(Payload, RoundTripsEveryField) {
  for (const PayloadFields fields :
       {PayloadFields{0, 0, 0}, PayloadFields{42, 7, 123'456'789},
        PayloadFields{0xffffffffu, 0xffffffffffffffffULL, INT64_MAX}}) {
    std::vector<char> buffer(64);
    encodePayload(buffer, fields);
    PayloadFields decoded;
    ASSERT_EQ(decodePayload(std::string_view(buffer.data(), buffer.size()), decoded),
              PayloadStatus::kOk);
    EXPECT_EQ(decoded.publisher, fields.publisher);
    EXPECT_EQ(decoded.sequence, fields.sequence);
    EXPECT_EQ(decoded.intendedNs, fields.intendedNs);
  }
}

TEST(Payload, IsSafeLineProtocolContents) {
  std::vector<char> buffer(1000);
  encodePayload(buffer, {0xdeadbeef, 99, 1'700'000'000'000'000'000});
  for (const char c : buffer) {
    EXPECT_TRUE((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z')) << "byte " << int{c};
  }
  const std::string_view text(buffer.data(), buffer.size());
  EXPECT_EQ(text.substr(0, 8), "deadbeef");
  EXPECT_EQ(text.substr(40, 3), "abc");  // padding
}

TEST(Payload, HeaderRewriteKeepsPadding) {
  std::vector<char> buffer(100);
  encodePayload(buffer, {});
  const std::string padding(buffer.begin() + 40, buffer.end());
  encodePayloadHeader(buffer, {5, 6, 7});
  EXPECT_EQ(std::string(buffer.begin() + 40, buffer.end()), padding);
  PayloadFields decoded;
  ASSERT_EQ(decodePayload(std::string_view(buffer.data(), buffer.size()), decoded),
            PayloadStatus::kOk);
  EXPECT_EQ(decoded.sequence, 6u);
}

TEST(Payload, MinimalSizeIsTheHeader) {
  std::vector<char> buffer(kPayloadHeaderBytes);
  encodePayload(buffer, {1, 2, 3});
  PayloadFields decoded;
  EXPECT_EQ(decodePayload(std::string_view(buffer.data(), buffer.size()), decoded),
            PayloadStatus::kOk);
  EXPECT_EQ(decodePayload(std::string_view(buffer.data(), buffer.size() - 1), decoded),
            PayloadStatus::kTooShort);
}

TEST(Payload, RejectsForeignBytes) {
  std::vector<char> buffer(64);
  encodePayload(buffer, {1, 2, 3});
  PayloadFields decoded;
  for (const std::size_t position : {0u, 9u, 39u}) {
    for (const char bad : {'A', 'g', '\n', '@', '\0'}) {
      std::vector<char> copy = buffer;
      copy[position] = bad;
      EXPECT_EQ(decodePayload(std::string_view(copy.data(), copy.size()), decoded),
                PayloadStatus::kBadDigit);
    }
  }
}

}  // namespace
}  // namespace tern::loadgen
