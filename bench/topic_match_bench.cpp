// topic_match_bench: tern's RCU subscription trie and retained store against two baselines, on
// the same deterministic data, in one binary (bench/README.md has the data and the command).
//
// Every benchmark name is <implementation>/<operation>/<size>[/threads:N/real_time], with the
// implementations "tern", "shared_mutex_trie" and "naive_scan", so that results pair up by name.
// Matching benchmarks report avg matches per operation ("matches") so that a broken matcher cannot
// look fast, and every structure is checked against the naive scan on a sample of topics before
// anything is timed (a mismatch fails the benchmark and the process exit code).
//
// Data sets are built once and shared by consecutive benchmarks (the cache keeps one subscription
// set and one retained set alive), so the benchmarks are registered grouped by data set.
#include <benchmark/benchmark.h>
#include <malloc.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <new>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "baselines.hpp"
#include "tern/common/message.hpp"
#include "tern/routing/retained_store.hpp"
#include "tern/routing/subscription_trie.hpp"
#include "tern/routing/topic.hpp"
#include "tern/sync/qsbr.hpp"
#include "topic_data.hpp"

// ---- Heap accounting -----------------------------------------------------------------------
// While a fixture builds a structure, the usable bytes of every allocation made through operator
// new (what the allocator really hands out, size-class rounding included) are added up, and those
// of every free subtracted; the memory benchmarks report the result. Counting is off the rest of
// the time: one relaxed load per allocation.
namespace {
std::atomic<bool> gCountHeap{false};
std::atomic<std::int64_t> gHeapBytes{0};
}  // namespace

void* operator new(std::size_t size) {
  void* p = std::malloc(size == 0 ? 1 : size);
  if (p == nullptr) throw std::bad_alloc();
  // Relaxed: counting is switched on and off by the thread that builds a fixture, while no other
  // thread allocates (see HeapCount); the reclaimer frees it waits for are ordered by barrier().
  if (gCountHeap.load(std::memory_order_relaxed))
    gHeapBytes.fetch_add(static_cast<std::int64_t>(malloc_usable_size(p)),
                         std::memory_order_relaxed);
  return p;
}
void operator delete(void* p) noexcept {
  if (p == nullptr) return;
  if (gCountHeap.load(std::memory_order_relaxed))
    gHeapBytes.fetch_sub(static_cast<std::int64_t>(malloc_usable_size(p)),
                         std::memory_order_relaxed);
  std::free(p);
}
void operator delete(void* p, std::size_t) noexcept {
  ::operator delete(p);
}

namespace tern::bench {
namespace {

using routing::SubscriberId;

// ---- Configuration -------------------------------------------------------------------------

struct Sizes {
  std::vector<std::size_t> subscriptions{1000, 100000, 1000000};
  std::size_t hotFrom = 100000;   // hot-set variants only where the set outgrows the caches
  std::size_t threaded = 100000;  // readers/writer benchmarks
  std::size_t memory = 1000000;   // bytes per subscription / retained message
  std::vector<std::size_t> fanout{1000, 100000};
  std::vector<std::size_t> retained{100000, 1000000};
  std::vector<int> readerThreads{1, 2, 4};
  std::size_t latencyBytes = std::size_t{256} << 20;  // pointer chase of machine/memory_latency
};
// --tern_tiny (the ctest smoke run): every benchmark once, on small data.
Sizes tinySizes() {
  Sizes sizes;
  sizes.subscriptions = {100, 300, 1000};
  sizes.hotFrom = 300;
  sizes.threaded = 300;
  sizes.memory = 1000;
  sizes.fanout = {100, 300};
  sizes.retained = {2000, 5000};
  sizes.readerThreads = {1, 2};
  sizes.latencyBytes = std::size_t{1} << 20;
  return sizes;
}

constexpr int kQuiescentEvery = 64;         // matches between a reader's quiescent states
constexpr std::size_t kHotTopics = 1024;    // the hot-set variants cycle over this many topics
constexpr std::size_t kChurnWindow = 1024;  // live churn subscriptions while a writer runs
// The background writer: 100k subscribes and 100k unsubscribes per second.
constexpr double kChurnPairsPerSecond = 1e5;
// Naive-scan oracle work per data set: sample topics x filters.
constexpr std::size_t kVerifyBudget = 40'000'000;

std::atomic<bool> gFailed{false};

void fail(benchmark::State& state, const std::string& error) {
  gFailed.store(true);
  state.SkipWithError(error.c_str());
}

// What building a structure from a data set cost: wall-clock seconds and the heap bytes it holds
// afterwards (allocations counted while it was built, minus what it freed).
struct BuildStats {
  double seconds = 0;
  double heapBytes = 0;
};

// Counts heap bytes from construction until stop(), and times the build until lap().
// REQUIRES: no other thread allocates or frees meanwhile (fixtures are built by one benchmark
// thread, with no background thread running).
class HeapCount {
 public:
  HeapCount() : start_(std::chrono::steady_clock::now()) {
    gHeapBytes.store(0);
    gCountHeap.store(true);
  }
  ~HeapCount() { gCountHeap.store(false); }
  void lap() {
    seconds_ = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  }
  BuildStats stop() {
    gCountHeap.store(false);
    return {seconds_, static_cast<double>(gHeapBytes.load())};
  }

