// Authenticator: checks user names and passwords against the password file (--password-file) on a
// thread of its own, so that hashing (about 130 µs at Mosquitto's 101 PBKDF2 iterations, linear in
// the count) never stalls a worker's event loop. A worker submits a CONNECT's credentials and holds
// that connection's input; the verdict comes back through the worker's inbox, and the CONNECT,
// still buffered, is handled again with it (WorkerCore::authenticate).
//
// Failed attempts are slowed down per source address: the n-th failure in a row from an address is
// answered after min(50 ms * 2^(n-1), 5 s), on a timer of this thread (nothing waits on a worker);
// a success from the address resets it. The log names the address and the user, never the
// password.
//
// Ownership: one per broker (BrokerContext), when a password file is given; it outlives the
// workers' use of it (stopped after them). Threads: submit() from any worker; the rest is the
// authenticator's own thread.
#pragma once

#include <concurrentqueue/concurrentqueue.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "tern/auth/password_file.hpp"
#include "tern/common/log_limiter.hpp"
#include "tern/net/connection_limiter.hpp"
#include "tern/net/event_loop.hpp"

namespace tern::broker {

struct BrokerContext;

class Authenticator {
 public:
  static constexpr std::int64_t kFirstDelayNanos = 50'000'000;
  static constexpr std::int64_t kMaxDelayNanos = 5'000'000'000;

  struct Request {
    unsigned worker = 0;
    net::SocketId socket = 0;
    std::uint32_t attempt = 0;
    net::PeerAddress peer;
    bool hasUser = false;  // false: an anonymous CONNECT, refused (--allow-anonymous false)
    std::string user;
    std::string password;
  };

  Authenticator(BrokerContext& context, auth::PasswordFile passwords);
  ~Authenticator();  // stops the thread; verdicts not yet posted are dropped
  Authenticator(const Authenticator&) = delete;
  Authenticator& operator=(const Authenticator&) = delete;

  // Queues `request`; its verdict is posted to request.worker's inbox (InboxItem::kAuthVerdict).
  // Any thread; never blocks on the verification.
  void submit(Request&& request);
  // A reload: requests checked from now on use `passwords`. Any thread.
  void replace(auth::PasswordFile passwords) {
    auto fresh = std::make_shared<const auth::PasswordFile>(std::move(passwords));
    const std::lock_guard lock(passwordsMutex_);
    passwords_ = std::move(fresh);
  }

 private:
  void run();

  BrokerContext& context_;
  // Replaced whole by a reload; taken once per batch of requests by the authenticator's thread
  // (the mutex is never on a worker's path).
  std::mutex passwordsMutex_;
  std::shared_ptr<const auth::PasswordFile> passwords_;  // guarded by passwordsMutex_
  moodycamel::ConcurrentQueue<Request> requests_;
  // Wakes the thread: a submit sets `pending_` and notifies. The mutex guards only the sleep (the
  // workers' submit takes it briefly, off every publish path).
  std::mutex wakeMutex_;
  std::condition_variable wake_;
  bool pending_ = false;   // guarded by wakeMutex_
  bool stopping_ = false;  // guarded by wakeMutex_
  common::LogLimiter failureLog_;
  std::thread thread_;
};

}  // namespace tern::broker
