// Deterministic data for the topic-matching benchmarks: topic universes, filter sets and query
// lists. Everything is generated from fixed seeds with our own generator (SplitMix64 and
// multiply-shift ranges; no std:: distributions, whose output differs between standard
// libraries), so every run and every machine sees the same filters and topics. bench/README.md
// describes the shapes and mixes.
//
// Pure functions and plain values; any thread. Generation allocates freely (set-up only).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "tern/routing/subscriber_id.hpp"

namespace tern::bench {

// SplitMix64: tiny, fast, and good enough to pick topics; fully specified, so portable.
class Rng {
 public:
  explicit Rng(std::uint64_t seed) noexcept : state_(seed) {}
  std::uint64_t next() noexcept {
    std::uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  // Uniform in [0, bound) (Lemire's multiply-shift; the bias is below 2^-32 for our bounds).
  std::uint64_t below(std::uint64_t bound) noexcept {
    return static_cast<std::uint64_t>((static_cast<unsigned __int128>(next()) * bound) >> 64);
  }
  // True with probability percent/100.
  bool chance(unsigned percent) noexcept { return below(100) < percent; }

 private:
  std::uint64_t state_;
};

// Many short strings in one buffer, in order: iterating them reads memory sequentially, as a
// broker reads a topic from the packet it just received, so the benchmark loop does not time
// cache misses on its own input.
class TopicList {
 public:
  void push(std::string_view text);
  std::string_view operator[](std::size_t i) const noexcept {
    return {text_.data() + offsets_[i], offsets_[i + 1] - offsets_[i]};
  }
  std::size_t size() const noexcept { return offsets_.size() - 1; }
  bool empty() const noexcept { return size() == 0; }
  std::size_t textBytes() const noexcept { return text_.size(); }

 private:
  std::string text_;
  std::vector<std::size_t> offsets_{0};
};

// The IoT fleet: site by site, 10,084 topics per site, depths 4 to 8:
//   site/<s>/weather/<w>                                   4 per site        (depth 4)
//   site/<s>/building/<b>/<system>                         4 per building    (depth 5)
//   site/<s>/building/<b>/device/<d>/<metric>              8 per device      (depth 7)
//   site/<s>/building/<b>/device/<d>/<metric>/<stat>       2 per device      (depth 8)
// with 20 buildings per site, 50 devices per building and <d> a 12-hex-digit hardware id.
inline constexpr std::uint64_t kIotTopicsPerSite = 4 + 20 * (4 + 50 * 10);
// The topic with this index (a bijection from [0, sites * kIotTopicsPerSite)).
std::string iotTopic(std::uint64_t index);
// The site, building and device numbers of iotTopic(index) (building/device -1 when absent).
struct IotPlace {
  std::uint64_t site;
  int building;
  int device;
};
IotPlace iotPlace(std::uint64_t index) noexcept;

// The multi-tenant event bus: tenant/<uuid>/events/<type>, 16 event types per tenant, long flat
// levels (tens of thousands of tenants side by side under "tenant").
inline constexpr std::uint64_t kFlatTypesPerTenant = 16;
std::string flatTopic(std::uint64_t index);

// One subscription of a data set.
struct Subscription {
  std::string filter;
  routing::SubscriberId id;
};

// The session with this number, as a SubscriberId (QoS 0..2 varying with the number).
routing::SubscriberId sessionId(std::uint64_t session, unsigned qos = 0) noexcept;
// Ids of sessions made by writers during the benchmarks (churn); never equal to sessionId(...).
routing::SubscriberId churnId(std::uint64_t n) noexcept;

enum class FilterMix {
  kExact,     // exact IoT topics, one session each
  kFlat,      // exact tenant topics, one session each
  kMixed,     // 70% exact, 20% with '+', 10% ending in '#'; sessions hold about two filters each
  kWildcard,  // every filter has wildcards ("+/+/#", "site/+/building/+/#", ...)
  kFanout,    // one filter, every session on it
};
std::string_view name(FilterMix mix) noexcept;

// A filter set of `size` subscriptions and the topics the benchmarks match against it.
struct SubscriptionSet {
  FilterMix mix;
  std::size_t size;
  std::vector<Subscription> subscriptions;  // no (filter, session) pair twice
  // Topics in the order the benchmarks visit them (uniformly random over their class):
  TopicList hits;    // kExact/kFlat: subscribed topics; kMixed/kWildcard: random fleet topics;
                     // kFanout: topics the one filter matches
  TopicList misses;  // kExact/kFlat: fleet topics nobody subscribed to
  // More filters of the same mix, for writers that churn (subscribe, later unsubscribe).
  std::vector<std::string> churnFilters;
  std::size_t filterTextBytes = 0;  // sum of the subscriptions' filter lengths
};
SubscriptionSet makeSubscriptionSet(FilterMix mix, std::size_t size);

// The retained store's contents: `size` IoT topics (whole sites first), and the filters a
// SUBSCRIBE sends against it.
struct RetainedSet {
  std::size_t size;
  TopicList topics;  // in set() order
  TopicList extra;   // topics not in the store, for set-then-delete churn
};
RetainedSet makeRetainedSet(std::size_t size);

// Retained SUBSCRIBE filters whose match count does not depend on the store size (they stay
// inside site 3, present in every set of at least 4 sites), plus one that spans every site.
struct RetainedFilter {
  std::string_view label;  // benchmark name part
  std::string filter;
};
std::vector<RetainedFilter> retainedFilters();

}  // namespace tern::bench
