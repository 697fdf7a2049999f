#include "tern/persist/store.hpp"

#include <fmt/format.h>
#include <rocksdb/db.h>
#include <rocksdb/memtablerep.h>
#include <rocksdb/options.h>
#include <rocksdb/write_batch.h>

#include <cassert>
#include <csignal>
#include <exception>
#include <filesystem>
#include <system_error>
#include <thread>

#include "commit_loop.hpp"
#include "tern/common/clock.hpp"
#include "tern/common/log.hpp"

namespace tern::persist {
namespace {

// The repair hint of every open failure on an existing store.
std::string repairHint(const std::string& dir) {
  return fmt::format(
      "the write-ahead log's torn tail is recovered automatically, so this is other damage; stop "
      "tern, keep a copy of {0}, then salvage it with `ldb --db={0} repair` (Debian "
      "package rocksdb-tools; the same as rocksdb::RepairDB) or move {0} away to start empty",
      dir);
}

// Keys are binary (big-endian numbers, NUL separators): printable bytes as they are, others as
// \xNN, so an error line names the record.
std::string printableKey(std::string_view key) {
  std::string out;
  for (const char c : key) {
    const auto u = static_cast<unsigned char>(c);
    if (u >= 0x20 && u < 0x7F && u != '\\') {
      out.push_back(c);
    } else {
      out += fmt::format("\\x{:02x}", u);
    }
  }
  return out;
}

std::string_view view(const rocksdb::Slice& s) {
  return {s.data(), s.size()};
}

bool startsWith(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && s.substr(0, prefix.size()) == prefix;
}

// One iterator over the keys starting with `prefix`.
class PrefixScan {
 public:
  PrefixScan(rocksdb::DB& db, std::string_view prefix) : end_(prefixEnd(prefix)) {
    rocksdb::ReadOptions ro;
    upper_ = rocksdb::Slice(end_);
    ro.iterate_upper_bound = &upper_;
    ro.fill_cache = false;  // start-up reads everything once
    it_.reset(db.NewIterator(ro));
    it_->Seek(rocksdb::Slice(prefix.data(), prefix.size()));
  }
  bool valid() const { return it_->Valid(); }
  std::string_view key() const { return view(it_->key()); }
  std::string_view value() const { return view(it_->value()); }
  void next() { it_->Next(); }
  rocksdb::Status status() const { return it_->status(); }