 private:
  std::chrono::steady_clock::time_point start_;
  double seconds_ = 0;
};

std::vector<std::uint64_t> sortedBits(std::span<const SubscriberId> ids) {
  std::vector<std::uint64_t> bits;
  bits.reserve(ids.size());
  for (SubscriberId id : ids)
    bits.push_back(id.bits());
  std::sort(bits.begin(), bits.end());
  return bits;
}

// ---- Subscription structures behind one interface -------------------------------------------
// subscribe/unsubscribe from any thread (NaiveSubscriptions: one thread); a Reader per matching
// thread.

class TernSubscriptions {
 public:
  static constexpr const char* kName = "tern";
  static constexpr bool kConcurrent = true;
  static constexpr int kBatch = kQuiescentEvery;  // matches per timing-loop step
  void subscribe(std::string_view filter, SubscriberId id) { trie_.subscribe(filter, id); }
  bool unsubscribe(std::string_view filter, SubscriberId id) {
    return trie_.unsubscribe(filter, id);
  }
  // Waits until everything retired so far is freed. REQUIRES: no Reader on this thread.
  void quiesce() { domain_.barrier(); }

  class Reader {
   public:
    explicit Reader(TernSubscriptions& owner) : trie_(owner.trie_), reader_(owner.domain_) {}
    std::size_t match(std::string_view topic) noexcept {
      trie_.match(topic, result_);
      return result_.size();
    }
    std::span<const SubscriberId> result() const noexcept { return result_.subscribers(); }
    void quiescent() noexcept { reader_.quiescent(); }
    void offline() noexcept { reader_.offline(); }
    void online() noexcept { reader_.online(); }

   private:
    const routing::SubscriptionTrie& trie_;
    sync::QsbrDomain::Reader reader_;
    routing::MatchResult result_;
  };

 private:
  sync::QsbrDomain domain_;  // declared first: outlives the trie
  routing::SubscriptionTrie trie_{domain_};
};

class LockedSubscriptions {
 public:
  static constexpr const char* kName = "shared_mutex_trie";
  static constexpr bool kConcurrent = true;
  static constexpr int kBatch = kQuiescentEvery;
  void subscribe(std::string_view filter, SubscriberId id) { trie_.subscribe(filter, id); }
  bool unsubscribe(std::string_view filter, SubscriberId id) {
    return trie_.unsubscribe(filter, id);
  }
  void quiesce() {}

  class Reader {
   public:
    explicit Reader(LockedSubscriptions& owner) : trie_(owner.trie_) {}
    std::size_t match(std::string_view topic) {
      trie_.match(topic, result_, scratch_);
      return result_.size();
    }
    std::span<const SubscriberId> result() const noexcept { return result_; }
    void quiescent() noexcept {}
    void offline() noexcept {}
    void online() noexcept {}

   private:
    const LockedTrie& trie_;
    LockedTrie::Scratch scratch_;
    std::vector<SubscriberId> result_;
  };

 private:
  LockedTrie trie_;
};

class NaiveSubscriptions {
 public:
  static constexpr const char* kName = "naive_scan";
  static constexpr bool kConcurrent = false;
  static constexpr int kBatch = 1;  // milliseconds per match at 1M: keep the timing loop short
  void subscribe(std::string_view filter, SubscriberId id) { scan_.subscribe(filter, id); }
  bool unsubscribe(std::string_view filter, SubscriberId id) {
    return scan_.unsubscribe(filter, id);
  }
  void quiesce() {}

  class Reader {
   public:
    explicit Reader(NaiveSubscriptions& owner) : scan_(owner.scan_) {}
    std::size_t match(std::string_view topic) {
      scan_.match(topic, result_);
      return result_.size();
    }
    std::span<const SubscriberId> result() const noexcept { return result_; }
    void quiescent() noexcept {}
    void offline() noexcept {}
    void online() noexcept {}

   private:
    NaiveScan& scan_;
    std::vector<SubscriberId> result_;
  };

 private:
  NaiveScan scan_;
};

// ---- Subscription data sets, built once, checked against the naive scan ---------------------

class SubscriptionFixture {
 public:
  SubscriptionFixture(FilterMix mix, std::size_t size) : data_(makeSubscriptionSet(mix, size)) {
    // Sample topics of every class the benchmarks visit, and what the naive scan says they match.
    const std::size_t perClass = std::clamp<std::size_t>(kVerifyBudget / 2 / size, 8, 500);
    for (std::size_t i = 0; i < std::min(perClass, data_.hits.size()); ++i)
      sample_.push_back(data_.hits[i]);
    for (std::size_t i = 0; i < std::min(perClass, data_.misses.size()); ++i)
      sample_.push_back(data_.misses[i]);
    NaiveSubscriptions& naive = *get<NaiveSubscriptions>();
    NaiveSubscriptions::Reader reader(naive);
    for (std::string_view topic : sample_) {
      reader.match(topic);
      expected_.push_back(sortedBits(reader.result()));
    }
  }

  const SubscriptionSet& data() const noexcept { return data_; }

