// RetainedCursor: a resumable walk over the retained messages matching one filter (or all of
// them), done in bounded slices so that a SUBSCRIBE '#' or a LIST over a large store never holds a
// worker thread for long.
//
// Between two slices the worker passes quiescent states (sync/qsbr.hpp), after which any node,
// child table or message of the store may have been freed. So the cursor keeps no pointer into
// the store across resume() calls: between slices its position is values only.
//   - A stack of frames, one per level of the path being walked (root first). A frame knows which
//     filter level its node's children must match (or that it walks a whole '#' subtree), whether
//     its node's own message is still to be offered, and which of its children are still to be
//     visited: its snapshot.
//   - A snapshot is taken when the frame first expands: every child of the node for '+' and '#'
//     (one scan of its child table), the one child the filter names for an exact level (one
//     lookup). All frames' snapshots form one stack of entries. Within the slice that took it an
//     entry is the child's node pointer (valid until the slice ends); when the slice ends, the
//     entries still to be visited become copies of their level texts ("materialized"), and the
//     pointers are dropped.
//   - On resume() the cursor descends again from the root, looking each frame's level text up in
//     its parent (one hash probe per level), drops the frames whose node has vanished (and all
//     below), and goes on: next entry of the top frame, looked up by its text.
// The walk follows RetainedStore::forEachMatch: an exact level is one lookup, '+' visits one
// level of children (without '$' children at the first level), '#' the whole subtree including
// its own node ("a/#" matches "a"; a first-level '#' leaves out '$' children).
//
// Guarantees (for one walk: from construction to the resume() that returns true), whatever the
// writers do between and during slices (topics added, deleted, replaced, child tables grown,
// shrunk or rebuilt, nodes pruned and re-created):
//   - No topic is taken twice. Each path of level texts gets at most one frame over the whole
//     walk: a frame is created only by advancing over an entry of its parent's snapshot, each
//     entry is advanced over once, and the entries that survive a slice name distinct children
//     (a scan that races with a writer may see a pruned node and its re-created successor under
//     the same text; materialization keeps only nodes that hold a message or a child, and at most
//     one of such twins can, see retained_cursor.cpp). A frame's own message is taken at most
//     once: the frame moves on only after a take.
//   - Every topic whose retained message exists for the whole walk and matches is offered until
//     taken, and taken exactly once. Its node and all its ancestors exist for the whole walk as
//     the same objects (a node is pruned only when it holds no message and no child), so every
//     snapshot on its path contains its next level, and neither a re-descent nor
//     materialization drops it.
//   - A refused offer (take returns false) ends the slice; the next resume() offers that topic
//     again first, with the message current at that time (nothing if it was deleted meanwhile).
//   - Topics added or deleted during the walk may or may not be offered (children added after
//     their parent's snapshot are not visited); a replaced message is offered in whichever
//     version is current when its node is visited. Every message offered was the topic's retained
//     message at the moment of the offer.
//   - A walk ends: it creates at most one frame per path, so it takes at most as many steps as
//     there are paths that exist at some time during the walk. (A writer that keeps creating new
//     topics under parts not yet snapshotted can make it long.)
// Cost, in units: looking a child up or entering it is one unit, a snapshot is one unit per child
// examined, offering a message (take accepted or refused) is one. Popping a frame is free.
//   - resume(budget) stops before the first unit that would exceed `budget`, except that a
//     snapshot is never split: it runs whole once started, so one resume does at most
//     budget - 1 + max(1, C) units, C being the largest number of children snapshotted in it.
//     That is the one exception. The scan itself reads only the child table's slots; the texts
//     of the children still pending when the slice ends are copied then (materialization, one
//     node load and one copy per child, part of the units already charged). Measured on a
//     2-core machine (RetainedCursorMeasure): a slice that snapshots 10k children takes about
//     80 us, 100k children about 3.5 ms; an ordinary slice of 256 units 2-12 us.
//   - Re-finding the position at the start of a resume costs one child lookup per level of the
//     saved path (its depth; usually a handful, at most 32768 for a 65535-byte topic). It is not
//     charged to the budget, so that every resume makes progress however deep the path.
//   - Memory: one frame (32 bytes) per level of the current path, 8 bytes per entry of each
//     frame on the path, and the text of each entry still pending, i.e. O(depth + children of
//     the nodes on the path); during a slice also 8 bytes per entry it snapshotted.
//     memoryBytes() reports it; the cursor gives it all back when the walk completes.
// A whole walk costs O(matched subtree + children of '+' levels) units, like forEachMatch, plus
// one re-descent (depth) and one materialization (pending entries) per slice.
//
// Ownership and threads: a cursor is a plain value owned by one thread at a time (a worker's
// session); it may be moved between threads between calls. resume() runs on a registered, online
// reader of the store's QSBR domain and never locks; the other methods touch only the cursor.
// Atomics: none of its own; it reads the store's with the store's acquire loads
// (RetainedStore's private seam), which order the node, table and message contents it reads.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "tern/common/function_ref.hpp"
#include "tern/common/message.hpp"
#include "tern/routing/retained_store.hpp"

