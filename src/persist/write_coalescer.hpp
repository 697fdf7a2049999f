// WriteCoalescer: folds the point writes of one batch so that each key is written once, with its
// last operation, and a key created and erased within the batch is not written at all (private to
// src/persist; used by CommitLoop).
//
// Why: under load most persistent-session writes cancel out. A queue entry (q/) and its message
// record (m/) are put when a publish is queued for an online subscriber and erased when the
// subscriber's PUBACK comes back, usually a few milliseconds later, while a sync-mode batch
// gathers everything queued during the previous batch's fdatasync. Writing both halves cost two
// memtable inserts over long keys (the profile in docs/performance.md) for a net effect of
// nothing; the heavier the load, the larger the batches and the more of them cancel.
//
// Semantics: a batch is one atomic write, so only its final state matters. For each key, the
// writes between two range erasures are replaced by the last of them; if the first was a put of a
// new key (WriteOp::newKey: nothing was stored under it before) and the last an erase, nothing is
// written. A range erasure cuts the fold: what came before it is emitted first, then the range,
// so the order between a range and the point writes around it is kept.
//
// Threads: one owner (the persistence thread). The ops passed to add() are borrowed until the
// next flushInto(). Memory: the table and slot vectors grow to the largest batch seen and are
// reused, so a batch costs no allocation once warm.
#pragma once

#include <rocksdb/status.h>
#include <rocksdb/write_batch.h>

#include <cstddef>
#include <cstdint>
#include <vector>

#include "tern/persist/store.hpp"

namespace tern::persist {

class WriteCoalescer {
 public:
  // Records a point write (kPut or kErase; a kEraseRange must go through flushInto first and
  // then straight to the batch). `op` must stay valid until the next flushInto().
  void add(const WriteOp& op);

  // Appends the folded writes recorded since the last flush to `batch` (in the order their keys
  // first appeared) and forgets them. Returns the first error of the batch, if any.
  rocksdb::Status flushInto(rocksdb::WriteBatch& batch);

  // Writes recorded and writes left out by folding, since construction (statistics and tests).
  std::uint64_t added() const noexcept { return added_; }
  std::uint64_t dropped() const noexcept { return dropped_; }

 private:
  struct Slot {
    const WriteOp* last;  // the key's latest write
    std::size_t hash;
    std::uint32_t cell;  // where the slot sits in table_, to clear it cheaply
    bool newFirst;       // the key's first write in this fold was a put of a new key
  };

  void grow();

  std::vector<Slot> slots_;           // in first-appearance order
  std::vector<std::uint32_t> table_;  // open addressing: 0 empty, else slot index + 1
  std::uint64_t added_ = 0;
  std::uint64_t dropped_ = 0;
};

}  // namespace tern::persist