  // The structure of type Impl holding the set, built and checked on first use; null (and
  // `error` set) when it disagrees with the naive scan.
  template <typename Impl>
  Impl* get(std::string* error = nullptr) {
    std::unique_ptr<Impl>& slot = slotOf<Impl>();
    if (!slot) {
      HeapCount count;
      slot = std::make_unique<Impl>();
      for (const Subscription& s : data_.subscriptions)
        slot->subscribe(s.filter, s.id);
      count.lap();
      slot->quiesce();  // frees the tables and arrays replaced while growing
      stats<Impl>() = count.stop();
      verified<Impl>() = expected_.empty() || check(*slot);
    }
    if (!verified<Impl>()) {
      if (error != nullptr) *error = std::string(Impl::kName) + " disagrees with the naive scan";
      return nullptr;
    }
    return slot.get();
  }

  // How building the structure of type Impl went. REQUIRES: get<Impl>() succeeded.
  template <typename Impl>
  BuildStats& stats() {
    if constexpr (std::is_same_v<Impl, TernSubscriptions>) return ternStats_;
    if constexpr (std::is_same_v<Impl, LockedSubscriptions>) return lockedStats_;
    if constexpr (std::is_same_v<Impl, NaiveSubscriptions>) return naiveStats_;
  }

 private:
  template <typename Impl>
  std::unique_ptr<Impl>& slotOf() {
    if constexpr (std::is_same_v<Impl, TernSubscriptions>) return tern_;
    if constexpr (std::is_same_v<Impl, LockedSubscriptions>) return locked_;
    if constexpr (std::is_same_v<Impl, NaiveSubscriptions>) return naive_;
  }
  template <typename Impl>
  bool& verified() {
    if constexpr (std::is_same_v<Impl, TernSubscriptions>) return ternOk_;
    if constexpr (std::is_same_v<Impl, LockedSubscriptions>) return lockedOk_;
    if constexpr (std::is_same_v<Impl, NaiveSubscriptions>) return naiveOk_;
  }
  template <typename Impl>
  bool check(Impl& impl) {
    typename Impl::Reader reader(impl);
    for (std::size_t i = 0; i < sample_.size(); ++i) {
      reader.match(sample_[i]);
      if (sortedBits(reader.result()) != expected_[i]) {
        std::fprintf(stderr, "%s: wrong matches for %.*s (%zu, expected %zu)\n", Impl::kName,
                     static_cast<int>(sample_[i].size()), sample_[i].data(), reader.result().size(),
                     expected_[i].size());
        return false;
      }
    }
    return true;
  }

  SubscriptionSet data_;
  std::vector<std::string_view> sample_;
  std::vector<std::vector<std::uint64_t>> expected_;
  std::unique_ptr<TernSubscriptions> tern_;
  std::unique_ptr<LockedSubscriptions> locked_;
  std::unique_ptr<NaiveSubscriptions> naive_;
  bool ternOk_ = false;
  bool lockedOk_ = false;
  bool naiveOk_ = true;  // the oracle itself
  BuildStats ternStats_;
  BuildStats lockedStats_;
  BuildStats naiveStats_;
};

// ---- Retained structures behind one interface -----------------------------------------------

class TernRetained {
 public:
  static constexpr const char* kName = "tern";
  void set(common::MessageRef message) { store_.set(std::move(message)); }
  bool erase(std::string_view topic) { return store_.erase(topic); }
  void quiesce() { domain_.barrier(); }
  class Reader {
   public:
    explicit Reader(TernRetained& owner) : store_(owner.store_), reader_(owner.domain_) {}
    void forEachMatch(std::string_view filter,
                      common::FunctionRef<void(const common::Message&)> visit) {
      store_.forEachMatch(filter, visit);
    }
    void quiescent() noexcept { reader_.quiescent(); }
    void offline() noexcept { reader_.offline(); }
    void online() noexcept { reader_.online(); }

   private:
    const routing::RetainedStore& store_;
    sync::QsbrDomain::Reader reader_;
  };

 private:
  sync::QsbrDomain domain_;
  routing::RetainedStore store_{domain_};
};

template <typename Store, const char* kStoreName>
class BaselineRetained {
 public:
  static constexpr const char* kName = kStoreName;
  void set(common::MessageRef message) { store_.set(std::move(message)); }
  bool erase(std::string_view topic) { return store_.erase(topic); }
  void quiesce() {}
  class Reader {
   public:
    explicit Reader(BaselineRetained& owner) : store_(owner.store_) {}
    void forEachMatch(std::string_view filter,
                      common::FunctionRef<void(const common::Message&)> visit) {
      store_.forEachMatch(filter, visit);
    }
    void quiescent() noexcept {}
    void offline() noexcept {}
    void online() noexcept {}

   private:
    const Store& store_;
  };

 private:
  Store store_;
};
constexpr char kLockedName[] = "shared_mutex_trie";
constexpr char kNaiveName[] = "naive_scan";
using LockedRetainedStore = BaselineRetained<LockedRetained, kLockedName>;
using NaiveRetainedStore = BaselineRetained<NaiveRetained, kNaiveName>;

constexpr std::string_view kPayload = "{\"t\":21.5,\"u\":\"C\"}";

class RetainedFixture {
 public:
  explicit RetainedFixture(std::size_t size) : data_(makeRetainedSet(size)) {
    filters_ = retainedFilters();
    NaiveRetainedStore& naive = *get<NaiveRetainedStore>();
    for (const RetainedFilter& f : filters_)
      expected_.push_back(matchedTopics(naive, f.filter));
  }

