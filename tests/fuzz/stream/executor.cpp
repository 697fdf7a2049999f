// Plays a case's actions on loopback sockets. See executor.hpp.
#include "executor.hpp"

#include <sys/socket.h>

#include <algorithm>
#include <thread>

namespace tern::fuzz {

namespace {

constexpr Millis kConnectTimeout{1000};
constexpr std::size_t kReadCap = 1 << 20;     // bytes taken by one read action
constexpr std::size_t kPartialCap = 8 << 10;  // a longer line is no CONNACK: dropped

}  // namespace

void Executor::run(const Case& c) {
  const Clock::time_point deadline = Clock::now() + budget_;
  pausedMillis_ = 0;
  for (std::string& token : tokens_)
    token.clear();
  ++stats_.cases;
  for (const Action& a : c.actions) {
    Connection& conn = connections_[a.conn % kMaxConnections];
    if (Clock::now() >= deadline && a.kind != Action::Kind::kClose &&
        a.kind != Action::Kind::kReset) {
      ++stats_.actionsSkipped;
      continue;
    }
    switch (a.kind) {
      case Action::Kind::kOpen:
        open(conn, a.port, deadline);
        break;
      case Action::Kind::kSend:
        send(conn, a, deadline);
        break;
      case Action::Kind::kPause:
        sleepFor(a.millis, deadline);
        break;
      case Action::Kind::kRead:
        read(conn, a, deadline);
        break;
      case Action::Kind::kShutdown:
        if (conn.socket.valid()) ::shutdown(conn.socket.fd(), SHUT_WR);
        conn.writable = false;
        break;
      case Action::Kind::kReset:
        if (conn.socket.valid()) closeWithReset(conn.socket.release());
        conn = Connection{};
        break;
      case Action::Kind::kClose:
        conn = Connection{};
        break;
    }
  }
  for (Connection& conn : connections_)
    conn = Connection{};
}

void Executor::open(Connection& conn, Port port, Clock::time_point deadline) {
  conn = Connection{};
  const std::uint16_t number = port == Port::kLine ? endpoints_.linePort : endpoints_.mqttPort;
  const int fd = connectLoopback(number, std::min(deadline, Clock::now() + kConnectTimeout));
  if (fd < 0) {
    ++stats_.connectFailures;
    return;
  }
  ++stats_.connections;
  conn.socket.reset(fd);
  conn.port = port;
  conn.writable = true;
  conn.readable = true;
}

void Executor::send(Connection& conn, const Action& a, Clock::time_point deadline) {
  if (!conn.socket.valid() || !conn.writable) return;
  const std::string bytes = resolve(a.pieces, tokens_);
  std::size_t from = 0;
  std::size_t split = 0;
  while (from < bytes.size()) {
    std::size_t to = bytes.size();
    if (a.splitEveryByte) {
      to = from + 1;
    } else if (split < a.splits.size()) {
      to = std::clamp<std::size_t>(a.splits[split++], from + 1, bytes.size());
    }
    bool failed = false;
    const std::string_view chunk(bytes.data() + from, to - from);
    const std::size_t sent = sendAll(conn.socket.fd(), chunk, deadline, failed);
    stats_.bytesSent += sent;
    if (failed || sent < chunk.size()) {
      conn.writable = false;
      return;
    }
    from = to;
    if (from < bytes.size() && a.millis != 0) sleepFor(a.millis, deadline);
  }
}

void Executor::read(Connection& conn, const Action& a, Clock::time_point deadline) {
  if (!conn.socket.valid() || !conn.readable) return;
  const Clock::time_point until =
      std::min(deadline, Clock::now() + Millis(std::min(a.millis, kMaxReadWaitMillis)));
  const bool wantToken = a.tokenSlot >= 0 && conn.port == Port::kLine;
  // A token read waits for the CONNACK (or the time); a plain read takes what came first.
  do {
    if (wantToken && !conn.token.empty()) break;
    readOnce(conn, until);
  } while (wantToken && conn.readable && Clock::now() < until);
  if (wantToken && !conn.token.empty()) tokens_[a.tokenSlot % kTokenSlots] = conn.token;
}

void Executor::readOnce(Connection& conn, Clock::time_point until) {
  std::string input;
  if (readAvailable(conn.socket.fd(), input, until, kReadCap) == ReadStatus::kClosed) {
    conn.readable = false;
  }
  if (conn.port != Port::kLine || input.empty()) return;
  conn.partial += input;
  std::size_t start = 0;
  for (std::size_t lf; (lf = conn.partial.find('\n', start)) != std::string::npos; start = lf + 1) {
    std::string_view line(conn.partial.data() + start, lf - start);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    // CONNACK@<client-id>@<token>: the token is the last field.
    if (line.starts_with("CONNACK@")) conn.token = std::string(line.substr(line.rfind('@') + 1));
  }
  conn.partial.erase(0, start);
  if (conn.partial.size() > kPartialCap) conn.partial.clear();
}

void Executor::sleepFor(std::uint32_t millis, Clock::time_point deadline) {
  millis = std::min({millis, kMaxPauseMillis, kMaxCasePauseMillis - pausedMillis_});
  pausedMillis_ += millis;
  const Clock::time_point until = std::min(deadline, Clock::now() + Millis(millis));
  std::this_thread::sleep_until(until);
}

}  // namespace tern::fuzz
