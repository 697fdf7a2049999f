#include "authenticator.hpp"

#include <algorithm>
#include <chrono>
#include <queue>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "broker_context.hpp"
#include "tern/common/clock.hpp"
#include "tern/common/log.hpp"
#include "worker.hpp"

namespace tern::broker {
namespace {

constexpr std::size_t kRequestsPerPop = 64;
// Addresses remembered for their failures; past this the memory is cleared (a flood of sources
// then gets the first delay again, which still bounds each source's attempts per second).
constexpr std::size_t kMaxTrackedAddresses = 1 << 16;

struct AddressHash {
  std::size_t operator()(const net::PeerAddress& a) const noexcept {
    return std::hash<std::string_view>{}(
        std::string_view(reinterpret_cast<const char*>(a.bytes.data()), a.bytes.size()));
  }
};

struct Due {
  std::int64_t when;
  unsigned worker;
  net::SocketId socket;
  std::uint32_t attempt;
  bool operator>(const Due& other) const noexcept { return when > other.when; }
};

}  // namespace

Authenticator::Authenticator(BrokerContext& context, auth::PasswordFile passwords)
    : context_(context),
      passwords_(std::make_shared<const auth::PasswordFile>(std::move(passwords))),
      thread_([this] { run(); }) {}

Authenticator::~Authenticator() {
  {
    const std::lock_guard lock(wakeMutex_);
    stopping_ = true;
  }
  wake_.notify_one();
  thread_.join();
}

void Authenticator::submit(Request&& request) {
  requests_.enqueue(std::move(request));
  {
    const std::lock_guard lock(wakeMutex_);
    pending_ = true;
  }
  wake_.notify_one();
}

void Authenticator::run() {
  std::priority_queue<Due, std::vector<Due>, std::greater<>> delayed;
  std::unordered_map<net::PeerAddress, std::uint32_t, AddressHash> failures;
  const auto post = [this](unsigned worker, net::SocketId socket, std::uint32_t attempt, bool ok) {
    InboxItem item;
    item.kind = InboxItem::Kind::kAuthVerdict;
    item.socket = socket;
    item.attempt = attempt;
    item.accepted = ok;
    context_.workers[worker]->post(std::move(item));
  };
  Request batch[kRequestsPerPop];
  for (;;) {
    std::size_t n = 0;
    while ((n = requests_.try_dequeue_bulk(batch, kRequestsPerPop)) != 0) {
      std::shared_ptr<const auth::PasswordFile> passwords;
      {
        const std::lock_guard lock(passwordsMutex_);
        passwords = passwords_;
      }
      for (std::size_t k = 0; k < n; ++k) {
        Request& r = batch[k];
        const auth::PasswordHash* hash = r.hasUser ? passwords->find(r.user) : nullptr;
        const bool ok = hash != nullptr && hash->verify(r.password);
        // The password is not kept a moment longer than needed.
        std::fill(r.password.begin(), r.password.end(), '\0');
        r.password.clear();
        if (ok) {
          failures.erase(r.peer);
          post(r.worker, r.socket, r.attempt, true);
          continue;
        }
        if (failures.size() >= kMaxTrackedAddresses) failures.clear();
        const std::uint32_t inARow = ++failures[r.peer];
        const std::int64_t delay =
            std::min(kMaxDelayNanos, kFirstDelayNanos << std::min<std::uint32_t>(inARow - 1, 20));
        const std::int64_t now = common::monotonicNanos();
        delayed.push({now + delay, r.worker, r.socket, r.attempt});
        if (const std::uint64_t times = failureLog_.admit(now)) {
          TERN_LOG_WARN(
              "authentication failed for {} from {} ({} in a row from this address; {} "
              "failure(s) since the last such line)",
              r.hasUser ? "user '" + r.user + "'" : std::string("an anonymous client"),
              net::toString(r.peer), inARow, times);
        }
      }
    }
    const std::int64_t now = common::monotonicNanos();
    while (!delayed.empty() && delayed.top().when <= now) {
      const Due due = delayed.top();
      delayed.pop();
      post(due.worker, due.socket, due.attempt, false);
    }
    std::unique_lock lock(wakeMutex_);
    if (stopping_) return;
    if (!pending_) {
      if (delayed.empty()) {
        wake_.wait(lock, [this] { return pending_ || stopping_; });
      } else {
        wake_.wait_for(lock, std::chrono::nanoseconds(delayed.top().when - now),
                       [this] { return pending_ || stopping_; });
      }
    }
    if (stopping_) return;
    pending_ = false;
  }
}

}  // namespace tern::broker
