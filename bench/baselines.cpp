#include "baselines.hpp"

#include <algorithm>
#include <bit>
#include <mutex>

#include "tern/routing/topic.hpp"

namespace tern::bench {

using routing::LevelCursor;
using routing::SubscriberId;

void dedupByKey(std::vector<SubscriberId>& ids, std::vector<std::uint32_t>& seen) {
  const std::size_t count = ids.size();
  if (count < 2) return;
  const std::size_t capacity = std::bit_ceil(count * 2);
  const int shift = 64 - std::countr_zero(capacity);
  if (seen.size() < capacity) seen.resize(capacity);
  std::fill_n(seen.begin(), capacity, 0u);
  const std::size_t mask = capacity - 1;
  std::size_t kept = 0;
  for (std::size_t i = 0; i < count; ++i) {
    const SubscriberId id = ids[i];
    // Fibonacci hashing: the high bits of the product depend on every bit of the key.
    std::size_t slot = static_cast<std::size_t>((id.key() * 0x9E3779B97F4A7C15ull) >> shift) & mask;
    for (;; slot = (slot + 1) & mask) {
      if (seen[slot] == 0) {
        seen[slot] = static_cast<std::uint32_t>(kept + 1);
        ids[kept++] = id;
        break;
      }
      SubscriberId& earlier = ids[seen[slot] - 1];
      if (earlier.key() == id.key()) {
        if (id.qos() > earlier.qos()) earlier = id;
        break;
      }
    }
  }
  ids.resize(kept);
}

// ---- NaiveScan -------------------------------------------------------------------------------

void NaiveScan::subscribe(std::string_view filter, SubscriberId id) {
  entries_.push_back({std::string(filter), id});
}

bool NaiveScan::unsubscribe(std::string_view filter, SubscriberId id) {
  for (std::size_t i = entries_.size(); i-- > 0;) {
    if (entries_[i].id.key() != id.key() || entries_[i].filter != filter) continue;
    entries_[i] = std::move(entries_.back());
    entries_.pop_back();
    return true;
  }
  return false;
}

void NaiveScan::match(std::string_view topic, std::vector<SubscriberId>& out) {
  out.clear();
  for (const Entry& entry : entries_)
    if (routing::filterMatches(entry.filter, topic)) out.push_back(entry.id);
  dedupByKey(out, seen_);
}

// ---- LockedTrie ------------------------------------------------------------------------------

struct LockedTrie::Node {
  StringMap<std::unique_ptr<Node>> children;
  std::unique_ptr<Node> plus;
  std::unique_ptr<Node> pound;
  std::unordered_map<std::uint64_t, SubscriberId> subscribers;  // key -> id

