#include "tern/routing/retained_cursor.hpp"

#include <algorithm>
#include <cassert>

#include "tern/routing/topic.hpp"

namespace tern::routing {
namespace {

// Heap bytes of a string: none while it fits in the object (short-string optimization).
std::size_t heapBytes(const std::string& s) noexcept {
  const auto* object = reinterpret_cast<const char*>(&s);
  const bool inline_ = s.data() >= object && s.data() < object + sizeof(std::string);
  return inline_ ? 0 : s.capacity() + 1;
}

template <typename T>
std::size_t heapBytes(const std::vector<T>& v) noexcept {
  return v.capacity() * sizeof(T);  // NOLINT(bugprone-sizeof-expression): pointer elements too
}

// Entries of one snapshot are independent node loads: prefetching a few entries ahead lets the
// cache misses of a large snapshot overlap instead of following one another. A hint only: it
// never faults, and the node stays valid for the slice anyway.
constexpr std::size_t kPrefetchAhead = 8;

}  // namespace

RetainedCursor::RetainedCursor(std::string_view filter, Scope scope) {
  if (scope == Scope::kEverything) {
    Frame root = makeFrame(kSubtree);
    root.skipDollar = false;
    frames_.push_back(root);
    return;
  }
  assert(validateTopicFilter(filter) == TopicStatus::kOk);
  filter_.assign(filter);
  LevelCursor cursor(filter_);
  std::string_view level;
  while (cursor.next(level))
    levelEnds_.push_back(static_cast<std::size_t>(level.data() - filter_.data()) + level.size());
  frames_.push_back(makeFrame(0));
}

RetainedCursor::Frame RetainedCursor::makeFrame(std::uint32_t matched) const noexcept {
  Frame frame{.firstEntry = ends_.size(),
              .entryEnd = ends_.size(),
              .nextEntry = ends_.size(),
              .filterLevel = matched,
              .stage = Stage::kExpand,
              .skipDollar = false};
  if (matched == kSubtree || matched == levelEnds_.size()) {
    // Inside a '#': the node's message, then its children. The whole filter matched: only the
    // node's message.
    frame.stage = Stage::kOffer;
  } else if (filterLevel(matched) == "#") {
    // The node itself and everything below it; a first-level '#' leaves out '$' topics.
    frame.filterLevel = kSubtree;
    frame.stage = Stage::kOffer;
    frame.skipDollar = matched == 0;
  } else {
    frame.skipDollar = matched == 0 && filterLevel(matched) == "+";
  }
  return frame;
}

std::string_view RetainedCursor::filterLevel(std::size_t i) const noexcept {
  const std::size_t begin = i == 0 ? 0 : levelEnds_[i - 1] + 1;  // past the '/'
  return std::string_view(filter_).substr(begin, levelEnds_[i] - begin);
}

std::string_view RetainedCursor::entryText(std::size_t i) const noexcept {
  assert(i < liveFrom_);
  const std::size_t begin = i == 0 ? 0 : ends_[i - 1];
  return std::string_view(text_).substr(begin, ends_[i] - begin);
}

void RetainedCursor::appendLive(const Node* child) {
  ends_.push_back(0);  // a placeholder until materialize()
  live_.push_back(child);
}

void RetainedCursor::truncateFrames(std::size_t k) noexcept {
  const std::size_t first = frames_[k].firstEntry;
  if (first >= liveFrom_) {
    live_.resize(first - liveFrom_);
  } else {
    text_.resize(first == 0 ? 0 : ends_[first - 1]);
    live_.clear();
    liveFrom_ = first;
  }
  ends_.resize(first);
  frames_.resize(k);
  if (nodes_.size() > k) nodes_.resize(k);
  pushedFrom_ = std::min(pushedFrom_, k);
}

void RetainedCursor::finish() noexcept {
  done_ = true;
  // The walk's memory goes back now, not when the session drops the cursor.
  std::string().swap(filter_);
  std::vector<std::size_t>().swap(levelEnds_);
  std::vector<Frame>().swap(frames_);
  std::string().swap(text_);
  std::vector<std::size_t>().swap(ends_);
  std::vector<const Node*>().swap(nodes_);
  std::vector<const Node*>().swap(live_);
  liveFrom_ = 0;
}

std::size_t RetainedCursor::memoryBytes() const noexcept {
  return heapBytes(filter_) + heapBytes(levelEnds_) + heapBytes(frames_) + heapBytes(text_) +
         heapBytes(ends_) + heapBytes(nodes_) + heapBytes(live_);
}

bool RetainedCursor::resume(const RetainedStore& store, std::size_t budget,
                            common::FunctionRef<bool(const common::Message&)> take) {
  lastSlice_ = {};
  if (done_) return true;
  // Every entry is a text between slices; find the saved position again by level text from the
  // root (never pruned). A frame whose node is gone takes the frames below it along (nothing of
  // it can be stable: a node holding a stable topic or an ancestor of one is never pruned); its
  // parent goes on with its next entry.
  liveFrom_ = ends_.size();
  nodes_.clear();
  nodes_.push_back(store.rootNode());
  for (std::size_t k = 1; k < frames_.size(); ++k) {
    ++lastSlice_.relookups;
    const Node* node =
        RetainedStore::findChild(nodes_.back(), entryText(frames_[k - 1].nextEntry - 1));
    if (node == nullptr) {
      truncateFrames(k);
      break;
    }
    nodes_.push_back(node);
  }
  pushedFrom_ = frames_.size();

  if (walk(std::max<std::size_t>(budget, 1), take)) {
    finish();
    return true;
  }
  materialize();
  // No pointer into the store survives the call. Scratch capacity is kept for the next slice
  // unless a large snapshot blew it up.
  constexpr std::size_t kKeptScratch = 4096;
  nodes_.clear();
  live_.clear();
  if (live_.capacity() > kKeptScratch) std::vector<const Node*>().swap(live_);
  if (nodes_.capacity() > kKeptScratch) std::vector<const Node*>().swap(nodes_);
  return false;
}

bool RetainedCursor::walk(std::size_t budget,
                          common::FunctionRef<bool(const common::Message&)> take) {
  std::size_t& units = lastSlice_.units;
  while (!frames_.empty()) {
    Frame& frame = frames_.back();
    const Node* node = nodes_.back();
    switch (frame.stage) {
      case Stage::kOffer: {
        if (const common::Message* message = RetainedStore::messageOf(node)) {
          if (units >= budget) return false;
          ++units;
          if (!take(*message)) return false;  // still kOffer: offered again first next time
        }
        frame.stage = frame.filterLevel == kSubtree ? Stage::kExpand : Stage::kFinished;
        break;
      }
      case Stage::kExpand: {
        if (frame.filterLevel != kSubtree && filterLevel(frame.filterLevel) != "+") {
          // An exact level: one lookup names the one child.
          if (units >= budget) return false;
          ++units;
          if (const Node* child = RetainedStore::findChild(node, filterLevel(frame.filterLevel)))
            appendLive(child);
        } else if (RetainedStore::hasChildren(node)) {
          if (units >= budget) return false;
          // The one step that is not split: every child of the node, at once. Only the slot
          // words are read here; the children's texts are copied by materialize(), for the
          // entries still pending when the slice ends.
          const std::size_t examined = RetainedStore::forEachChild(
              node, frame.skipDollar, [&](const Node* child) { appendLive(child); });
          units += examined;
          lastSlice_.largestSnapshot = std::max(lastSlice_.largestSnapshot, examined);
        }
        frame.entryEnd = ends_.size();
        frame.stage = Stage::kChildren;
        break;
      }
      case Stage::kChildren: {
        if (frame.nextEntry == frame.entryEnd) {
          frame.stage = Stage::kFinished;
          break;
        }
        if (units >= budget) return false;
        ++units;
        const std::size_t i = frame.nextEntry++;
        // An entry of this slice is still its node; an older one is looked up by its text.
        const Node* child = nullptr;
        if (i >= liveFrom_) {
          child = live_[i - liveFrom_];
          // The siblings to come are known: start their loads now (see kPrefetchAhead).
          if (i + kPrefetchAhead < frame.entryEnd)
            __builtin_prefetch(live_[i + kPrefetchAhead - liveFrom_]);
        } else {
          child = RetainedStore::findChild(node, entryText(i));
        }
        if (child == nullptr) break;  // deleted since the snapshot
        const std::uint32_t level =
            frame.filterLevel == kSubtree ? kSubtree : frame.filterLevel + 1;
        frames_.push_back(makeFrame(level));  // invalidates `frame`
        nodes_.push_back(child);
        break;
      }
      case Stage::kFinished:
        truncateFrames(frames_.size() - 1);
        break;
    }
  }
  return true;
}

// Why a node that is empty (no message, no child) is dropped here, and must be: a snapshot scans
// a child table that a writer may change in place meanwhile, so it can see two nodes of the same
// level text: X, then X' created for the same topic after X was pruned and inserted in a slot the
// scan had not reached yet. Turned into texts, both would name the same path, and its topics
// would be walked twice. But the writer emptied X (message stored null, no child left) before
// unlinking it, and unlinked it before inserting X' with a release store that the scan read with
// acquire (the writers' mutex orders X's removal before X' even across writer threads); so once
// the scan has seen X', every later load of X sees it empty, and an unlinked node never changes
// again. Of such twins only the newest can look non-empty here. Dropping an empty node never
// loses a stable topic: a node holding one, or on the path to one, always has a message or a
// child.
void RetainedCursor::materialize() {
  auto empty = [](const Node* node) {
    return RetainedStore::messageOf(node) == nullptr && !RetainedStore::hasChildren(node);
  };
  for (std::size_t k = std::max<std::size_t>(pushedFrom_, 1); k < frames_.size(); ++k) {
    if (empty(nodes_[k])) {
      truncateFrames(k);
      break;
    }
  }
  if (liveFrom_ == ends_.size()) return;
  // Entries of this slice, frame by frame in order: those before nextEntry - 1 are done; the one
  // at nextEntry - 1 names the next frame's node if there is a next frame; the rest are pending.
  std::size_t k = 0;
  while (frames_[k].entryEnd <= liveFrom_)
    ++k;
  for (std::size_t i = liveFrom_; i < ends_.size(); ++i) {
    if (i + kPrefetchAhead < ends_.size())
      __builtin_prefetch(live_[i + kPrefetchAhead - liveFrom_]);
    while (i >= frames_[k].entryEnd)
      ++k;
    const Frame& frame = frames_[k];
    const Node* node = live_[i - liveFrom_];
    const bool onPath = i + 1 == frame.nextEntry && k + 1 < frames_.size();
    const bool pending = i >= frame.nextEntry && !empty(node);
    if (onPath || pending) text_.append(RetainedStore::levelOf(node));
    ends_[i] = text_.size();
  }
  liveFrom_ = ends_.size();
  live_.clear();
}

}  // namespace tern::routing
