#include "tern/routing/retained_store.hpp"

#include <cassert>

#include "routing/child_table.hpp"
#include "tern/routing/topic.hpp"

namespace tern::routing {
namespace detail {

using RetainedChildren = ChildLink<RetainedNode>;

// One topic level. `message` holds one reference to the retained message of the topic that ends
// here, or is null.
struct RetainedNode {
  RetainedNode(std::uint32_t levelHash, std::uint32_t levelSize) noexcept
      : hash(levelHash), size(levelSize) {}
  std::string_view level() const noexcept {
    return {reinterpret_cast<const char*>(this + 1), size};
  }
  char* levelStorage() noexcept { return reinterpret_cast<char*>(this + 1); }

  std::atomic<const common::Message*> message{nullptr};
  RetainedChildren children;
  const std::uint32_t hash;  // hashLevel(level())
  const std::uint32_t size;  // the level text follows the node in the same allocation
};

}  // namespace detail

namespace {

using detail::RetainedChildren;
using detail::RetainedNode;

// Drops the store's reference to a message after the grace period, when no reader can still be
// looking at it without a reference of its own. Matches QsbrDomain::Deleter.
void releaseMessage(void* message) {
  static_cast<const common::Message*>(message)->release();
}

// Calls visit for the message of `top` and of every node below it. With skipDollar, children of
// `top` whose level starts with '$' are left out (the '$' rule for a first-level '#'). Reader
// side; an explicit stack, because a topic may have tens of thousands of levels.
void visitSubtree(const RetainedNode* top, bool skipDollar,
                  common::FunctionRef<void(const common::Message&)> visit) {
  std::vector<const RetainedNode*> stack{top};
  while (!stack.empty()) {
    const RetainedNode* node = stack.back();
    stack.pop_back();
    // Acquire (message and table): their contents were complete before the release store.
    if (const common::Message* message = node->message.load(std::memory_order_acquire))
      visit(*message);
    const bool skip = skipDollar && node == top;
    node->children.load().forEach([&](const RetainedNode* child) {
      if (skip && !child->level().empty() && child->level().front() == '$') return;
      stack.push_back(child);
    });
  }
}

// Frees `root` and everything below it at once, dropping the store's message references.
// REQUIRES: no reader can reach it.
void destroySubtree(RetainedNode* root) {
  std::vector<RetainedNode*> stack{root};
  while (!stack.empty()) {
    RetainedNode* node = stack.back();
    stack.pop_back();
    if (const common::Message* message = node->message.load(std::memory_order_relaxed))
      message->release();
    node->children.load().forEach([&](RetainedNode* child) { stack.push_back(child); });
    node->children.destroyTable();
    detail::freeLevelNode<RetainedNode>(node);
  }
}

}  // namespace

RetainedStore::RetainedStore(sync::QsbrDomain& domain) : RetainedStore(domain, Limits{}) {}

RetainedStore::RetainedStore(sync::QsbrDomain& domain, Limits limits)
    : domain_(domain), limits_(limits), root_(detail::makeLevelNode<RetainedNode>({}, 0)) {}

RetainedStore::~RetainedStore() {
  destroySubtree(root_);
}

RetainedStore::SetResult RetainedStore::set(common::MessageRef message) {
  assert(message && validateTopicName(message->topic()) == TopicStatus::kOk);
  if (message->contents().empty()) {
    erase(message->topic());
    return SetResult::kDeleted;
  }
  std::lock_guard lock(writerMutex_);
  // The limits first, before any node is made: what the topic holds now, if anything.
  const Node* existing = root_;
  LevelCursor probe(message->topic());
  std::string_view level;
  while (existing != nullptr && probe.next(level))
    existing = existing->children.load().find(level, detail::hashLevel(level));
  const common::Message* previous =
      existing != nullptr ? existing->message.load(std::memory_order_relaxed) : nullptr;
  const std::size_t held = bytes_.load(std::memory_order_relaxed);
  const std::size_t released = previous != nullptr ? previous->footprint() : 0;
  const std::size_t added = message->footprint();
  if (previous == nullptr && size_.load(std::memory_order_relaxed) >= limits_.maxMessages) {
    return SetResult::kRefused;
  }
  if (added > released && held - released + added > limits_.maxBytes) return SetResult::kRefused;
  Node* node = root_;
  LevelCursor cursor(message->topic());
  while (cursor.next(level)) {
    const std::uint32_t hash = detail::hashLevel(level);
    Node* child = node->children.load().find(level, hash);
    if (child == nullptr) {
      // Linked empty; readers that find it before its message is stored see no message.
      child = detail::makeLevelNode<Node>(level, hash);
      node->children.insert(child, domain_);
    }
    node = child;
  }
  const std::size_t footprint = message->footprint();
  // Release: the message's bytes were written before readers can load the pointer.
  const common::Message* old = node->message.load(std::memory_order_relaxed);
  node->message.store(message.release(), std::memory_order_release);
  if (old != nullptr) {
    bytes_.store(bytes_.load(std::memory_order_relaxed) - old->footprint(),
                 std::memory_order_relaxed);
    domain_.retire(const_cast<common::Message*>(old), &releaseMessage);
  } else {
    size_.store(size_.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  }
  bytes_.store(bytes_.load(std::memory_order_relaxed) + footprint, std::memory_order_relaxed);
  return SetResult::kStored;
}

bool RetainedStore::erase(std::string_view topic) {
  assert(validateTopicName(topic) == TopicStatus::kOk);
  std::lock_guard lock(writerMutex_);
  path_.clear();
  path_.push_back(root_);
  LevelCursor cursor(topic);
  std::string_view level;
  while (cursor.next(level)) {
    Node* child = path_.back()->children.load().find(level, detail::hashLevel(level));
    if (child == nullptr) return false;
    path_.push_back(child);
  }
  if (path_.back()->message.load(std::memory_order_relaxed) == nullptr) return false;
  eraseLocked();
  return true;
}

void RetainedStore::eraseLocked() {
  Node* node = path_.back();
  const common::Message* old = node->message.load(std::memory_order_relaxed);
  // Relaxed: storing null publishes nothing; readers that still load the old pointer use it
  // before their next quiescent state, and the reference is dropped only after the grace period.
  node->message.store(nullptr, std::memory_order_relaxed);
  size_.store(size_.load(std::memory_order_relaxed) - 1, std::memory_order_relaxed);
  bytes_.store(bytes_.load(std::memory_order_relaxed) - old->footprint(),
               std::memory_order_relaxed);
  domain_.retire(const_cast<common::Message*>(old), &releaseMessage);
  while (path_.size() > 1) {
    node = path_.back();
    if (node->message.load(std::memory_order_relaxed) != nullptr) return;
    if (!node->children.load().empty()) return;
    path_.pop_back();
    path_.back()->children.erase(node, domain_);
    domain_.retire(node, &detail::freeLevelNode<Node>);
  }
}

void RetainedStore::forEachMatch(std::string_view filter,
                                 common::FunctionRef<void(const common::Message&)> visit) const {
  assert(validateTopicFilter(filter) == TopicStatus::kOk);
  // Breadth-first over the filter's levels: `frontier` holds the nodes matching the levels seen
  // so far. Only branches that can match are visited.
  std::vector<const Node*> frontier{root_};
  std::vector<const Node*> next;
  bool firstLevel = true;
  LevelCursor cursor(filter);
  std::string_view level;
  while (cursor.next(level)) {
    if (level == "#") {
      // Everything below the frontier, and the frontier itself ("a/#" matches "a"; the root
      // holds no message). A first-level '#' skips '$' topics.
      for (const Node* node : frontier)
        visitSubtree(node, firstLevel, visit);
      return;
    }
    next.clear();
    const bool plus = level == "+";
    const std::uint32_t hash = plus ? 0 : detail::hashLevel(level);
    for (const Node* node : frontier) {
      const RetainedChildren::View children = node->children.load();
      if (!plus) {
        if (const Node* child = children.find(level, hash)) next.push_back(child);
        continue;
      }
      children.forEach([&](const Node* child) {
        // The '$' rule for a first-level '+'.
        if (firstLevel && !child->level().empty() && child->level().front() == '$') return;
        next.push_back(child);
      });
    }
    frontier.swap(next);
    if (frontier.empty()) return;
    firstLevel = false;
  }
  for (const Node* node : frontier) {
    // Acquire: the message's bytes were written before its release store.
    if (const common::Message* message = node->message.load(std::memory_order_acquire))
      visit(*message);
  }
}

void RetainedStore::forEach(common::FunctionRef<void(const common::Message&)> visit) const {
  visitSubtree(root_, false, visit);
}

const RetainedNode* RetainedStore::findChild(const Node* node, std::string_view level) noexcept {
  return node->children.load().find(level, detail::hashLevel(level));
}

const common::Message* RetainedStore::messageOf(const Node* node) noexcept {
  // Acquire: the message's bytes were written before its release store.
  return node->message.load(std::memory_order_acquire);
}

bool RetainedStore::hasChildren(const Node* node) noexcept {
  return !node->children.load().empty();
}

std::string_view RetainedStore::levelOf(const Node* node) noexcept {
  return node->level();
}

std::size_t RetainedStore::forEachChild(const Node* node, bool skipDollar,
                                        common::FunctionRef<void(const Node*)> visit) {
  std::size_t examined = 0;
  node->children.load().forEach([&](const Node* child) {
    ++examined;
    if (skipDollar && !child->level().empty() && child->level().front() == '$') return;
    visit(child);
  });
  return examined;
}

}  // namespace tern::routing