  const RetainedSet& data() const noexcept { return data_; }
  const std::vector<RetainedFilter>& filters() const noexcept { return filters_; }

  template <typename Impl>
  Impl* get(std::string* error = nullptr) {
    std::unique_ptr<Impl>& slot = slotOf<Impl>();
    if (!slot) {
      HeapCount count;
      slot = std::make_unique<Impl>();
      messageBytes_ = 0;
      for (std::size_t i = 0; i < data_.topics.size(); ++i) {
        // The messages are not the store's structure: made with counting off, reported apart.
        gCountHeap.store(false);
        common::MessageRef message = common::Message::make(data_.topics[i], kPayload, true);
        messageBytes_ +=
            static_cast<double>(malloc_usable_size(const_cast<common::Message*>(message.get())));
        gCountHeap.store(true);
        slot->set(std::move(message));
      }
      count.lap();
      slot->quiesce();
      stats<Impl>() = count.stop();
      bool ok = true;
      for (std::size_t i = 0; i < expected_.size() && ok; ++i)
        ok = matchedTopics(*slot, filters_[i].filter) == expected_[i];
      verified<Impl>() = ok;
    }
    if (!verified<Impl>()) {
      if (error != nullptr) *error = std::string(Impl::kName) + " disagrees with the naive scan";
      return nullptr;
    }
    return slot.get();
  }

  // Heap bytes of the messages of one store (each block as the allocator rounds it).
  double messageBytes() const noexcept { return messageBytes_; }
  template <typename Impl>
  BuildStats& stats() {
    if constexpr (std::is_same_v<Impl, TernRetained>) return ternStats_;
    if constexpr (std::is_same_v<Impl, LockedRetainedStore>) return lockedStats_;
    if constexpr (std::is_same_v<Impl, NaiveRetainedStore>) return naiveStats_;
  }

 private:
  template <typename Impl>
  std::vector<std::string> matchedTopics(Impl& impl, std::string_view filter) {
    typename Impl::Reader reader(impl);
    std::vector<std::string> topics;
    reader.forEachMatch(filter, [&](const common::Message& m) { topics.emplace_back(m.topic()); });
    std::sort(topics.begin(), topics.end());
    return topics;
  }
  template <typename Impl>
  std::unique_ptr<Impl>& slotOf() {
    if constexpr (std::is_same_v<Impl, TernRetained>) return tern_;
    if constexpr (std::is_same_v<Impl, LockedRetainedStore>) return locked_;
    if constexpr (std::is_same_v<Impl, NaiveRetainedStore>) return naive_;
  }
  template <typename Impl>
  bool& verified() {
    if constexpr (std::is_same_v<Impl, TernRetained>) return ternOk_;
    if constexpr (std::is_same_v<Impl, LockedRetainedStore>) return lockedOk_;
    if constexpr (std::is_same_v<Impl, NaiveRetainedStore>) return naiveOk_;
  }

  RetainedSet data_;
  std::vector<RetainedFilter> filters_;
  std::vector<std::vector<std::string>> expected_;
  std::unique_ptr<TernRetained> tern_;
  std::unique_ptr<LockedRetainedStore> locked_;
  std::unique_ptr<NaiveRetainedStore> naive_;
  bool ternOk_ = false;
  bool lockedOk_ = false;
  bool naiveOk_ = true;
  BuildStats ternStats_;
  BuildStats lockedStats_;
  BuildStats naiveStats_;
  double messageBytes_ = 0;
};

// One subscription set and one retained set at a time: the 1M sets and the structures built
// from them take hundreds of megabytes each. Benchmark threads of one run share them.
class FixtureCache {
 public:
  template <typename Impl>
  std::pair<SubscriptionFixture*, Impl*> subscriptions(FilterMix mix, std::size_t size,
                                                       std::string* error) {
    std::lock_guard lock(mutex_);
    retained_.reset();
    if (!subscriptions_ || subscriptionsKey_ != std::make_pair(mix, size)) {
      subscriptions_.reset();
      subscriptions_ = std::make_unique<SubscriptionFixture>(mix, size);
      subscriptionsKey_ = {mix, size};
    }
    return {subscriptions_.get(), subscriptions_->get<Impl>(error)};
  }

  template <typename Impl>
  std::pair<RetainedFixture*, Impl*> retained(std::size_t size, std::string* error) {
    std::lock_guard lock(mutex_);
    subscriptions_.reset();
    if (!retained_ || retainedSize_ != size) {
      retained_.reset();
      retained_ = std::make_unique<RetainedFixture>(size);
      retainedSize_ = size;
    }
    return {retained_.get(), retained_->get<Impl>(error)};
  }

 private:
  std::mutex mutex_;
  std::unique_ptr<SubscriptionFixture> subscriptions_;
  std::pair<FilterMix, std::size_t> subscriptionsKey_{};
  std::unique_ptr<RetainedFixture> retained_;
  std::size_t retainedSize_ = 0;
};

FixtureCache& cache() {
  static FixtureCache instance;
  return instance;
}

// ---- Writers and background readers ---------------------------------------------------------

// A rolling window of churn subscriptions: step() subscribes one new (filter, session) and
// unsubscribes the oldest, so the set keeps its size; drain() restores the original set.
template <typename Impl>
class ChurnWindow {
 public:
  ChurnWindow(Impl& impl, const std::vector<std::string>& filters)
      : impl_(impl), filters_(filters) {}
  void fill() {
    while (next_ - first_ < kChurnWindow)
      add();
  }
  void step() {
    add();
    remove();
  }
  void drain() {
    while (first_ < next_)
      remove();
  }

