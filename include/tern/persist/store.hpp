// persist::Store: tern's durable state (retained messages, persistent MQTT sessions, their queues)
// in an embedded RocksDB, written by one persistence thread with group commit.
//
// Ownership: one Store per broker process, owned by whoever opens it (the broker's main thread,
// later BrokerContext); it owns the RocksDB handle, the request queue, one completion queue per
// producer and the persistence thread. Producers (worker event loops) borrow it for the Store's
// lifetime.
//
// Lifecycle and who may call what:
//   1. open()                        - the owner (start-up). Never throws; an error is a string.
//   2. load*(), writeNow()           - the owner, before start(). Read / write the DB directly.
//   3. setWaker(p, f)                - the owner, before start(), once per producer that wants one.
//   4. start()                       - the owner: launches the persistence thread.
//   5. tryPush(request)              - any producer thread, concurrently; also before start().
//      popCompletions(p, ...)        - producer p's thread only (each completion queue has one
//                                      consumer); the persistence thread is its one producer.
//      counters()                    - any thread (relaxed reads, for /metrics).
//   6. close() / the destructor      - the owner, after every producer has stopped pushing:
//                                      drains and commits everything queued, syncs the log,
//                                      posts the last completions, joins the thread, closes the DB.
// The persistence thread alone writes to the DB once started.
//
// Durability contract: a request is one atomic unit (all its puts and deletes, or none, survive a
// crash). A batch is one atomic write, so its writes are folded per key before it is written: a
// key is written once, with its last value, and a key put as new (putNew) and erased within one
// batch is not written at all. Sync mode: its completion is posted only after the batch holding it was written with
// WriteOptions::sync (one fdatasync of the log for every request the thread found queued: group
// commit), so an ok completion means the request survives kill -9 and power loss (as far as the
// disk honours fdatasync). Async mode: completions are posted once the batch is in the log's OS
// buffer (survives kill -9 of the process, not a machine crash); the log is synced every
// flushInterval while there are unsynced writes, so a machine crash loses at most about that much.
//
// Errors: a batch whose write fails completes every request in it with kStorageError; the thread
// logs at most once per second and keeps committing later batches (calling DB::Resume first so
// that RocksDB leaves its read-only error state once the disk accepts writes again).
//
// Recovery at open: the WAL is replayed with WALRecoveryMode::kPointInTimeRecovery, so a log tail
// torn by a crash is cut at the last complete batch; anything else that prevents opening (a
// damaged CURRENT/MANIFEST/SST file) makes open() fail with a message naming the directory and the
// repair command, never an empty store.
#pragma once

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "tern/common/cache_line.hpp"
#include "tern/common/function_ref.hpp"
#include "tern/persist/records.hpp"

namespace rocksdb {
class DB;
}

namespace tern::persist {

class CommitLoop;

enum class Durability : std::uint8_t { kSync, kAsync };

// Test seam: makes the next N batch writes fail as a storage error would, without touching the
// disk, or every write while a file exists (the broker's hidden --test-storage-faults, so that a
// functional test can switch failures on and off from outside). Any thread may arm the count;
// the file is set by the owner before the store starts; the persistence thread consumes both.
struct WriteOp;

class FaultSeam {
 public:
  // Arms `count` failures (replacing what is left). Thread-safe.
  void failNextWrites(int count) noexcept { remaining_.store(count, std::memory_order_relaxed); }
  // Every write fails while `path` exists (one access() per batch). Before the store starts.
  void failWhileExists(std::string path) { path_ = std::move(path); }
  // The process kills itself (SIGKILL, as kill -9 would) instead of writing the first batch that
  // puts a key starting with `prefix`, 200 ms after it took the batch (what the workers send
  // meanwhile reaches their clients). Before the store starts.
  void crashBeforePutting(std::string prefix) { crashPrefix_ = std::move(prefix); }
  // Persistence thread, for each write of a batch before the batch is written.
  void checkCrash(const WriteOp& op) const noexcept;
  // Persistence thread: true when this write must fail (and counts it). Relaxed is enough: the
  // seam carries no data, and the compare-exchange makes each armed failure be taken once.
  bool takeFailure() noexcept {
    if (!path_.empty() && ::access(path_.c_str(), F_OK) == 0) return true;
    int n = remaining_.load(std::memory_order_relaxed);
    while (n > 0) {
      if (remaining_.compare_exchange_weak(n, n - 1, std::memory_order_relaxed)) return true;
    }
    return false;
  }