  bool empty() const noexcept { return children.empty() && !plus && !pound && subscribers.empty(); }
  // The child slot for `level`, or null when absent and !create.
  std::unique_ptr<Node>* child(std::string_view level, bool create) {
    if (level == "+") return create || plus ? &plus : nullptr;
    if (level == "#") return create || pound ? &pound : nullptr;
    auto it = children.find(level);
    if (it != children.end()) return &it->second;
    if (!create) return nullptr;
    return &children.emplace(std::string(level), nullptr).first->second;
  }
};

LockedTrie::LockedTrie() : root_(std::make_unique<Node>()) {}
LockedTrie::~LockedTrie() = default;

void LockedTrie::subscribe(std::string_view filter, SubscriberId id) {
  std::unique_lock lock(mutex_);
  Node* node = root_.get();
  LevelCursor cursor(filter);
  std::string_view level;
  while (cursor.next(level)) {
    std::unique_ptr<Node>& child = *node->child(level, true);
    if (!child) child = std::make_unique<Node>();
    node = child.get();
  }
  node->subscribers[id.key()] = id;
}

bool LockedTrie::unsubscribe(std::string_view filter, SubscriberId id) {
  std::unique_lock lock(mutex_);
  // Root-to-node path of (parent, level); small and on the stack for every real filter.
  std::vector<std::pair<Node*, std::string_view>> path;
  Node* node = root_.get();
  LevelCursor cursor(filter);
  std::string_view level;
  while (cursor.next(level)) {
    std::unique_ptr<Node>* child = node->child(level, false);
    if (child == nullptr || !*child) return false;
    path.emplace_back(node, level);
    node = child->get();
  }
  if (node->subscribers.erase(id.key()) == 0) return false;
  while (!path.empty() && node->empty()) {
    auto [parent, parentLevel] = path.back();
    path.pop_back();
    if (parentLevel == "+") {
      parent->plus.reset();
    } else if (parentLevel == "#") {
      parent->pound.reset();
    } else {
      parent->children.erase(parent->children.find(parentLevel));
    }
    node = parent;
  }
  return true;
}

namespace {
// Appends a node's subscribers; true when there were any.
bool collect(const std::unordered_map<std::uint64_t, SubscriberId>& subscribers,
             std::vector<SubscriberId>& out) {
  for (const auto& entry : subscribers)
    out.push_back(entry.second);
  return !subscribers.empty();
}
}  // namespace

void LockedTrie::match(std::string_view topic, std::vector<SubscriberId>& out,
                       Scratch& scratch) const {
  out.clear();
  std::vector<const Node*>& frontier = scratch.frontier;
  std::vector<const Node*>& next = scratch.next;
  std::shared_lock lock(mutex_);
  frontier.clear();
  frontier.push_back(root_.get());
  unsigned contributors = 0;
  bool wildcardsApply = topic.front() != '$';  // the '$' rule
  LevelCursor cursor(topic);
  std::string_view level;
  while (cursor.next(level)) {
    next.clear();
    for (const Node* node : frontier) {
      if (wildcardsApply) {
        if (node->pound) contributors += collect(node->pound->subscribers, out);
        if (node->plus) next.push_back(node->plus.get());
      }
      auto it = node->children.find(level);
      if (it != node->children.end()) next.push_back(it->second.get());
    }
    frontier.swap(next);
    if (frontier.empty()) break;
    wildcardsApply = true;
  }
  for (const Node* node : frontier) {
    contributors += collect(node->subscribers, out);
    if (node->pound) contributors += collect(node->pound->subscribers, out);  // "a/#" matches "a"
  }
  lock.unlock();
  if (contributors > 1) dedupByKey(out, scratch.seen);
}

// ---- NaiveRetained ---------------------------------------------------------------------------

void NaiveRetained::set(common::MessageRef message) {
  const std::string_view topic = message->topic();
  if (message->contents().empty()) {
    erase(topic);
    return;
  }
  auto it = messages_.find(topic);
  if (it != messages_.end()) {
    it->second = std::move(message);
  } else {
    messages_.emplace(std::string(topic), std::move(message));
  }
}

bool NaiveRetained::erase(std::string_view topic) {
  auto it = messages_.find(topic);
  if (it == messages_.end()) return false;
  messages_.erase(it);
  return true;
}

void NaiveRetained::forEachMatch(std::string_view filter,
                                 common::FunctionRef<void(const common::Message&)> visit) const {
  for (const auto& entry : messages_)
    if (routing::filterMatches(filter, entry.first)) visit(*entry.second);
}

// ---- LockedRetained --------------------------------------------------------------------------

struct LockedRetained::Node {
  StringMap<std::unique_ptr<Node>> children;
  common::MessageRef message;
};

LockedRetained::LockedRetained() : root_(std::make_unique<Node>()) {}
LockedRetained::~LockedRetained() = default;

void LockedRetained::set(common::MessageRef message) {
  if (message->contents().empty()) {
    erase(message->topic());
    return;
  }
  std::unique_lock lock(mutex_);
  Node* node = root_.get();
  LevelCursor cursor(message->topic());
  std::string_view level;
  while (cursor.next(level)) {
    auto it = node->children.find(level);
    if (it == node->children.end())
      it = node->children.emplace(std::string(level), std::make_unique<Node>()).first;
    node = it->second.get();
  }
  node->message = std::move(message);
}

bool LockedRetained::erase(std::string_view topic) {
  std::unique_lock lock(mutex_);
  std::vector<std::pair<Node*, std::string_view>> path;
  Node* node = root_.get();
  LevelCursor cursor(topic);
  std::string_view level;
  while (cursor.next(level)) {
    auto it = node->children.find(level);
    if (it == node->children.end()) return false;
    path.emplace_back(node, level);
    node = it->second.get();
  }
  if (!node->message) return false;
  node->message = common::MessageRef();
  while (!path.empty() && !node->message && node->children.empty()) {
    auto [parent, parentLevel] = path.back();
    path.pop_back();
    parent->children.erase(parent->children.find(parentLevel));
    node = parent;
  }
  return true;
}

void LockedRetained::forEachMatch(std::string_view filter,
                                  common::FunctionRef<void(const common::Message&)> visit) const {
  // Same walk as RetainedStore::forEachMatch: breadth-first over the filter's levels.
  std::shared_lock lock(mutex_);
  std::vector<const Node*> frontier{root_.get()};
  std::vector<const Node*> next;
  std::vector<std::pair<const Node*, bool>> stack;
  bool firstLevel = true;
  LevelCursor cursor(filter);
  std::string_view level;
  auto isDollar = [](std::string_view text) { return !text.empty() && text.front() == '$'; };
  while (cursor.next(level)) {
    if (level == "#") {
      for (const Node* top : frontier) {
        stack.emplace_back(top, firstLevel);
        while (!stack.empty()) {
          auto [node, skipDollar] = stack.back();
          stack.pop_back();
          if (node->message) visit(*node->message);
          for (const auto& [childLevel, child] : node->children)
            if (!skipDollar || !isDollar(childLevel)) stack.emplace_back(child.get(), false);
        }
      }
      return;
    }
    next.clear();
    for (const Node* node : frontier) {
      if (level != "+") {
        auto it = node->children.find(level);
        if (it != node->children.end()) next.push_back(it->second.get());
        continue;
      }
      for (const auto& [childLevel, child] : node->children)
        if (!firstLevel || !isDollar(childLevel)) next.push_back(child.get());
    }
    frontier.swap(next);
    if (frontier.empty()) return;
    firstLevel = false;
  }
  for (const Node* node : frontier)
    if (node->message) visit(*node->message);
}

}  // namespace tern::bench
