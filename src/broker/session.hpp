// Session: one line-protocol client session (up to two request sockets and one push socket).
//
// Ownership: owned by the worker that is its home (the worker its client id hashes to); all of its
// sockets are owned by that worker too, so a session is only ever touched by one thread. Other
// workers refer to it only by SubscriberId (worker, slot, generation) inside delivery batches; a
// stale id (session ended, slot reused) is detected by the generation and the delivery dropped.
#pragma once

#include <cstdint>
#include <string>
#include <unordered_set>

#include "connection.hpp"
#include "tern/net/byte_buffer.hpp"
#include "tern/routing/subscriber_id.hpp"

namespace tern::broker {

struct Session {
  routing::SubscriberId id;
  std::string clientId;
  std::string token;
  Connection* request[2] = {nullptr, nullptr};
  Connection* push = nullptr;
  // Pushes queued while no push socket is attached (bounded like a socket's output).
  net::ByteBuffer pending;
  // Filters in trie form ('*' rewritten to '+'), so "a/*" and "a/+" are one subscription.
  std::unordered_set<std::string> filters;
  std::uint64_t dropped = 0;  // pushes dropped because the queue was full
  bool ended = false;

  int socketCount() const noexcept {
    return (request[0] != nullptr) + (request[1] != nullptr) + (push != nullptr);
  }
  // Where a push goes right now: the push socket's output, or the pending queue.
  net::ByteBuffer& pushTarget() noexcept { return push != nullptr ? push->out : pending; }
};

}  // namespace tern::broker
