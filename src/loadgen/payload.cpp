#include "tern/loadgen/payload.hpp"

namespace tern::loadgen {

namespace {

constexpr char kHexDigits[] = "0123456789abcdef";

void writeHex(char* out, std::uint64_t value, int digits) noexcept {
  for (int i = digits - 1; i >= 0; --i) {
    out[i] = kHexDigits[value & 0xf];
    value >>= 4;
  }
}

// Returns false on a byte that is not [0-9a-f].
bool readHex(const char* in, int digits, std::uint64_t& value) noexcept {
  std::uint64_t result = 0;
  for (int i = 0; i < digits; ++i) {
    const char c = in[i];
    unsigned digit;
    if (c >= '0' && c <= '9') {
      digit = static_cast<unsigned>(c - '0');
    } else if (c >= 'a' && c <= 'f') {
      digit = static_cast<unsigned>(c - 'a' + 10);
    } else {
      return false;
    }
    result = (result << 4) | digit;
  }
  value = result;
  return true;
}

}  // namespace

void encodePayloadHeader(std::span<char> out, const PayloadFields& fields) noexcept {
  writeHex(out.data(), fields.publisher, 8);
  writeHex(out.data() + 8, fields.sequence, 16);
  writeHex(out.data() + 24, static_cast<std::uint64_t>(fields.intendedNs), 16);
}

void encodePayload(std::span<char> out, const PayloadFields& fields) noexcept {
  encodePayloadHeader(out, fields);
  for (std::size_t i = kPayloadHeaderBytes; i < out.size(); ++i) {
    out[i] = static_cast<char>('a' + (i - kPayloadHeaderBytes) % 26);
  }
}

PayloadStatus decodePayload(std::string_view payload, PayloadFields& fields) noexcept {
  if (payload.size() < kPayloadHeaderBytes) return PayloadStatus::kTooShort;
  std::uint64_t publisher;
  std::uint64_t sequence;
  std::uint64_t intended;
  if (!readHex(payload.data(), 8, publisher) || !readHex(payload.data() + 8, 16, sequence) ||
      !readHex(payload.data() + 24, 16, intended)) {
    return PayloadStatus::kBadDigit;
  }
  fields.publisher = static_cast<std::uint32_t>(publisher);
  fields.sequence = sequence;
  fields.intendedNs = static_cast<std::int64_t>(intended);
  return PayloadStatus::kOk;
}

}  // namespace tern::loadgen
