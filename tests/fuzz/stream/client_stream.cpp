// Plain, TLS and WebSocket client connections. See client_stream.hpp.
#include "client_stream.hpp"

#include <algorithm>

#include "tern/net/byte_buffer.hpp"

namespace tern::fuzz {

ClientStream::ClientStream(Socket socket, const net::TlsContext& context,
                           Clock::time_point deadline)
    : socket_(std::move(socket)), session_(std::make_unique<net::TlsSession>(context)) {
  if (session_->failed()) {
    over_ = true;
    return;
  }
  feed({}, deadline);  // the ClientHello
}

void ClientStream::feed(std::string_view ciphertext, Clock::time_point deadline) {
  if (session_ == nullptr || over_) return;
  net::ByteBuffer plain;
  net::ByteBuffer wire;
  const net::TlsSession::Status status =
      session_->read({ciphertext.data(), ciphertext.size()}, plain, wire);
  plain_ += plain.view();
  if (!wire.empty() && socket_.valid()) {
    bool failed = false;
    sendAll(socket_.fd(), wire.view(), deadline, failed);
  }
  if (status != net::TlsSession::Status::kOk) over_ = true;
}

bool ClientStream::handshake(Clock::time_point deadline) {
  if (session_ == nullptr) return true;
  while (!session_->handshakeDone() && !over_ && socket_.valid()) {
    std::string ciphertext;
    const ReadStatus status = readAvailable(socket_.fd(), ciphertext, deadline, 1 << 16);
    if (!ciphertext.empty()) feed(ciphertext, deadline);
    if (status == ReadStatus::kClosed) {
      over_ = true;
      break;
    }
    if (status == ReadStatus::kTimeout && Clock::now() >= deadline) break;
  }
  return session_->handshakeDone();
}

std::string ClientStream::encrypt(std::string_view plain) {
  if (session_ == nullptr) return std::string(plain);
  if (over_ || notified_) return {};
  net::ByteBuffer wire;
  if (session_->write(plain, wire) != net::TlsSession::Status::kOk) over_ = true;
  return std::string(wire.view());
}

bool ClientStream::startWs(bool upgrade, std::uint16_t port, std::uint64_t maskSeed,
                           Clock::time_point deadline, std::uint64_t& wireBytes) {
  ws_ = std::make_unique<ws::Decoder>();
  maskState_ = maskSeed;
  if (!upgrade) return true;
  return sendBelowWs(ws::upgradeRequest(port, maskState_), deadline, wireBytes);
}

bool ClientStream::send(std::string_view plain, Clock::time_point deadline,
                        std::uint64_t& wireBytes) {
  if (ws_ == nullptr) return sendBelowWs(plain, deadline, wireBytes);
  return sendBelowWs(ws::frame(ws::firstByte(true, ws::kBinary), plain, maskState_), deadline,
                     wireBytes);
}

bool ClientStream::sendBelowWs(std::string_view bytes, Clock::time_point deadline,
                               std::uint64_t& wireBytes) {
  if (session_ == nullptr) return sendRaw(bytes, deadline, wireBytes);
  const std::string ciphertext = encrypt(bytes);
  return sendRaw(ciphertext, deadline, wireBytes);
}

bool ClientStream::sendRaw(std::string_view bytes, Clock::time_point deadline,
                           std::uint64_t& wireBytes) {
  if (!socket_.valid()) return false;
  bool failed = false;
  const std::size_t sent = sendAll(socket_.fd(), bytes, deadline, failed);
  wireBytes += sent;
  return !failed && sent == bytes.size();
}

void ClientStream::notify(Clock::time_point deadline, std::uint64_t& wireBytes) {
  if (session_ == nullptr || notified_ || !socket_.valid()) return;
  notified_ = true;
  net::ByteBuffer wire;
  session_->shutdown(wire);
  sendRaw(wire.view(), deadline, wireBytes);
}

ReadStatus ClientStream::read(std::string& into, Clock::time_point deadline, std::size_t cap) {
  if (ws_ == nullptr) return readBelowWs(into, deadline, cap);
  const std::size_t before = into.size();
  // Until MQTT bytes arrive: the HTTP answer, pongs and empty frames carry none. Each pass waits
  // for input until `deadline`, so this ends by then.
  for (;;) {
    if (ws_->over()) return into.size() != before ? ReadStatus::kData : ReadStatus::kClosed;
    std::string below;
    const ReadStatus status = readBelowWs(below, deadline, cap);
    ws_->feed(below, into);
    if (into.size() != before) return ReadStatus::kData;
    if (status == ReadStatus::kClosed || ws_->over()) return ReadStatus::kClosed;
    if (Clock::now() >= deadline) return ReadStatus::kTimeout;
  }
}

ReadStatus ClientStream::readBelowWs(std::string& into, Clock::time_point deadline,
                                     std::size_t cap) {
  if (!plain_.empty()) {
    into += plain_;
    plain_.clear();
    return ReadStatus::kData;
  }
  if (session_ == nullptr) return readAvailable(socket_.fd(), into, deadline, cap);
  if (over_) return ReadStatus::kClosed;
  std::string ciphertext;
  const ReadStatus status = readAvailable(socket_.fd(), ciphertext, deadline, cap);
  if (!ciphertext.empty()) feed(ciphertext, deadline);
  into += plain_;
  const bool got = !plain_.empty();
  plain_.clear();
  if (status == ReadStatus::kClosed || over_) return ReadStatus::kClosed;
  return got ? ReadStatus::kData : ReadStatus::kTimeout;
}

bool StreamLineReader::next(std::string& line, Clock::time_point deadline) {
  for (;;) {
    const std::size_t lf = buffer_.find('\n');
    if (lf != std::string::npos) {
      line.assign(buffer_, 0, lf);
      buffer_.erase(0, lf + 1);
      if (!line.empty() && line.back() == '\r') line.pop_back();
      return true;
    }
    if (closed_ || Clock::now() >= deadline) return false;
    if (stream_.read(buffer_, deadline, 1 << 20) == ReadStatus::kClosed) closed_ = true;
  }
}

}  // namespace tern::fuzz