 private:
  void add() {
    impl_.subscribe(filters_[next_ % filters_.size()], churnId(next_));
    ++next_;
  }
  void remove() {
    impl_.unsubscribe(filters_[first_ % filters_.size()], churnId(first_));
    ++first_;
  }
  Impl& impl_;
  const std::vector<std::string>& filters_;
  std::uint64_t first_ = 0;
  std::uint64_t next_ = 0;
};

// A thread that subscribes and unsubscribes at a fixed rate (catching up when it falls behind),
// as sessions come and go beside the readers. Each operation takes the structure's write path
// on its own, as one SUBSCRIBE or UNSUBSCRIBE packet would.
template <typename Impl>
class ChurnWriter {
 public:
  ChurnWriter(Impl& impl, const std::vector<std::string>& filters, double pairsPerSecond)
      : window_(impl, filters), rate_(pairsPerSecond) {
    window_.fill();
    thread_ = std::thread([this] { run(); });
  }
  ~ChurnWriter() { stop(); }
  void stop() {
    if (!thread_.joinable()) return;
    stop_.store(true, std::memory_order_relaxed);
    thread_.join();
    window_.drain();
  }
  // Subscribe and unsubscribe operations per second the writer achieved.
  double opsPerSecond() const { return achieved_; }

 private:
  void run() {
    using Clock = std::chrono::steady_clock;
    const auto start = Clock::now();
    std::uint64_t pairs = 0;
    // Relaxed: a flag, no data passes through it.
    while (!stop_.load(std::memory_order_relaxed)) {
      const double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
      const auto due = static_cast<std::uint64_t>(elapsed * rate_);
      for (; pairs < due && !stop_.load(std::memory_order_relaxed); ++pairs)
        window_.step();
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
    achieved_ = 2.0 * static_cast<double>(pairs) / seconds;
  }

  ChurnWindow<Impl> window_;
  const double rate_;
  std::atomic<bool> stop_{false};
  double achieved_ = 0;  // written by the thread, read after join()
  std::thread thread_;
};

// Threads that match topics back to back until stopped.
template <typename Impl>
class BackgroundReaders {
 public:
  BackgroundReaders(Impl& impl, const TopicList& topics, int count) {
    for (int t = 0; t < count; ++t) {
      threads_.emplace_back([this, &impl, &topics, t, count] {
        typename Impl::Reader reader(impl);
        std::size_t i = topics.size() * t / count;
        std::uint64_t done = 0;
        // Relaxed: a flag, no data passes through it.
        while (!stop_.load(std::memory_order_relaxed)) {
          for (int n = 0; n < kQuiescentEvery; ++n) {
            reader.match(topics[i]);
            if (++i == topics.size()) i = 0;
          }
          reader.quiescent();
          done += kQuiescentEvery;
        }
        matches_.fetch_add(done, std::memory_order_relaxed);
      });
    }
  }
  ~BackgroundReaders() { stop(); }
  std::uint64_t stop() {
    stop_.store(true, std::memory_order_relaxed);
    for (std::thread& t : threads_)
      if (t.joinable()) t.join();
    return matches_.load(std::memory_order_relaxed);
  }

