#include "tern/client/session.hpp"

#include <fmt/format.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cassert>
#include <cerrno>
#include <cstring>
#include <memory>

#include "tern/client/frames.hpp"

namespace tern::client {
namespace {

using Clock = std::chrono::steady_clock;

int millisecondsUntil(Clock::time_point deadline) {
  const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return left <= 0 ? 0 : static_cast<int>(std::min<long long>(left, 1'000'000'000));
}

// Shortest of a poll(2) timeout (-1: none) and the time to `deadline`.
int earliest(int waitMs, Clock::time_point deadline) {
  const int untilDeadline = millisecondsUntil(deadline);
  return waitMs < 0 ? untilDeadline : std::min(waitMs, untilDeadline);
}

struct AddressListDeleter {
  void operator()(addrinfo* list) const noexcept { freeaddrinfo(list); }
};

// Connects a non-blocking TCP socket to `address` by `deadline`. Returns the descriptor, or -1 with
// `error` set.
int connectTcp(const addrinfo& address, Clock::time_point deadline, std::string& error) {
  const int fd = ::socket(address.ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    error = std::strerror(errno);
    return -1;
  }
  if (::connect(fd, address.ai_addr, address.ai_addrlen) != 0) {
    if (errno != EINPROGRESS) {
      error = std::strerror(errno);
      ::close(fd);
      return -1;
    }
    pollfd pfd{fd, POLLOUT, 0};
    int ready;
    do {
      ready = ::poll(&pfd, 1, millisecondsUntil(deadline));
    } while (ready < 0 && errno == EINTR);
    int soError = 0;
    socklen_t length = sizeof(soError);
    if (ready == 0) {
      error = "no answer (timed out)";
    } else if (ready < 0 || ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &soError, &length) != 0) {
      error = std::strerror(errno);
    } else if (soError != 0) {
      error = std::strerror(soError);
    }
    if (!error.empty()) {
      ::close(fd);
      return -1;
    }
  }
  // Requests are small and each one waits for its reply: send them at once.
  const int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  return fd;
}

}  // namespace

std::string_view describe(SocketRole role) noexcept {
  switch (role) {
    case SocketRole::kFirst:
      return "request socket 1";
    case SocketRole::kSecond:
      return "request socket 2";
    case SocketRole::kPush:
      return "the push socket";
  }
  return "socket";
}

Session::Session(SessionOptions options) : options_(std::move(options)) {
  for (Socket& s : sockets_)
    s.reader = LineReader(options_.maxFrameBytes);
}

Session::~Session() {
  close();
}

void Session::close() noexcept {
  for (Socket& s : sockets_) {
    if (s.open()) ::close(s.fd);
    s.fd = -1;
    s.reader = LineReader(options_.maxFrameBytes);
    s.out.clear();
    s.written = 0;
    s.tls.reset();
    s.wire.consume(s.wire.size());
    s.plain.consume(s.plain.size());
  }
  pending_.clear();
  state_ = State::kClosed;
}

SessionStatus Session::fail(SessionStatus status, std::string text) {
  lastError_ = std::move(text);
  close();
  return status;
}

void Session::queue(SocketRole role, std::string_view frame) {
  Socket& s = socket(role);
  s.out.append(frame);
  s.out += '\n';
}

SessionStatus Session::openSocket(SocketRole role, const void* addressList) {
  const Clock::time_point deadline = Clock::now() + options_.timeout;
  std::string error;
  for (auto* a = static_cast<const addrinfo*>(addressList); a != nullptr; a = a->ai_next) {
    error.clear();
    const int fd = connectTcp(*a, deadline, error);
    if (fd >= 0) {
      Socket& s = socket(role);
      s.fd = fd;
      if (options_.tls) {
        s.tls = std::make_unique<net::TlsSession>(*options_.tls, options_.tlsServerName);
        // The ClientHello; what is queued before the handshake ends waits inside the engine.
        if (s.tls->failed() ||
            s.tls->read({}, s.plain, s.wire) == net::TlsSession::Status::kFailed) {
          return fail(SessionStatus::kUnreachable, fmt::format("TLS with {}:{}: {}", options_.host,
                                                               options_.port, s.tls->error()));
        }
      }
      return SessionStatus::kOk;
    }
  }
  return fail(SessionStatus::kUnreachable,
              fmt::format("cannot connect to {}:{}: {}", options_.host, options_.port, error));
}

SessionStatus Session::awaitHandshakeFrame(SocketRole role, std::string& frame) {
  Socket& s = socket(role);
  const Clock::time_point deadline = Clock::now() + options_.timeout;
  bool ended = false;
  std::string error;
  for (;;) {
    std::string_view view;
    switch (s.reader.next(view)) {
      case LineReader::Result::kFrame:
        frame.assign(view);
        return SessionStatus::kOk;
      case LineReader::Result::kTooLong:
        return fail(SessionStatus::kTooLong,
                    fmt::format("the broker sent a frame longer than {} bytes on {}",
                                options_.maxFrameBytes, describe(role)));
      case LineReader::Result::kNeedMore:
        break;
    }
    if (ended && !error.empty() && s.tls && s.tls->failed()) {
      return fail(SessionStatus::kUnreachable,
                  fmt::format("TLS handshake with {}:{} failed on {}: {}", options_.host,
                              options_.port, describe(role), error));
    }
    if (ended) {
      return fail(SessionStatus::kClosed,
                  fmt::format("the broker closed {} during the handshake{}", describe(role),
                              error.empty() ? "" : " (" + error + ")"));
    }
    if (SessionStatus status = flush(role); status != SessionStatus::kOk) return status;
    pollfd pfd{s.fd, static_cast<short>(POLLIN | (s.hasOutput() ? POLLOUT : 0)), 0};
    const int ready = ::poll(&pfd, 1, millisecondsUntil(deadline));
    if (ready < 0 && errno != EINTR) {
      return fail(SessionStatus::kClosed, fmt::format("poll: {}", std::strerror(errno)));
    }
    if (ready == 0) {
      return fail(SessionStatus::kTimeout, fmt::format("no handshake reply on {} within {} ms",
                                                       describe(role), options_.timeout.count()));
    }
    if (ready > 0 && (pfd.revents & (POLLIN | POLLHUP | POLLERR)) != 0) {
      ended = readSocket(role, error) != ReadResult::kOk;
    }
  }
}

SessionStatus Session::connect(std::string_view connectFrame, SessionListener& listener) {
  assert(state_ == State::kClosed);
  close();
  clientId_.clear();
  token_.clear();

  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* raw = nullptr;
  const std::string port = std::to_string(options_.port);
  if (const int rc = ::getaddrinfo(options_.host.c_str(), port.c_str(), &hints, &raw); rc != 0) {
    return fail(SessionStatus::kUnreachable,
                fmt::format("cannot resolve {}: {}", options_.host, ::gai_strerror(rc)));
  }
  const std::unique_ptr<addrinfo, AddressListDeleter> addresses(raw);

  // Socket 1: CONNECT -> CONNACK@<client-id>@<token>.
  if (SessionStatus s = openSocket(SocketRole::kFirst, addresses.get()); s != SessionStatus::kOk) {
    return s;
  }
  queue(SocketRole::kFirst, connectFrame);
  std::string frame;
  if (SessionStatus s = awaitHandshakeFrame(SocketRole::kFirst, frame); s != SessionStatus::kOk) {
    return s;
  }
  listener.onFrame(FrameKind::kHandshake, frame);
  {
    const std::string_view reply = frame;
    const std::size_t idAt = reply.find('@');
    const std::size_t tokenAt = idAt == std::string_view::npos ? idAt : reply.find('@', idAt + 1);
    if (reply.substr(0, idAt) != "CONNACK" || tokenAt == std::string_view::npos) {
      return fail(SessionStatus::kRejected, fmt::format("the broker refused CONNECT: {}", reply));
    }
    clientId_.assign(reply.substr(idAt + 1, tokenAt - idAt - 1));
    token_.assign(reply.substr(tokenAt + 1));
  }

  // Sockets 2 and 3: ATTACH@<token>@request and ATTACH@<token>@push, both in flight at once.
  for (SocketRole role : {SocketRole::kSecond, SocketRole::kPush}) {
    if (SessionStatus s = openSocket(role, addresses.get()); s != SessionStatus::kOk) return s;
    queue(role,
          fmt::format("ATTACH@{}@{}", token_, role == SocketRole::kPush ? "push" : "request"));
    if (SessionStatus s = flush(role); s != SessionStatus::kOk) return s;
  }
  for (SocketRole role : {SocketRole::kSecond, SocketRole::kPush}) {
    if (SessionStatus s = awaitHandshakeFrame(role, frame); s != SessionStatus::kOk) return s;
    listener.onFrame(FrameKind::kHandshake, frame);
    const std::string_view expected =
        role == SocketRole::kPush ? "ATTACHACK@push" : "ATTACHACK@request";
    if (frame != expected) {
      return fail(SessionStatus::kRejected,
                  fmt::format("the broker refused to attach {}: {}", describe(role), frame));
    }
  }
  state_ = State::kOpen;
  return SessionStatus::kOk;
}

SessionStatus Session::send(std::string_view request) {
  assert(state_ == State::kOpen);
  assert(request.find('\n') == std::string_view::npos);
  const SocketRole role = requestRole();
  queue(role, request);
  const bool disconnect = frameTypeIs(request, "DISCONNECT") && request.find('@') == request.npos;
  pending_.push_back({Clock::now() + options_.timeout, disconnect});
  return flush(role);
}

Session::ReadResult Session::readSocket(SocketRole role, std::string& error) {
  Socket& s = socket(role);
  if (s.tls) return readTlsSocket(s, error);
  // A bounded number of reads per round keeps one flooding socket from starving the others.
  for (int round = 0; round < 16; ++round) {
    const std::span<char> space = s.reader.writable(64 * 1024);
    const ssize_t n = ::recv(s.fd, space.data(), space.size(), 0);
    if (n > 0) {
      s.reader.commit(static_cast<std::size_t>(n));
      if (static_cast<std::size_t>(n) < space.size()) return ReadResult::kOk;
      continue;
    }
    if (n == 0) return ReadResult::kEof;
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return ReadResult::kOk;
    error = std::strerror(errno);
    return ReadResult::kError;
  }
  return ReadResult::kOk;
}

Session::ReadResult Session::readTlsSocket(Socket& s, std::string& error) {
  char cipher[16 * 1024];
  for (int round = 0; round < 16; ++round) {
    const ssize_t n = ::recv(s.fd, cipher, sizeof cipher, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return ReadResult::kOk;
    if (n < 0) {
      error = std::strerror(errno);
      return ReadResult::kError;
    }
    if (n == 0) return ReadResult::kEof;
    const net::TlsSession::Status status =
        s.tls->read(std::span<const char>(cipher, static_cast<std::size_t>(n)), s.plain, s.wire);
    if (!s.plain.empty()) {
      s.reader.append(s.plain.view());
      s.plain.consume(s.plain.size());
    }
    if (status == net::TlsSession::Status::kFailed) {
      error = s.tls->error();
      return ReadResult::kTlsFailed;
    }
    if (status == net::TlsSession::Status::kClosed) return ReadResult::kEof;  // close_notify
    if (static_cast<std::size_t>(n) < sizeof cipher) return ReadResult::kOk;
  }
  return ReadResult::kOk;
}

SessionStatus Session::flush(SocketRole role) {
  Socket& s = socket(role);
  if (s.tls) return flushTls(role);
  while (s.written < s.out.size()) {
    const ssize_t n =
        ::send(s.fd, s.out.data() + s.written, s.out.size() - s.written, MSG_NOSIGNAL);
    if (n >= 0) {
      s.written += static_cast<std::size_t>(n);
      continue;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return SessionStatus::kOk;
    return fail(SessionStatus::kClosed,
                fmt::format("cannot write to {}: {}", describe(role), std::strerror(errno)));
  }
  s.out.clear();
  s.written = 0;
  return SessionStatus::kOk;
}

SessionStatus Session::flushTls(SocketRole role) {
  Socket& s = socket(role);
  if (!s.out.empty()) {
    const net::TlsSession::Status status = s.tls->write(s.out, s.wire);
    s.out.clear();
    if (status == net::TlsSession::Status::kFailed) {
      return fail(SessionStatus::kClosed,
                  fmt::format("TLS failed on {}: {}", describe(role), s.tls->error()));
    }
  }
  while (!s.wire.empty()) {
    const std::string_view bytes = s.wire.view();
    const ssize_t n = ::send(s.fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n >= 0) {
      s.wire.consume(static_cast<std::size_t>(n));
      continue;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return SessionStatus::kOk;
    return fail(SessionStatus::kClosed,
                fmt::format("cannot write to {}: {}", describe(role), std::strerror(errno)));
  }
  return SessionStatus::kOk;
}

void Session::deliver(SocketRole role, std::string_view frame, SessionListener& listener) {
  if (role == SocketRole::kPush) {
    listener.onFrame(FrameKind::kPush, frame);
    return;
  }
  if (role != requestRole() || pending_.empty()) {
    listener.onFrame(FrameKind::kUnsolicited, frame);
    return;
  }
  const bool disconnect = pending_.front().disconnect;
  pending_.pop_front();
  if (disconnect && frame == "DISCONNACK" && state_ == State::kOpen) {
    // Requests pipelined after the DISCONNECT will never be answered.
    pending_.clear();
    state_ = State::kDraining;
    drainDeadline_ = Clock::now() + options_.timeout;
  }
  listener.onFrame(FrameKind::kReply, frame);
}

SessionStatus Session::dispatch(SocketRole role, SessionListener& listener, bool& any) {
  Socket& s = socket(role);
  for (;;) {
    std::string_view frame;
    switch (s.reader.next(frame)) {
      case LineReader::Result::kFrame:
        any = true;
        deliver(role, frame, listener);
        if (state_ == State::kClosed) return SessionStatus::kClosed;
        break;
      case LineReader::Result::kNeedMore:
        return SessionStatus::kOk;
      case LineReader::Result::kTooLong:
        return fail(SessionStatus::kTooLong,
                    fmt::format("the broker sent a frame longer than {} bytes on {}",
                                options_.maxFrameBytes, describe(role)));
    }
  }
}

SessionStatus Session::closedByBroker(SocketRole role, const std::string& error) {
  const bool disconnecting =
      state_ == State::kDraining ||
      std::any_of(pending_.begin(), pending_.end(), [](const InFlight& f) { return f.disconnect; });
  // While a DISCONNECT is in flight the broker closes the sockets, possibly before its DISCONNACK
  // (written on another socket) has arrived: only the request socket must stay until that reply.
  if (disconnecting && (state_ == State::kDraining || role != requestRole())) {
    Socket& s = socket(role);
    ::close(s.fd);
    s.fd = -1;
    if (std::none_of(sockets_.begin(), sockets_.end(), [](const Socket& x) { return x.open(); })) {
      close();
    }
    return SessionStatus::kOk;
  }
  return fail(SessionStatus::kClosed,
              error.empty() ? fmt::format("the broker closed {}", describe(role))
                            : fmt::format("the broker reset {} ({})", describe(role), error));
}

SessionStatus Session::poll(int waitMs, std::span<pollfd> extra, SessionListener& listener) {
  constexpr std::size_t kSockets = 3;
  assert(extra.size() <= kMaxExtraFds);
  extra = extra.first(std::min(extra.size(), kMaxExtraFds));
  pollfd fds[kSockets + kMaxExtraFds];
  if (state_ == State::kClosed) {
    for (pollfd& p : extra)
      p.revents = 0;
    const int ready = ::poll(extra.data(), extra.size(), waitMs);
    return ready < 0 && errno != EINTR ? fail(SessionStatus::kClosed, "poll failed")
                                       : SessionStatus::kOk;
  }

  // Frames left in the readers (after the handshake, or past a listener's interest) come first.
  bool any = false;
  for (std::size_t i = 0; i < kSockets; ++i) {
    if (!sockets_[i].open()) continue;
    if (SessionStatus s = dispatch(static_cast<SocketRole>(i), listener, any);
        s != SessionStatus::kOk) {
      return s;
    }
  }

  int timeout = waitMs;
  if (any) {
    timeout = 0;
  } else if (state_ == State::kDraining) {
    timeout = earliest(timeout, drainDeadline_);
  } else if (!pending_.empty()) {
    timeout = earliest(timeout, pending_.front().deadline);
  }
  for (std::size_t i = 0; i < kSockets; ++i) {
    const Socket& s = sockets_[i];
    // A closed slot gets fd -1, which poll(2) skips.
    fds[i] = {s.fd, static_cast<short>(POLLIN | (s.hasOutput() ? POLLOUT : 0)), 0};
  }
  std::copy(extra.begin(), extra.end(), fds + kSockets);
  const int ready = ::poll(fds, kSockets + extra.size(), timeout);
  if (ready < 0) {
    if (errno == EINTR) return SessionStatus::kOk;
    return fail(SessionStatus::kClosed, fmt::format("poll: {}", std::strerror(errno)));
  }
  for (std::size_t i = 0; i < extra.size(); ++i)
    extra[i].revents = fds[kSockets + i].revents;

  for (std::size_t i = 0; i < kSockets && state_ != State::kClosed; ++i) {
    const auto role = static_cast<SocketRole>(i);
    if (!sockets_[i].open() || fds[i].revents == 0) continue;
    if ((fds[i].revents & POLLOUT) != 0) {
      if (SessionStatus s = flush(role); s != SessionStatus::kOk) return s;
    }
    if ((fds[i].revents & (POLLIN | POLLHUP | POLLERR)) == 0) continue;
    std::string error;
    const ReadResult read = readSocket(role, error);
    // TLS: what the engine answered (a key update, an alert) leaves now.
    if (!sockets_[i].wire.empty() && read == ReadResult::kOk) {
      if (SessionStatus s = flush(role); s != SessionStatus::kOk) return s;
    }
    // Frames that arrived before the close are handed over before the close is judged.
    if (SessionStatus s = dispatch(role, listener, any); s != SessionStatus::kOk) return s;
    if (read == ReadResult::kTlsFailed && state_ != State::kClosed) {
      return fail(SessionStatus::kClosed,
                  fmt::format("TLS failed on {}: {}", describe(role), error));
    }
    if (read != ReadResult::kOk && state_ != State::kClosed) {
      if (SessionStatus s = closedByBroker(role, error); s != SessionStatus::kOk) return s;
    }
  }

  const Clock::time_point now = Clock::now();
  if (state_ == State::kDraining && now >= drainDeadline_) {
    close();  // the broker did not close every socket in time; the session is over all the same
  } else if (state_ == State::kOpen && !pending_.empty() && now >= pending_.front().deadline) {
    return fail(SessionStatus::kTimeout,
                fmt::format("no reply within {} ms on {}", options_.timeout.count(),
                            describe(requestRole())));
  }
  return SessionStatus::kOk;
}

}  // namespace tern::client
