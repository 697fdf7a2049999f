#include "topic_data.hpp"

#include <algorithm>
#include <array>
#include <cstdio>
#include <numeric>
#include <unordered_set>
#include <utility>

namespace tern::bench {
namespace {

constexpr std::array<std::string_view, 4> kWeather = {"temperature", "humidity", "wind", "rain"};
constexpr std::array<std::string_view, 4> kSystems = {"hvac", "lighting", "access", "elevator"};
constexpr std::array<std::string_view, 10> kDeviceTopics = {
    "temperature", "humidity", "co2",    "occupancy",       "power",
    "voltage",     "battery",  "status", "temperature/max", "power/avg"};
constexpr std::array<std::string_view, 8> kMetrics = {
    "temperature", "humidity", "co2", "occupancy", "power", "voltage", "battery", "status"};
constexpr std::array<std::string_view, 16> kEventTypes = {
    "created",  "updated",  "deleted", "login",  "logout", "invoice", "payment", "refund",
    "shipment", "delivery", "return",  "review", "alert",  "quota",   "export",  "import"};
constexpr int kBuildingsPerSite = 20;
constexpr int kDevicesPerBuilding = 50;
constexpr std::uint64_t kTopicsPerBuilding = 4 + kDevicesPerBuilding * kDeviceTopics.size();
static_assert(kIotTopicsPerSite == kWeather.size() + kBuildingsPerSite * kTopicsPerBuilding);

// Query lists are capped: a million distinct topics already spread over far more memory than any
// cache holds.
constexpr std::size_t kMaxQueries = std::size_t{1} << 20;
constexpr std::size_t kChurnFilters = 65536;

std::uint64_t mix64(std::uint64_t x) noexcept {
  return Rng(x).next();
}

void appendHex(std::string& out, std::uint64_t value, int digits) {
  static constexpr char kHex[] = "0123456789abcdef";
  for (int i = digits - 1; i >= 0; --i)
    out.push_back(kHex[(value >> (4 * i)) & 0xF]);
}

// A 12-hex-digit hardware id, unique within its site (the low four digits count the devices).
void appendDeviceId(std::string& out, std::uint64_t site, int building, int device) {
  const std::uint64_t hash = mix64((site << 20) ^ (std::uint64_t(building) << 8) ^ device);
  appendHex(out, hash >> 32, 8);
  appendHex(out, std::uint64_t(building) * kDevicesPerBuilding + device, 4);
}

std::string devicePrefix(std::uint64_t site, int building, int device) {
  std::string out =
      "site/" + std::to_string(site) + "/building/" + std::to_string(building) + "/device/";
  appendDeviceId(out, site, building, device);
  return out;
}

std::string buildingPrefix(std::uint64_t site, int building) {
  return "site/" + std::to_string(site) + "/building/" + std::to_string(building);
}

// Fisher-Yates with our own generator.
template <typename T>
void shuffle(std::vector<T>& items, Rng& rng) {
  for (std::size_t i = items.size(); i > 1; --i)
    std::swap(items[i - 1], items[rng.below(i)]);
}

std::vector<std::uint64_t> permutation(std::uint64_t count, Rng& rng) {
  std::vector<std::uint64_t> order(count);
  std::iota(order.begin(), order.end(), 0);
  shuffle(order, rng);
  return order;
}

// A random fleet topic of `universe` that belongs to a device (the mixes put wildcards there).
IotPlace randomDevicePlace(std::uint64_t universe, Rng& rng) {
  for (;;) {
    const IotPlace place = iotPlace(rng.below(universe));
    if (place.device >= 0) return place;
  }
}

// One filter of the 70/20/10 mix over a fleet of `universe` topics; exact filters come from
// `exact` (distinct topics, consumed in order).
std::string mixedFilter(std::uint64_t universe, Rng& rng, const std::vector<std::uint64_t>& exact,
                        std::size_t& nextExact) {
  const std::uint64_t roll = rng.below(1000);
  if (roll < 700 && nextExact < exact.size()) return iotTopic(exact[nextExact++]);
  const IotPlace p = randomDevicePlace(universe, rng);
  if (roll < 900) {
    const std::uint64_t kind = rng.below(10);
    if (kind < 5) return devicePrefix(p.site, p.building, p.device) + "/+";
    if (kind < 8)
      return buildingPrefix(p.site, p.building) + "/device/+/" +
             std::string(kMetrics[rng.below(kMetrics.size())]);
    return "site/" + std::to_string(p.site) + "/building/+/" +
           std::string(kSystems[rng.below(kSystems.size())]);
  }
  const std::uint64_t kind = rng.below(1000);
  if (kind < 895) return devicePrefix(p.site, p.building, p.device) + "/#";
  if (kind < 995) return buildingPrefix(p.site, p.building) + "/#";
  return "site/" + std::to_string(p.site) + "/#";
}

// Fleet-wide filters of the wildcard-heavy set: a fixed number of them whatever its size, as the
// dashboards and archivers of a deployment are (each matches a large part of every site).
constexpr std::array<std::string_view, 8> kFleetWide = {
    "+/+/#",
    "site/+/building/+/#",
    "site/+/building/+/device/+/temperature",
    "site/+/building/+/device/+/+",
    "site/+/weather/+",
    "+/+/building/+/hvac",
    "site/+/building/+/device/+/temperature/max",
    "site/+/#"};
constexpr std::size_t kFleetWideFilters = 128;

// A site-local wildcard filter: a fleet topic, cut short with '#' half of the time (keeping at
// least site/<s>/building/<b>), with each level below the site replaced by '+' with probability
// 0.3 (at least one wildcard in all). So a site holds the same number of them, with the same
// breadth, whatever the size of the set.
std::string wildcardFilter(std::uint64_t universe, Rng& rng) {
  const std::string topic = iotTopic(rng.below(universe));
  std::vector<std::string_view> levels;
  for (std::size_t start = 0;;) {
    const std::size_t slash = topic.find('/', start);
    levels.push_back(std::string_view(topic).substr(start, slash - start));
    if (slash == std::string::npos) break;
    start = slash + 1;
  }
  const std::size_t depth = levels.size();
  bool pound = false;
  std::size_t keep = depth;
  if (depth > 4 && rng.chance(50)) {
    keep = 4 + rng.below(depth - 4);  // [4, depth - 1]
    pound = true;
  }
  std::string filter;
  bool wildcard = pound;
  for (std::size_t i = 0; i < keep; ++i) {
    if (i > 0) filter.push_back('/');
    const bool plus = i >= 2 && (rng.chance(30) || (!wildcard && i + 1 == keep));
    wildcard |= plus;
    filter += plus ? std::string_view("+") : levels[i];
  }
  if (pound) filter += "/#";
  return filter;
}

// Adds (filter, session) unless the pair is there already; true when added.
bool addUnique(SubscriptionSet& set, std::unordered_set<std::string>& seen, std::string filter,
               std::uint64_t session, unsigned qos) {
  std::string key = filter;
  key.push_back('\0');
  key += std::to_string(session);
  if (!seen.insert(std::move(key)).second) return false;
  set.filterTextBytes += filter.size();
  set.subscriptions.push_back({std::move(filter), sessionId(session, qos)});
  return true;
}

void fillExact(SubscriptionSet& set, std::string (*topicOf)(std::uint64_t), Rng& rng) {
  const std::uint64_t universe = 2 * set.size;
  const std::vector<std::uint64_t> order = permutation(universe, rng);
  set.subscriptions.reserve(set.size);
  for (std::size_t i = 0; i < set.size; ++i) {
    std::string filter = topicOf(order[i]);
    set.filterTextBytes += filter.size();
    set.subscriptions.push_back({std::move(filter), sessionId(i, rng.below(3))});
  }
  std::vector<std::uint64_t> hits(order.begin(), order.begin() + set.size);
  shuffle(hits, rng);
  hits.resize(std::min(hits.size(), kMaxQueries));
  for (std::uint64_t index : hits)
    set.hits.push(topicOf(index));
  std::vector<std::uint64_t> misses(order.begin() + set.size, order.end());
  shuffle(misses, rng);
  misses.resize(std::min(misses.size(), kMaxQueries));
  for (std::uint64_t index : misses)
    set.misses.push(topicOf(index));
  // Writers churn on topics nobody holds: subscribing grows leaves inside existing branches.
  for (std::size_t i = 0; i < std::min(misses.size(), kChurnFilters); ++i)
    set.churnFilters.push_back(topicOf(misses[misses.size() - 1 - i]));
}

void fillRandomQueries(SubscriptionSet& set, std::uint64_t universe, Rng& rng) {
  const std::size_t count = std::min<std::size_t>(kMaxQueries, std::max<std::size_t>(universe, 1));
  for (std::size_t i = 0; i < count; ++i)
    set.hits.push(iotTopic(rng.below(universe)));
}

}  // namespace

void TopicList::push(std::string_view text) {
  text_.append(text);
  offsets_.push_back(text_.size());
}

IotPlace iotPlace(std::uint64_t index) noexcept {
  const std::uint64_t site = index / kIotTopicsPerSite;
  const std::uint64_t inSite = index % kIotTopicsPerSite;
  if (inSite < kWeather.size()) return {site, -1, -1};
  const std::uint64_t j = inSite - kWeather.size();
  const int building = static_cast<int>(j / kTopicsPerBuilding);
  const std::uint64_t k = j % kTopicsPerBuilding;
  if (k < 4) return {site, building, -1};
  return {site, building, static_cast<int>((k - 4) / kDeviceTopics.size())};
}

std::string iotTopic(std::uint64_t index) {
  const IotPlace place = iotPlace(index);
  const std::uint64_t inSite = index % kIotTopicsPerSite;
  if (place.building < 0)
    return "site/" + std::to_string(place.site) + "/weather/" + std::string(kWeather[inSite]);
  const std::uint64_t k = (inSite - kWeather.size()) % kTopicsPerBuilding;
  if (place.device < 0)
    return buildingPrefix(place.site, place.building) + "/" + std::string(kSystems[k]);
  return devicePrefix(place.site, place.building, place.device) + "/" +
         std::string(kDeviceTopics[(k - 4) % kDeviceTopics.size()]);
}

std::string flatTopic(std::uint64_t index) {
  const std::uint64_t tenant = index / kFlatTypesPerTenant;
  const std::uint64_t high = mix64(tenant * 2 + 1);
  const std::uint64_t low = mix64(tenant * 2 + 2);
  std::string out = "tenant/";
  // A version-4 UUID: 8-4-4-4-12 hex digits.
  appendHex(out, high >> 32, 8);
  out.push_back('-');
  appendHex(out, (high >> 16) & 0xFFFF, 4);
  out.push_back('-');
  appendHex(out, 0x4000 | (high & 0x0FFF), 4);
  out.push_back('-');
  appendHex(out, 0x8000 | ((low >> 48) & 0x3FFF), 4);
  out.push_back('-');
  appendHex(out, low & 0xFFFFFFFFFFFFull, 12);
  out += "/events/";
  out += kEventTypes[index % kFlatTypesPerTenant];
  return out;
}

routing::SubscriberId sessionId(std::uint64_t session, unsigned qos) noexcept {
  // Sessions spread over 8 workers, as a broker on a big machine would place them.
  const auto slot = static_cast<std::uint32_t>((session / 8) % routing::SubscriberId::kMaxSlots);
  const auto generation =
      static_cast<std::uint32_t>(1 + session / 8 / routing::SubscriberId::kMaxSlots);
  return routing::SubscriberId::make(static_cast<unsigned>(session % 8), slot, generation, qos);
}

routing::SubscriberId churnId(std::uint64_t n) noexcept {
  // Worker 255 is never used by sessionId().
  const auto slot = static_cast<std::uint32_t>(n % routing::SubscriberId::kMaxSlots);
  const auto generation = static_cast<std::uint32_t>(1 + n / routing::SubscriberId::kMaxSlots);
  return routing::SubscriberId::make(255, slot, generation, 1);
}

std::string_view name(FilterMix mix) noexcept {
  switch (mix) {
    case FilterMix::kExact:
      return "exact";
    case FilterMix::kFlat:
      return "flat";
    case FilterMix::kMixed:
      return "mix";
    case FilterMix::kWildcard:
      return "wildcard";
    case FilterMix::kFanout:
      return "fanout";
  }
  return "?";
}

SubscriptionSet makeSubscriptionSet(FilterMix mix, std::size_t size) {
  SubscriptionSet set{.mix = mix, .size = size};
  Rng rng(0x7E2A0000u + static_cast<std::uint64_t>(mix) * 0x1000003u + size);
  switch (mix) {
    case FilterMix::kExact:
      fillExact(set, &iotTopic, rng);
      break;
    case FilterMix::kFlat:
      fillExact(set, &flatTopic, rng);
      break;
    case FilterMix::kMixed:
    case FilterMix::kWildcard: {
      const std::uint64_t universe = 2 * size;
      // Distinct exact topics for the 70%; more than enough of them.
      const std::vector<std::uint64_t> exact =
          mix == FilterMix::kMixed ? permutation(universe, rng) : std::vector<std::uint64_t>{};
      std::size_t nextExact = 0;
      std::unordered_set<std::string> seen;
      const std::uint64_t sessions = size / 2 + 1;
      auto next = [&]() -> std::string {
        if (mix == FilterMix::kMixed) return mixedFilter(universe, rng, exact, nextExact);
        if (set.subscriptions.size() < std::min(kFleetWideFilters, size / 8))
          return std::string(kFleetWide[set.subscriptions.size() % kFleetWide.size()]);
        return wildcardFilter(universe, rng);
      };
      while (set.subscriptions.size() < size)
        addUnique(set, seen, next(), rng.below(sessions), static_cast<unsigned>(rng.below(3)));
      std::size_t unusedExact = nextExact;
      for (std::size_t i = 0; i < kChurnFilters; ++i)
        set.churnFilters.push_back(mix == FilterMix::kMixed
                                       ? mixedFilter(universe, rng, exact, unusedExact)
                                       : wildcardFilter(universe, rng));
      fillRandomQueries(set, universe, rng);
      break;
    }
    case FilterMix::kFanout: {
      const std::string filter = buildingPrefix(3, 7) + "/#";
      for (std::size_t i = 0; i < size; ++i) {
        set.filterTextBytes += filter.size();
        set.subscriptions.push_back({filter, sessionId(i, rng.below(3))});
      }
      std::vector<std::uint64_t> topics;
      const std::uint64_t first = 3 * kIotTopicsPerSite + kWeather.size() + 7 * kTopicsPerBuilding;
      for (std::uint64_t i = 0; i < kTopicsPerBuilding; ++i)
        topics.push_back(first + i);
      shuffle(topics, rng);
      for (std::uint64_t index : topics)
        set.hits.push(iotTopic(index));
      set.churnFilters.push_back(filter);
      break;
    }
  }
  return set;
}

RetainedSet makeRetainedSet(std::size_t size) {
  RetainedSet set{.size = size};
  Rng rng(0x5E7A1Eu + size);
  std::vector<std::uint64_t> order(size);
  std::iota(order.begin(), order.end(), 0);
  shuffle(order, rng);
  for (std::uint64_t index : order)
    set.topics.push(iotTopic(index));
  for (std::size_t i = 0; i < kChurnFilters; ++i)
    set.extra.push(iotTopic(size + i));
  return set;
}

std::vector<RetainedFilter> retainedFilters() {
  const std::string device = devicePrefix(3, 7, 12);
  return {
      {"device_plus", device + "/+"},                                 // 8 matches
      {"device_hash", device + "/#"},                                 // 10
      {"building_hash", buildingPrefix(3, 7) + "/#"},                 // 504
      {"site_metric", "site/3/building/+/device/+/temperature"},      // 1,000
      {"site_hash", "site/3/#"},                                      // 10,084
      {"site_miss", "site/3/building/+/device/+/nosuchmetric"},       // 0, walks 1,000 devices
      {"all_sites_metric", "site/+/building/7/device/+/temperature"}  // 50 per site
  };
}

}  // namespace tern::bench