 private:
  std::string end_;
  rocksdb::Slice upper_;
  std::unique_ptr<rocksdb::Iterator> it_;
};

template <typename Record>
bool decodeAt(const std::string& dir, std::string_view key, std::string_view value, Record& out,
              std::string& error) {
  const DecodeStatus s = decode(value, out);
  if (s != DecodeStatus::kOk) {
    error = fmt::format("{}: record {} does not decode: {}; {}", dir, printableKey(key),
                        describe(s), repairHint(dir));
    return false;
  }
  if (keyFor(out) != key) {
    error = fmt::format("{}: record {} is stored under another record's key; {}", dir,
                        printableKey(key), repairHint(dir));
    return false;
  }
  return true;
}

bool scanFailed(const std::string& dir, const PrefixScan& scan, std::string& error) {
  if (scan.status().ok()) return false;
  error = fmt::format("{}: reading failed: {}; {}", dir, scan.status().ToString(), repairHint(dir));
  return true;
}

void logLoad(const char* what, const LoadStats& stats) {
  if (!stats.ok()) return;
  TERN_LOG_DEBUG(
      "persist: loaded {} {} ({} queue entries, {} inbound ids, {} orphans) in {:.1f} ms",
      stats.records, what, stats.queueEntries, stats.inboundIds, stats.orphans,
      static_cast<double>(stats.elapsedNanos) / 1e6);
}

}  // namespace

Store::OpenResult Store::open(const std::string& dir, const StoreOptions& options) {
  OpenResult result;
  try {
    if (options.producers == 0 || options.queueCapacity == 0) {
      result.error =
          fmt::format("{}: a store needs at least one producer and a queue capacity", dir);
      return result;
    }
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    if (ec) {
      result.error = fmt::format("cannot create the data directory {}: {}", dir, ec.message());
      return result;
    }
    const bool existed = std::filesystem::exists(std::filesystem::path(dir) / "CURRENT", ec);

    rocksdb::Options o;
    o.create_if_missing = true;
    o.paranoid_checks = true;
    // A crash tears at most the batch being written: replay the log up to the last complete
    // batch and stop there (kTolerateCorruptedTailRecords would also accept some damage in the
    // middle; kAbsoluteConsistency would refuse the torn tail every kill -9 leaves).
    o.wal_recovery_mode = rocksdb::WALRecoveryMode::kPointInTimeRecovery;
    // Shutdown syncs the log and leaves the memtable to be replayed at the next open, rather than
    // writing an SST while the broker is stopping.
    o.avoid_flush_during_shutdown = true;
    o.max_background_jobs = 2;
    o.keep_log_file_num = 4;
    o.info_log_level = rocksdb::InfoLogLevel::WARN_LEVEL;
    // The broker never reads the store while it runs (only the start-up loads iterate it), so the
    // memtable need not be kept sorted on every insert: a vector memtable appends, and sorts once
    // when it is flushed or iterated. The default skip list spent most of the persistence
    // thread's time in key comparisons (docs/performance.md). One writer thread: no concurrent
    // memtable writes, which a vector memtable does not support.
    o.memtable_factory = std::make_shared<rocksdb::VectorRepFactory>();
    o.allow_concurrent_memtable_write = false;

    rocksdb::DB* raw = nullptr;
    const rocksdb::Status s = rocksdb::DB::Open(o, dir, &raw);
    if (!s.ok()) {
      if (s.IsIOError() && s.ToString().find("lock") != std::string::npos) {
        // RocksDB's LOCK file is held: another process has the store open. Nothing is damaged.
        result.error = fmt::format(
            "cannot open the data directory {0}: another process holds {0}/LOCK (is another "
            "broker running with this --data-dir?): {1}",
            dir, s.ToString());
      } else if (existed) {
        result.error = fmt::format(
            "cannot open the data directory {0} ({0}/CURRENT names the MANIFEST in "
            "use): {1}; {2}",
            dir, s.ToString(), repairHint(dir));
      } else {
        result.error = fmt::format("cannot create a store in {}: {}", dir, s.ToString());
      }
      delete raw;
      return result;
    }
    result.store.reset(new Store(dir, options, std::unique_ptr<rocksdb::DB>(raw)));
  } catch (const std::exception& e) {
    result.store.reset();
    result.error = fmt::format("cannot open the data directory {}: {}", dir, e.what());
  }
  return result;
}

Store::Store(std::string dir, const StoreOptions& options, std::unique_ptr<rocksdb::DB> db)
    : dir_(std::move(dir)),
      options_(options),
      db_(std::move(db)),
      loop_(std::make_unique<CommitLoop>(*db_, options_, dir_)) {}

Store::~Store() {
  close();
}

void Store::close() {
  if (closed_) return;
  closed_ = true;
  loop_->stop();
  // The loop synced everything it wrote; Close() releases the LOCK file and background threads.
  const rocksdb::Status s = db_->Close();
  if (!s.ok()) TERN_LOG_WARN("persist: closing {}: {}", dir_, s.ToString());
  db_.reset();
}

void Store::setWaker(std::uint32_t producer, std::function<void()> wake) {
  loop_->setWaker(producer, std::move(wake));
}

void FaultSeam::checkCrash(const WriteOp& op) const noexcept {
  if (crashPrefix_.empty() || op.kind != WriteOp::Kind::kPut) return;
  if (std::string_view(op.key).substr(0, crashPrefix_.size()) != crashPrefix_) return;
  TERN_LOG_WARN("--test-crash-before-key: killing the broker before it writes {}",
                printableKey(op.key));
  // What the workers sent meanwhile reaches their clients first, as it would while a batch's
  // fdatasync runs: the crash comes in the middle of that write, not before it.
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  std::raise(SIGKILL);
}

std::string Store::writeNow(const WriteRequest& request) {
  assert(!started_ && db_);
  rocksdb::WriteBatch batch;
  rocksdb::Status status;
  for (const WriteOp& op : request.ops()) {
    switch (op.kind) {
      case WriteOp::Kind::kPut:
        status = batch.Put(op.key, op.value);
        break;
      case WriteOp::Kind::kErase:
        status = batch.Delete(op.key);
        break;
      case WriteOp::Kind::kEraseRange:
        status = batch.DeleteRange(op.key, op.value);
        break;
    }
    if (!status.ok()) break;
  }
  if (status.ok() && batch.Count() != 0) {
    rocksdb::WriteOptions wo;
    wo.sync = true;
    status = db_->Write(wo, &batch);
  }
  if (status.ok()) return {};
  return fmt::format("cannot write the start-up corrections to {}: {}", dir_, status.ToString());
}

void Store::start() {
  assert(!started_ && !closed_);
  if (started_ || closed_) return;
  started_ = true;
  loop_->start();
}

bool Store::tryPush(WriteRequest&& request) {
  return loop_->tryPush(std::move(request));
}

std::size_t Store::popCompletions(std::uint32_t producer, Completion* out, std::size_t max) {
  return loop_->popCompletions(producer, out, max);
}

const StoreCounters& Store::counters() const noexcept {
  return loop_->counters();
}

LoadStats Store::loadRetained(common::FunctionRef<void(RetainedRecord&&)> visit) {
  assert(!started_ && db_);
  LoadStats stats;
  const std::int64_t begin = common::monotonicNanos();
  PrefixScan scan(*db_, kRetainedPrefix);
  for (; scan.valid(); scan.next()) {
    RetainedRecord r;
    if (!decodeAt(dir_, scan.key(), scan.value(), r, stats.error)) break;
    ++stats.records;
    visit(std::move(r));
  }
  if (stats.ok()) scanFailed(dir_, scan, stats.error);
  stats.elapsedNanos = common::monotonicNanos() - begin;
  logLoad("retained messages", stats);
  return stats;
}

LoadStats Store::loadMessages(common::FunctionRef<void(MessageRecord&&)> visit) {
  assert(!started_ && db_);
  LoadStats stats;
  const std::int64_t begin = common::monotonicNanos();
  PrefixScan scan(*db_, kMessagePrefix);
  for (; scan.valid(); scan.next()) {
    MessageRecord r;
    if (!decodeAt(dir_, scan.key(), scan.value(), r, stats.error)) break;
    ++stats.records;
    visit(std::move(r));
  }
  if (stats.ok()) scanFailed(dir_, scan, stats.error);
  stats.elapsedNanos = common::monotonicNanos() - begin;
  logLoad("queued messages", stats);
  return stats;
}

LoadStats Store::loadSessions(common::FunctionRef<void(LoadedSession&&)> visit) {
  assert(!started_ && db_);
  LoadStats stats;
  const std::int64_t begin = common::monotonicNanos();
  PrefixScan sessions(*db_, kSessionPrefix);
  PrefixScan queue(*db_, kQueuePrefix);
  PrefixScan inbound(*db_, kInboundPrefix);

  // Every s/, q/ and i/ range is sorted by client id (then sequence / packet id), so one forward
  // pass over each joins them: entries sorting before a session's own prefix belong to no
  // session (orphans, skipped and counted).
  auto collect = [&](PrefixScan& scan, const std::string& prefix, auto& into) {
    for (; scan.valid(); scan.next()) {
      const std::string_view key = scan.key();
      if (startsWith(key, prefix)) {
        typename std::remove_reference_t<decltype(into)>::value_type entry;
        if (!decodeAt(dir_, key, scan.value(), entry, stats.error)) return false;
        into.push_back(std::move(entry));
      } else if (key < std::string_view(prefix)) {
        ++stats.orphans;
      } else {
        break;
      }
    }
    return !scanFailed(dir_, scan, stats.error);
  };

  for (; sessions.valid(); sessions.next()) {
    LoadedSession loaded;
    if (!decodeAt(dir_, sessions.key(), sessions.value(), loaded.session, stats.error)) break;
    if (!collect(queue, queuePrefix(loaded.session.clientId), loaded.queue)) break;
    if (!collect(inbound, inboundPrefix(loaded.session.clientId), loaded.inbound)) break;
    ++stats.records;
    stats.queueEntries += loaded.queue.size();
    stats.inboundIds += loaded.inbound.size();
    visit(std::move(loaded));
  }
  if (stats.ok() && !scanFailed(dir_, sessions, stats.error)) {
    for (; queue.valid(); queue.next())
      ++stats.orphans;
    for (; inbound.valid(); inbound.next())
      ++stats.orphans;
    if (stats.ok()) scanFailed(dir_, queue, stats.error);
    if (stats.ok()) scanFailed(dir_, inbound, stats.error);
  }
  stats.elapsedNanos = common::monotonicNanos() - begin;
  logLoad("sessions", stats);
  return stats;
}

}  // namespace tern::persist
