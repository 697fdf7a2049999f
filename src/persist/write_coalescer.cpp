#include "write_coalescer.hpp"

#include <cassert>
#include <functional>
#include <string_view>

namespace tern::persist {

namespace {

constexpr std::size_t kMinCells = 1024;

std::size_t hashOf(const std::string& key) noexcept {
  return std::hash<std::string_view>{}(key);
}

}  // namespace

void WriteCoalescer::add(const WriteOp& op) {
  assert(op.kind != WriteOp::Kind::kEraseRange);
  ++added_;
  // At most half full: probes stay short.
  if ((slots_.size() + 1) * 2 > table_.size()) grow();
  const std::size_t mask = table_.size() - 1;
  const std::size_t hash = hashOf(op.key);
  for (std::size_t cell = hash & mask;; cell = (cell + 1) & mask) {
    const std::uint32_t at = table_[cell];
    if (at == 0) {
      table_[cell] = static_cast<std::uint32_t>(slots_.size() + 1);
      slots_.push_back({&op, hash, static_cast<std::uint32_t>(cell),
                        op.kind == WriteOp::Kind::kPut && op.newKey});
      return;
    }
    Slot& slot = slots_[at - 1];
    if (slot.hash == hash && slot.last->key == op.key) {
      slot.last = &op;
      ++dropped_;  // the earlier write of this key is replaced
      return;
    }
  }
}

rocksdb::Status WriteCoalescer::flushInto(rocksdb::WriteBatch& batch) {
  rocksdb::Status status;
  for (const Slot& slot : slots_) {
    table_[slot.cell] = 0;
    if (!status.ok()) continue;
    const WriteOp& op = *slot.last;
    if (op.kind == WriteOp::Kind::kPut) {
      status = batch.Put(op.key, op.value);
    } else if (slot.newFirst) {
      ++dropped_;  // created and erased within the batch: the erase is left out too
    } else {
      status = batch.Delete(op.key);
    }
  }
  slots_.clear();
  return status;
}

void WriteCoalescer::grow() {
  const std::size_t cells = table_.empty() ? kMinCells : table_.size() * 2;
  table_.assign(cells, 0);
  const std::size_t mask = cells - 1;
  for (std::size_t i = 0; i < slots_.size(); ++i) {
    std::size_t cell = slots_[i].hash & mask;
    while (table_[cell] != 0)
      cell = (cell + 1) & mask;
    table_[cell] = static_cast<std::uint32_t>(i + 1);
    slots_[i].cell = static_cast<std::uint32_t>(cell);
  }
}

}  // namespace tern::persist