 private:
  std::atomic<int> remaining_{0};
  std::string path_;         // constant once the store started
  std::string crashPrefix_;  // constant once the store started
};

struct StoreOptions {
  Durability durability = Durability::kSync;
  // Async mode: the longest a write stays in the log's OS buffer without fdatasync.
  std::chrono::milliseconds flushInterval{50};
  // Async mode: the shortest time between two batch writes while requests keep coming (capped at
  // flushInterval). The first request after a quiet spell is written at once; under load a batch
  // gathers what arrives meanwhile, so the thread writes (a write(2) of the log) and wakes its
  // producers about once per interval instead of once per handful of requests, and more of a
  // batch's writes cancel out (a queue entry created and acknowledged within it). What a kill -9
  // can lose in async mode (acknowledged but not yet written) grows by up to this much. Sync mode
  // needs no such wait: a batch gathers during the previous batch's fdatasync.
  std::chrono::microseconds asyncBatchInterval{1000};
  // Requests queued and not yet taken by the persistence thread; past it tryPush refuses, so a
  // producer stops reading its sockets and TCP holds its publishers back. Memory is bounded by
  // capacity x request size.
  std::size_t queueCapacity = 65536;
  // Producers (completion queues), numbered 0..producers-1 by CompletionToken::producer.
  std::uint32_t producers = 1;
  // The most requests one batch takes: bounds a batch's memory and the latency of the first
  // request in it; larger batches amortize the fdatasync further.
  std::size_t maxRequestsPerBatch = 8192;
  // A batch is refused (a storage error, kStorageError) rather than written when the file
  // system would keep fewer free bytes than this (and twice the batch): a full disk is answered
  // cleanly and leaves room for RocksDB's own flushes and compactions. 0: no check.
  std::uint64_t minFreeBytes = std::uint64_t{16} << 20;
  FaultSeam* faults = nullptr;  // borrowed; tests only
};

// Names the request a completion answers: the producer whose completion queue receives it and a
// value the producer chose (a connection and packet id, a sequence number, ...).
struct CompletionToken {
  std::uint32_t producer = 0;
  std::uint64_t cookie = 0;
};

enum class WriteStatus : std::uint8_t { kOk, kStorageError };

struct Completion {
  std::uint64_t cookie = 0;
  WriteStatus status = WriteStatus::kOk;
};

struct WriteOp {
  enum class Kind : std::uint8_t { kPut, kErase, kEraseRange };
  Kind kind = Kind::kPut;
  // kPut: nothing was ever stored under `key` before (a fresh queue sequence or message id), so a
  // batch that also erases the key may drop both writes (see WriteCoalescer).
  bool newKey = false;
  std::string key;    // kEraseRange: the first key erased
  std::string value;  // kPut: the value; kEraseRange: the first key kept after the range
};

// One atomic unit of writes and the token of its completion. Built by a producer, moved into the
// store, consumed by the persistence thread.
class WriteRequest {
 public:
  WriteRequest() = default;
  explicit WriteRequest(CompletionToken token) : token_(token) {}

  void put(std::string key, std::string value) {
    ops_.push_back({WriteOp::Kind::kPut, false, std::move(key), std::move(value)});
  }
  // A put under a key nothing was ever stored under (WriteOp::newKey). The caller guarantees it:
  // a wrong claim could leave an older value on disk that a later erase in the batch should have
  // removed.
  void putNew(std::string key, std::string value) {
    ops_.push_back({WriteOp::Kind::kPut, true, std::move(key), std::move(value)});
  }
  void erase(std::string key) {
    ops_.push_back({WriteOp::Kind::kErase, false, std::move(key), {}});
  }
  void eraseRange(std::string first, std::string end) {
    ops_.push_back({WriteOp::Kind::kEraseRange, false, std::move(first), std::move(end)});
  }

  // Puts a record under keyFor(record).
  template <typename Record>
  void put(const Record& record) {
    put(keyFor(record), encoded(record));
  }
  template <typename Record>
  void putNew(const Record& record) {
    putNew(keyFor(record), encoded(record));
  }
  void eraseRetained(std::string_view topic) { erase(retainedKey(topic)); }
  void eraseMessage(std::uint64_t id) { erase(messageKey(id)); }
  void eraseQueueEntry(std::string_view clientId, std::uint64_t sequence) {
    erase(queueKey(clientId, sequence));
  }
  void eraseInbound(std::string_view clientId, std::uint16_t packetId) {
    erase(inboundKey(clientId, packetId));
  }
  // The session record, its whole queue and its inbound ids (two range deletions). Messages are
  // not touched: the caller erases those no other queue references.
  void eraseSession(std::string_view clientId) {
    erase(sessionKey(clientId));
    std::string q = queuePrefix(clientId);
    std::string qEnd = prefixEnd(q);
    eraseRange(std::move(q), std::move(qEnd));
    std::string i = inboundPrefix(clientId);
    std::string iEnd = prefixEnd(i);
    eraseRange(std::move(i), std::move(iEnd));
  }

  const CompletionToken& token() const noexcept { return token_; }
  void setToken(CompletionToken token) noexcept { token_ = token; }
  const std::vector<WriteOp>& ops() const noexcept { return ops_; }

