#include "tern/loadgen/packet_id_window.hpp"

#include <cassert>

namespace tern::loadgen {

namespace {

// The id `offset` places after `id`, in 1..65535.
std::uint16_t advance(std::uint16_t id, std::size_t offset) noexcept {
  return static_cast<std::uint16_t>((id - 1 + offset) % PacketIdWindow::kMaxInFlight + 1);
}

}  // namespace

std::uint16_t PacketIdWindow::acquire(std::int64_t intendedNs, Stage stage) {
  assert(!full());
  assert(stage != Stage::kRetired);
  if (size_ == capacity_) grow();
  const std::uint16_t id = advance(oldestId_, size_);
  at(size_) = {intendedNs, stage};
  ++size_;
  ++inFlight_;
  return id;
}

std::size_t PacketIdWindow::offsetOf(std::uint16_t id) const noexcept {
  if (id == 0) return kMaxInFlight;  // never handed out
  return (static_cast<std::size_t>(id) + kMaxInFlight - oldestId_) % kMaxInFlight;
}

PacketIdWindow::Stage PacketIdWindow::stage(std::uint16_t id) const noexcept {
  const std::size_t offset = offsetOf(id);
  return offset < size_ ? at(offset).stage : Stage::kRetired;
}

bool PacketIdWindow::received(std::uint16_t id) noexcept {
  const std::size_t offset = offsetOf(id);
  if (offset >= size_ || at(offset).stage != Stage::kAwaitingRec) return false;
  at(offset).stage = Stage::kAwaitingComp;
  return true;
}

bool PacketIdWindow::retire(std::uint16_t id, Stage expected, std::int64_t& intendedNs) noexcept {
  const std::size_t offset = offsetOf(id);
  if (offset >= size_ || expected == Stage::kRetired) return false;
  Entry& entry = at(offset);
  if (entry.stage != expected) return false;
  intendedNs = entry.intendedNs;
  entry.stage = Stage::kRetired;
  --inFlight_;
  // Slide the window past every retired id at its old end.
  while (size_ != 0 && at(0).stage == Stage::kRetired) {
    head_ = (head_ + 1) & (capacity_ - 1);
    oldestId_ = advance(oldestId_, 1);
    --size_;
  }
  return true;
}

void PacketIdWindow::grow() {
  const std::size_t capacity = capacity_ == 0 ? 64 : capacity_ * 2;
  auto grown = std::make_unique_for_overwrite<Entry[]>(capacity);
  for (std::size_t i = 0; i < size_; ++i)
    grown[i] = at(i);
  ring_ = std::move(grown);
  capacity_ = capacity;
  head_ = 0;
}

}  // namespace tern::loadgen