 private:
  std::atomic<bool> stop_{false};
  std::atomic<std::uint64_t> matches_{0};
  std::vector<std::thread> threads_;
};

// ---- Benchmarks: subscriptions --------------------------------------------------------------

enum class Queries { kHits, kHot, kMisses };

template <typename Impl>
void matchBench(benchmark::State& state, FilterMix mix, std::size_t size, Queries queries,
                bool churn) {
  std::string error;
  auto [fixture, impl] = cache().subscriptions<Impl>(mix, size, &error);
  if (impl == nullptr) return fail(state, error);
  const TopicList& topics =
      queries == Queries::kMisses ? fixture->data().misses : fixture->data().hits;
  const std::size_t count =
      queries == Queries::kHot ? std::min(kHotTopics, topics.size()) : topics.size();
  std::optional<ChurnWriter<Impl>> writer;
  if (churn && state.thread_index() == 0)
    writer.emplace(*impl, fixture->data().churnFilters, kChurnPairsPerSecond);
  {
    typename Impl::Reader reader(*impl);
    // Offline until the timing loop starts: threads wait for each other at its start, and an
    // online reader that waits would hold up the grace periods (and so the other threads'
    // registration).
    reader.offline();
    bool online = false;
    // Threads start apart so that they do not walk the same topics in step.
    std::size_t i = count * state.thread_index() / state.threads();
    std::uint64_t matches = 0;
    while (state.KeepRunningBatch(Impl::kBatch)) {
      if (!online) {
        reader.online();
        online = true;
      }
      for (int n = 0; n < Impl::kBatch; ++n) {
        matches += reader.match(topics[i]);
        if (++i == count) i = 0;
      }
      reader.quiescent();
    }
    reader.offline();
    state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
    state.counters["matches"] =
        benchmark::Counter(static_cast<double>(matches) /
                               static_cast<double>(std::max<std::int64_t>(1, state.iterations())),
                           benchmark::Counter::kAvgThreads);
  }
  if (writer) {
    writer->stop();
    state.counters["writer_ops_per_s"] = writer->opsPerSecond();
  }
}

template <typename Impl>
void subUnsubBench(benchmark::State& state, FilterMix mix, std::size_t size, int readers) {
  std::string error;
  auto [fixture, impl] = cache().subscriptions<Impl>(mix, size, &error);
  if (impl == nullptr) return fail(state, error);
  std::optional<BackgroundReaders<Impl>> background;
  if (readers > 0) background.emplace(*impl, fixture->data().hits, readers);
  ChurnWindow<Impl> window(*impl, fixture->data().churnFilters);
  window.fill();
  for (auto _ : state)
    window.step();
  window.drain();
  state.SetItemsProcessed(2 * state.iterations());  // one subscribe and one unsubscribe each
  if (background) {
    const std::uint64_t matched = background->stop();
    state.counters["reader_matches"] = static_cast<double>(matched);
  }
}

// Reports what building the set's structure cost (the fixture counts it when it builds the
// structure): heap bytes per subscription, and the bulk load's time as the iteration time.
template <typename Impl>
void memoryBench(benchmark::State& state, FilterMix mix, std::size_t size) {
  std::string error;
  auto [fixture, impl] = cache().subscriptions<Impl>(mix, size, &error);
  if (impl == nullptr) return fail(state, error);
  const BuildStats stats = fixture->template stats<Impl>();
  for (auto _ : state)
    state.SetIterationTime(stats.seconds);
  const SubscriptionSet& data = fixture->data();
  const double n = static_cast<double>(data.subscriptions.size());
  state.counters["subscribe_per_s"] = n / stats.seconds;
  state.counters["bytes_per_sub"] = stats.heapBytes / n;
  state.counters["filter_text_per_sub"] = static_cast<double>(data.filterTextBytes) / n;
  state.counters["bytes_per_sub_excl_text"] =
      (stats.heapBytes - static_cast<double>(data.filterTextBytes)) / n;
}

// ---- Benchmarks: retained messages ----------------------------------------------------------

template <typename Impl>
void retainedMatchBench(benchmark::State& state, std::size_t size, std::size_t filterIndex) {
  std::string error;
  auto [fixture, impl] = cache().retained<Impl>(size, &error);
  if (impl == nullptr) return fail(state, error);
  const std::string& filter = fixture->filters()[filterIndex].filter;
  typename Impl::Reader reader(*impl);
  std::uint64_t matches = 0;
  std::uint64_t payloadBytes = 0;
  for (auto _ : state) {
    // A SUBSCRIBE replays what it finds: touch each message as the sender would.
    reader.forEachMatch(filter, [&](const common::Message& m) {
      ++matches;
      payloadBytes += m.contents().size();
    });
    reader.quiescent();
  }
  benchmark::DoNotOptimize(payloadBytes);
  state.SetItemsProcessed(static_cast<std::int64_t>(matches));  // items = messages found
  state.counters["matches"] =
      benchmark::Counter(static_cast<double>(matches), benchmark::Counter::kAvgIterations);
}

template <typename Impl>
void retainedReplaceBench(benchmark::State& state, std::size_t size) {
  std::string error;
  auto [fixture, impl] = cache().retained<Impl>(size, &error);
  if (impl == nullptr) return fail(state, error);
  const TopicList& topics = fixture->data().topics;
  std::size_t i = 0;
  for (auto _ : state) {
    impl->set(common::Message::make(topics[i], kPayload, true));
    if (++i == topics.size()) i = 0;
  }
  state.SetItemsProcessed(state.iterations());
}

// Sets a retained message on a new topic and deletes the one set kChurnWindow steps earlier.
template <typename Impl>
void retainedSetDeleteBench(benchmark::State& state, std::size_t size) {
  std::string error;
  auto [fixture, impl] = cache().retained<Impl>(size, &error);
  if (impl == nullptr) return fail(state, error);
  const TopicList& extra = fixture->data().extra;
  std::uint64_t first = 0;
  std::uint64_t next = 0;
  auto add = [&] {
    impl->set(common::Message::make(extra[next++ % extra.size()], kPayload, true));
  };
  auto remove = [&] { impl->erase(extra[first++ % extra.size()]); };
  while (next - first < std::min(kChurnWindow, extra.size()))
    add();
  for (auto _ : state) {
    add();
    remove();
  }
  while (first < next)
    remove();
  state.SetItemsProcessed(2 * state.iterations());
}

template <typename Impl>
void retainedMemoryBench(benchmark::State& state, std::size_t size) {
  std::string error;
  auto [fixture, impl] = cache().retained<Impl>(size, &error);
  if (impl == nullptr) return fail(state, error);
  const BuildStats stats = fixture->template stats<Impl>();
  for (auto _ : state)
    state.SetIterationTime(stats.seconds);
  const double n = static_cast<double>(fixture->data().topics.size());
  state.counters["set_per_s"] = n / stats.seconds;
  state.counters["bytes_per_msg"] = stats.heapBytes / n;
  state.counters["message_bytes_per_msg"] = fixture->messageBytes() / n;
}

// ---- The machine --------------------------------------------------------------------------

// One dependent load per iteration, each to a random cache line of a buffer far larger than the
// caches (a random cyclic permutation): the latency of one memory access that misses every cache
// and, mostly, the TLB. It sets the scale for the 1M-entry benchmarks, whose cold levels cost a
// few of these each, and it moves with the load other processes put on the machine.
struct alignas(64) ChaseLine {
  const ChaseLine* next;
};

// Built once per run (shuffling a quarter of a gigabyte takes a while).
const std::vector<ChaseLine>& chaseLines(std::size_t bytes) {
  static const std::vector<ChaseLine> lines = [bytes] {
    const std::size_t count = bytes / sizeof(ChaseLine);
    std::vector<ChaseLine> result(count);
    std::vector<std::uint32_t> order(count);
    for (std::size_t i = 0; i < count; ++i)
      order[i] = static_cast<std::uint32_t>(i);
    Rng rng(42);
    for (std::size_t i = count; i > 1; --i)
      std::swap(order[i - 1], order[rng.below(i)]);
    for (std::size_t i = 0; i < count; ++i)
      result[order[i]].next = &result[order[(i + 1) % count]];
    return result;
  }();
  return lines;
}

void memoryLatencyBench(benchmark::State& state, std::size_t bytes) {
  const ChaseLine* p = &chaseLines(bytes).front();
  for (auto _ : state) {
    p = p->next;
    benchmark::DoNotOptimize(p);
  }
  state.SetItemsProcessed(state.iterations());
}

// ---- Registration ---------------------------------------------------------------------------

std::string nameOf(const char* impl, std::string_view op, std::size_t size) {
  return std::string(impl) + "/" + std::string(op) + "/" + std::to_string(size);
}

benchmark::internal::Benchmark* add(const std::string& name,
                                    std::function<void(benchmark::State&)> body) {
  return benchmark::RegisterBenchmark(name.c_str(),
                                      [body](benchmark::State& state) { body(state); })
      ->Unit(benchmark::kNanosecond);
}

// Calls f.template operator()<Impl>() for each subscription structure, tern first; with
// concurrentOnly, only for those that readers and writers may use at once.
template <typename Impl, typename F>
void visitSubscriptions(F& f, bool concurrentOnly) {
  if (!concurrentOnly || Impl::kConcurrent) f.template operator()<Impl>();
}
template <typename F>
void forEachSubscriptions(F&& f, bool concurrentOnly = false) {
  visitSubscriptions<TernSubscriptions>(f, concurrentOnly);
  visitSubscriptions<LockedSubscriptions>(f, concurrentOnly);
  visitSubscriptions<NaiveSubscriptions>(f, concurrentOnly);
}
template <typename F>
void forEachRetained(F&& f) {
  f.template operator()<TernRetained>();
  f.template operator()<LockedRetainedStore>();
  f.template operator()<NaiveRetainedStore>();
}

void registerAll(const Sizes& sizes) {
  add("machine/memory_latency/" + std::to_string(sizes.latencyBytes >> 20) + "MiB",
      [bytes = sizes.latencyBytes](benchmark::State& s) { memoryLatencyBench(s, bytes); });
  for (std::size_t size : sizes.subscriptions) {
    // IoT fleet, exact filters: one match per hit.
    forEachSubscriptions([&]<typename Impl>() {
      add(nameOf(Impl::kName, "match_exact", size), [=](benchmark::State& s) {
        matchBench<Impl>(s, FilterMix::kExact, size, Queries::kHits, false);
      });
    });
    if (size >= sizes.hotFrom) {
      forEachSubscriptions([&]<typename Impl>() {
        add(nameOf(Impl::kName, "match_exact_hot", size), [=](benchmark::State& s) {
          matchBench<Impl>(s, FilterMix::kExact, size, Queries::kHot, false);
        });
      });
    }
    forEachSubscriptions([&]<typename Impl>() {
      add(nameOf(Impl::kName, "match_exact_miss", size), [=](benchmark::State& s) {
        matchBench<Impl>(s, FilterMix::kExact, size, Queries::kMisses, false);
      });
    });
    forEachSubscriptions([&]<typename Impl>() {
      add(nameOf(Impl::kName, "sub_unsub_exact", size),
          [=](benchmark::State& s) { subUnsubBench<Impl>(s, FilterMix::kExact, size, 0); });
    });
    if (size == sizes.memory) {
      forEachSubscriptions([&]<typename Impl>() {
        add(nameOf(Impl::kName, "memory_exact", size),
            [=](benchmark::State& s) { memoryBench<Impl>(s, FilterMix::kExact, size); })
            ->Iterations(1)
            ->Repetitions(1)
            ->UseManualTime()
            ->Unit(benchmark::kMillisecond);
      });
    }
  }
  for (std::size_t size : sizes.subscriptions) {
    forEachSubscriptions([&]<typename Impl>() {
      add(nameOf(Impl::kName, "match_flat", size), [=](benchmark::State& s) {
        matchBench<Impl>(s, FilterMix::kFlat, size, Queries::kHits, false);
      });
    });
  }
  for (std::size_t size : sizes.subscriptions) {
    forEachSubscriptions([&]<typename Impl>() {
      add(nameOf(Impl::kName, "match_mix", size), [=](benchmark::State& s) {
        matchBench<Impl>(s, FilterMix::kMixed, size, Queries::kHits, false);
      });
    });
    if (size >= sizes.hotFrom) {
      forEachSubscriptions([&]<typename Impl>() {
        add(nameOf(Impl::kName, "match_mix_hot", size), [=](benchmark::State& s) {
          matchBench<Impl>(s, FilterMix::kMixed, size, Queries::kHot, false);
        });
      });
    }
    forEachSubscriptions([&]<typename Impl>() {
      add(nameOf(Impl::kName, "sub_unsub_mix", size),
          [=](benchmark::State& s) { subUnsubBench<Impl>(s, FilterMix::kMixed, size, 0); });
    });
    if (size == sizes.threaded) {
      for (bool churn : {false, true}) {
        forEachSubscriptions(
            [&]<typename Impl>() {
              auto* b =
                  add(nameOf(Impl::kName, churn ? "match_mix_churn" : "match_mix_readers", size),
                      [=](benchmark::State& s) {
                        matchBench<Impl>(s, FilterMix::kMixed, size, Queries::kHits, churn);
                      });
              for (int threads : sizes.readerThreads)
                b->Threads(threads);
              b->UseRealTime();
            },
            true);
      }
      forEachSubscriptions(
          [&]<typename Impl>() {
            add(nameOf(Impl::kName, "sub_unsub_mix_readers", size), [=](benchmark::State& s) {
              subUnsubBench<Impl>(s, FilterMix::kMixed, size, 1);
            })->UseRealTime();
          },
          true);
    }
    if (size == sizes.memory) {
      forEachSubscriptions([&]<typename Impl>() {
        add(nameOf(Impl::kName, "memory_mix", size),
            [=](benchmark::State& s) { memoryBench<Impl>(s, FilterMix::kMixed, size); })
            ->Iterations(1)
            ->Repetitions(1)
            ->UseManualTime()
            ->Unit(benchmark::kMillisecond);
      });
    }
  }
  for (std::size_t size : sizes.subscriptions) {
    forEachSubscriptions([&]<typename Impl>() {
      add(nameOf(Impl::kName, "match_wildcard", size), [=](benchmark::State& s) {
        matchBench<Impl>(s, FilterMix::kWildcard, size, Queries::kHits, false);
      });
    });
  }
  for (std::size_t size : sizes.fanout) {
    forEachSubscriptions([&]<typename Impl>() {
      add(nameOf(Impl::kName, "match_fanout", size), [=](benchmark::State& s) {
        matchBench<Impl>(s, FilterMix::kFanout, size, Queries::kHits, false);
      })->Unit(benchmark::kMicrosecond);
    });
    forEachSubscriptions([&]<typename Impl>() {
      add(nameOf(Impl::kName, "sub_unsub_fanout", size),
          [=](benchmark::State& s) { subUnsubBench<Impl>(s, FilterMix::kFanout, size, 0); });
    });
  }
  const std::vector<RetainedFilter> filters = retainedFilters();
  for (std::size_t size : sizes.retained) {
    for (std::size_t f = 0; f < filters.size(); ++f) {
      forEachRetained([&]<typename Impl>() {
        add(nameOf(Impl::kName, "retained_" + std::string(filters[f].label), size),
            [=](benchmark::State& s) { retainedMatchBench<Impl>(s, size, f); })
            ->Unit(benchmark::kMicrosecond);
      });
    }
    forEachRetained([&]<typename Impl>() {
      add(nameOf(Impl::kName, "retained_replace", size),
          [=](benchmark::State& s) { retainedReplaceBench<Impl>(s, size); });
    });
    forEachRetained([&]<typename Impl>() {
      add(nameOf(Impl::kName, "retained_set_delete", size),
          [=](benchmark::State& s) { retainedSetDeleteBench<Impl>(s, size); });
    });
    if (size == sizes.retained.back()) {
      forEachRetained([&]<typename Impl>() {
        add(nameOf(Impl::kName, "memory_retained", size),
            [=](benchmark::State& s) { retainedMemoryBench<Impl>(s, size); })
            ->Iterations(1)
            ->Repetitions(1)
            ->UseManualTime()
            ->Unit(benchmark::kMillisecond);
      });
    }
  }
}

}  // namespace
}  // namespace tern::bench

int main(int argc, char** argv) {
  // Our own flag, taken out before Google Benchmark parses the rest.
  bool tiny = false;
  std::vector<char*> args;
  for (int i = 0; i < argc; ++i) {
    if (std::strcmp(argv[i], "--tern_tiny") == 0) {
      tiny = true;
    } else {
      args.push_back(argv[i]);
    }
  }
  int count = static_cast<int>(args.size());
  benchmark::Initialize(&count, args.data());
  if (benchmark::ReportUnrecognizedArguments(count, args.data())) return 1;
  tern::bench::registerAll(tiny ? tern::bench::tinySizes() : tern::bench::Sizes{});
  benchmark::AddCustomContext("tern_sizes", tiny ? "tiny" : "full");
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return tern::bench::gFailed.load() ? 1 : 0;
}