namespace tern::routing {

class RetainedCursor {
 public:
  enum class Scope {
    kFilter,      // topics matching the filter, with the '$' rule (what forEachMatch visits)
    kEverything,  // every retained message, '$' topics included (what forEach visits)
  };

  // Starts a walk; copies `filter` (ignored for kEverything). REQUIRES: for kFilter,
  // validateTopicFilter(filter) == TopicStatus::kOk. Allocates.
  explicit RetainedCursor(std::string_view filter, Scope scope = Scope::kFilter);

  // Continues the walk for about `budget` units of work (see the cost model above; a budget of 0
  // counts as 1). Calls take(message) for each matching retained message; take returns false to
  // refuse it (no room), which ends this slice: the next resume() offers that topic again first.
  // The message is valid until the caller's next quiescent state (MessageRef::share keeps it
  // longer). take must not pass a quiescent state, go offline or use this cursor; it may write
  // to the store (the guarantees above hold for changes made during a slice as well).
  // Returns true when the walk is complete; later calls return true and offer nothing.
  // REQUIRES: the calling thread is a registered, online reader of the store's domain; the same
  // store for the whole walk. Keeps no pointer into the store after it returns. Never locks;
  // allocates only to grow the cursor's own buffers.
  bool resume(const RetainedStore& store, std::size_t budget,
              common::FunctionRef<bool(const common::Message&)> take);

  // True once a resume() has returned true. Any thread that owns the cursor.
  bool done() const noexcept { return done_; }

  // Heap bytes the cursor holds (frames, snapshots, filter copy, scratch), for the broker's
  // memory accounting. Never allocates.
  std::size_t memoryBytes() const noexcept;

  // What the last resume() did, for tests and tuning.
  struct SliceStats {
    std::size_t units = 0;            // work charged to the budget (see the cost model)
    std::size_t relookups = 0;        // child lookups spent re-finding the saved position
    std::size_t largestSnapshot = 0;  // children examined by the largest snapshot of the slice
  };
  const SliceStats& lastSlice() const noexcept { return lastSlice_; }

 private:
  using Node = detail::RetainedNode;
  enum class Stage : std::uint8_t {
    kOffer,     // the node's own message is to be offered
    kExpand,    // the children to visit are to be snapshotted
    kChildren,  // entries [nextEntry, entryEnd) of the snapshot are to be visited
    kFinished,  // nothing left: the frame is popped
  };
  // Marks a frame that walks a whole subtree ('#') instead of matching a filter level.
  static constexpr std::uint32_t kSubtree = 0xFFFFFFFFu;

  // One level of the path being walked. Frame k > 0 is the child named by entry
  // frames_[k - 1].nextEntry - 1 of its parent's snapshot.
  struct Frame {
    std::size_t firstEntry;     // this frame's snapshot is entries [firstEntry, entryEnd)
    std::size_t entryEnd;       // equal to firstEntry until kExpand ran
    std::size_t nextEntry;      // the next entry to visit
    std::uint32_t filterLevel;  // index of the filter level the children must match, or kSubtree
    Stage stage;
    bool skipDollar;  // a first-level '+' or '#': leave out children whose level starts with '$'
  };

  // A frame for a node whose children are matched against filter level `matched`
  // (levelEnds_.size(): the node matched the whole filter; kSubtree: inside a '#'), with its
  // snapshot starting at the current end of the entries.
  Frame makeFrame(std::uint32_t matched) const noexcept;
  std::string_view filterLevel(std::size_t i) const noexcept;
  // The text of entry i. REQUIRES: i < liveFrom_ (materialized).
  std::string_view entryText(std::size_t i) const noexcept;
  void appendLive(const Node* child);
  // Drops frames [k, end) and their snapshots (and their nodes_, if set).
  void truncateFrames(std::size_t k) noexcept;
  // The walk itself, from the position nodes_ holds; true when it completed.
  bool walk(std::size_t budget, common::FunctionRef<bool(const common::Message&)> take);
  // Turns the live entries into texts at the end of a slice (see retained_cursor.cpp).
  void materialize();
  void finish() noexcept;

  std::string filter_;                  // set by the constructor, freed when done (or empty)
  std::vector<std::size_t> levelEnds_;  // end offset in filter_ of each filter level
  std::vector<Frame> frames_;           // root first; empty once done
  // The snapshots of all frames, as a stack of entries. Between slices every entry is a text:
  // entry i is text_[ends_[i - 1], ends_[i]) (empty for entries that are no longer needed).
  std::string text_;
  std::vector<std::size_t> ends_;
  // Scratch of one resume(), emptied before it returns (capacities are kept, bounded):
  std::vector<const Node*> nodes_;  // the node of each frame
  // Entries [liveFrom_, ends_.size()) were snapshotted during this resume and are still nodes,
  // live_[i - liveFrom_]; their ends_ are placeholders until materialize().
  std::size_t liveFrom_ = 0;
  std::vector<const Node*> live_;
  std::size_t pushedFrom_ = 0;  // frames [pushedFrom_, end) were pushed during this resume
  SliceStats lastSlice_;
  bool done_ = false;
};

}  // namespace tern::routing