 private:
  CompletionToken token_;
  std::vector<WriteOp> ops_;
};

// Counters for /metrics. Every field is a relaxed atomic: each is an independent statistic that
// orders nothing else, so a reader may see one a little ahead of another, never a torn value.
struct StoreCounters {
  // Written by producers (and the persistence thread for queueDepth): lines of their own, so
  // pushes do not invalidate the persistence thread's counters below.
  common::CacheAligned<std::atomic<std::uint64_t>> queueDepth;  // queued, not yet taken
  common::CacheAligned<std::atomic<std::uint64_t>> refused;     // tryPush calls refused (full)
  // Written by the persistence thread only.
  std::atomic<std::uint64_t> batches{0};           // batches written (ok or not)
  std::atomic<std::uint64_t> commits{0};           // requests completed ok
  std::atomic<std::uint64_t> failedRequests{0};    // requests completed with kStorageError
  std::atomic<std::uint64_t> errors{0};            // batch writes or syncs that failed
  std::atomic<std::uint64_t> syncs{0};             // log syncs (sync-mode writes and async flushes)
  std::atomic<std::uint64_t> lastCommitNanos{0};   // duration of the last batch write
  std::atomic<std::uint64_t> totalCommitNanos{0};  // sum over batches (avg = total / batches)
  // Puts and erases in the requests taken (range erasures not counted), and how many of them
  // were left out of their batch by WriteCoalescer (replaced by a later write of the same key, or
  // a new key put and erased within the batch).
  std::atomic<std::uint64_t> keyWrites{0};
  std::atomic<std::uint64_t> foldedKeyWrites{0};
};

// What a load pass found.
struct LoadStats {
  std::uint64_t records = 0;       // retained records, messages or sessions
  std::uint64_t queueEntries = 0;  // loadSessions only
  std::uint64_t inboundIds = 0;    // loadSessions only
  std::uint64_t orphans = 0;       // queue entries / inbound ids without a session (skipped)
  std::int64_t elapsedNanos = 0;
  std::string error;  // empty when ok; else names the directory, the key and what is wrong
  bool ok() const noexcept { return error.empty(); }
};

struct LoadedSession {
  SessionRecord session;
  std::vector<QueueEntry> queue;     // in sequence order
  std::vector<InboundQos2> inbound;  // in packet-id order
};

class Store {
 public:
  struct OpenResult {
    std::unique_ptr<Store> store;  // null on error
    std::string error;             // one line: directory, RocksDB's reason, what to do
  };

  // Opens (creating if missing) the store in `dir`. Never throws.
  static OpenResult open(const std::string& dir, const StoreOptions& options);

  ~Store();  // close()
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  // Start-up loads: each calls `visit` once per record in key order and stops at the first record
  // that does not decode (LoadStats::error). Owner only, before start(). Each logs its counts and
  // time at info level.
  LoadStats loadRetained(common::FunctionRef<void(RetainedRecord&&)> visit);
  LoadStats loadMessages(common::FunctionRef<void(MessageRecord&&)> visit);
  // Sessions with their queues and inbound ids, merged in one pass over s/, q/ and i/ (all three
  // are sorted by client id).
  LoadStats loadSessions(common::FunctionRef<void(LoadedSession&&)> visit);

  // Start-up: writes `request` as one batch, synced, before anything queued (a correction the
  // load decided, which later writes must find done). Returns an error line (empty when ok).
  // Owner only, before start().
  std::string writeNow(const WriteRequest& request);

  // `wake` is called on the persistence thread once per batch that posted completions for
  // `producer`; it must be cheap, callable from any thread (an event loop's wake), and valid (with
  // what it refers to) until close() returned. Owner only, before start().
  void setWaker(std::uint32_t producer, std::function<void()> wake);

  // Launches the persistence thread. Owner only, once.
  void start();

  // Queues `request`. Returns false, leaving `request` untouched, when the queue holds
  // queueCapacity requests, when its producer index is out of range, or once close() began.
  // Any thread. Lock-free; allocates only when the queue grows a block.
  bool tryPush(WriteRequest&& request);

  // Moves up to `max` completions of `producer` into `out`; returns how many. Producer
  // `producer`'s thread only. Never blocks.
  std::size_t popCompletions(std::uint32_t producer, Completion* out, std::size_t max);

  // Drains and commits everything queued, syncs, stops the thread and closes the DB. Owner only,
  // after producers stopped pushing. Idempotent. Completions stay poppable until destruction.
  void close();

  const StoreCounters& counters() const noexcept;
  const std::string& directory() const noexcept { return dir_; }
  const StoreOptions& options() const noexcept { return options_; }

 private:
  Store(std::string dir, const StoreOptions& options, std::unique_ptr<rocksdb::DB> db);

  const std::string dir_;       // constant after construction
  const StoreOptions options_;  // constant after construction
  std::unique_ptr<rocksdb::DB> db_;
  std::unique_ptr<CommitLoop> loop_;
  bool started_ = false;  // owner thread only
  bool closed_ = false;   // owner thread only
};

}  // namespace tern::persist
