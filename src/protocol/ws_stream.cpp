#include "tern/protocol/ws_stream.hpp"

#include <wslay/wslay.h>

#include "tern/common/utf8.hpp"

#include <algorithm>
#include <cstring>
#include <new>

namespace tern::protocol {

// libwslay's callbacks: plain functions that find the WsStream in user_data.
struct WsStreamCallbacks {
  static ssize_t recv(wslay_event_context_ptr ctx, std::uint8_t* buf, std::size_t len, int,
                      void* user) {
    auto& s = *static_cast<WsStream*>(user);
    if (s.input_.empty()) {
      wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
      return -1;
    }
    const std::size_t n = std::min(len, s.input_.size());
    std::memcpy(buf, s.input_.data(), n);
    // Keep the last kTail bytes given (see tail_).
    constexpr std::size_t kTail = 14 + 125;
    const std::string_view given = s.input_.substr(0, n);
    if (given.size() >= kTail) {
      s.tail_.assign(given.substr(given.size() - kTail));
    } else {
      s.tail_.append(given);
      if (s.tail_.size() > kTail) s.tail_.erase(0, s.tail_.size() - kTail);
    }
    s.input_.remove_prefix(n);
    return static_cast<ssize_t>(n);
  }

  static ssize_t send(wslay_event_context_ptr, const std::uint8_t* data, std::size_t len, int,
                      void* user) {
    auto& s = *static_cast<WsStream*>(user);
    s.output_->append(reinterpret_cast<const char*>(data), len);
    return static_cast<ssize_t>(len);
  }

  static void frameStart(wslay_event_context_ptr ctx,
                         const wslay_event_on_frame_recv_start_arg* arg, void* user) {
    auto& s = *static_cast<WsStream*>(user);
    s.frameOpcode_ = arg->opcode;
    if (arg->opcode == WSLAY_CONNECTION_CLOSE) {
      s.closeBody_.clear();
      s.closeLength_ = arg->payload_length;  // libwslay allows at most 125 for a control frame
    }
    if (arg->opcode == WSLAY_TEXT_FRAME || arg->opcode == WSLAY_BINARY_FRAME) {
      s.dataOpcode_ = arg->opcode;
    }
    if (s.failure_ != 0) return;
    const bool data = arg->opcode == WSLAY_TEXT_FRAME || arg->opcode == WSLAY_BINARY_FRAME ||
                      arg->opcode == WSLAY_CONTINUATION_FRAME;
    if (data && s.dataOpcode_ == WSLAY_TEXT_FRAME) {
      // MQTT travels in binary frames only. The close is queued now, before libwslay looks at
      // the frame's payload (its UTF-8 check would otherwise close with 1007 or not, depending on
      // how much of the frame this read holds), and nothing after this frame is decoded.
      s.failure_ = WSLAY_CODE_UNSUPPORTED_DATA;
      wslay_event_queue_close(ctx, s.failure_, nullptr, 0);
      wslay_event_shutdown_read(ctx);
    }
  }

  static void frameChunk(wslay_event_context_ptr ctx,
                         const wslay_event_on_frame_recv_chunk_arg* arg, void* user) {
    auto& s = *static_cast<WsStream*>(user);
    if (s.failure_ != 0) return;
    if (s.frameOpcode_ == WSLAY_CONNECTION_CLOSE) {
      s.closeBody_.append(reinterpret_cast<const char*>(arg->data), arg->data_length);
      if (s.closeBody_.size() < s.closeLength_ && !s.closeTakeover_) {
        // The rest of this close frame is read by WsStream (see closeBody_); libwslay's
        // current pass ends with this piece and it reads nothing more.
        // The piece so far is the last bytes libwslay was given (it ends a short read) and
        // the frame's 4-byte masking key comes just before them.
        if (s.tail_.size() < s.closeBody_.size() + 4) {  // cannot happen; never guess a key
          s.failure_ = WSLAY_CODE_PROTOCOL_ERROR;
          s.fail(s.failure_);
          return;
        }
        s.closeTakeover_ = true;
        const std::size_t at = s.tail_.size() - s.closeBody_.size() - 4;
        std::memcpy(s.closeMask_, s.tail_.data() + at, 4);
        wslay_event_shutdown_read(ctx);
      }
      return;
    }
    // Control frames' payloads (ping, pong, close) are libwslay's business.
    if (s.frameOpcode_ == WSLAY_BINARY_FRAME ||
        (s.frameOpcode_ == WSLAY_CONTINUATION_FRAME && s.dataOpcode_ == WSLAY_BINARY_FRAME)) {
      s.payload_->append(reinterpret_cast<const char*>(arg->data), arg->data_length);
    }
  }
};

WsStream::WsStream(std::size_t maxFramePayload) {
  static const wslay_event_callbacks callbacks = {&WsStreamCallbacks::recv,
                                                  &WsStreamCallbacks::send,
                                                  nullptr,  // masks are for clients
                                                  &WsStreamCallbacks::frameStart,
                                                  &WsStreamCallbacks::frameChunk,
                                                  nullptr,
                                                  nullptr};
  if (wslay_event_context_server_init(&ctx_, &callbacks, this) != 0) throw std::bad_alloc();
  wslay_event_config_set_no_buffering(ctx_, 1);
  // Without buffering libwslay checks each frame against this before any of its payload is
  // handed on, and closes with 1009.
  wslay_event_config_set_max_recv_msg_length(ctx_, maxFramePayload);
}

WsStream::~WsStream() {
  wslay_event_context_free(ctx_);
}

void WsStream::fail(std::uint16_t code) {
  wslay_event_shutdown_read(ctx_);
  wslay_event_queue_close(ctx_, code, nullptr, 0);
}

void WsStream::finishClose() {
  // What libwslay does with a whole close frame, in its order: a reason that is not UTF-8 is
  // 1007, a code the RFC does not allow on the wire 1002, anything else is echoed.
  // closeLength_ >= 2 here: a shorter payload always arrives in one piece.
  const std::string_view reason = std::string_view(closeBody_).substr(2);
  const auto code = static_cast<std::uint16_t>((static_cast<unsigned char>(closeBody_[0]) << 8) |
                                               static_cast<unsigned char>(closeBody_[1]));
  const bool allowed =
      (code >= 1000 && code <= 1011 && code != 1004 && code != 1005 && code != 1006) ||
      (code >= 3000 && code <= 4999);
  closeTakeover_ = false;
  if (!common::isValidUtf8(reason)) {
    fail(WSLAY_CODE_INVALID_FRAME_PAYLOAD_DATA);
  } else if (!allowed) {
    fail(WSLAY_CODE_PROTOCOL_ERROR);
  } else {
    wslay_event_queue_close(ctx_, code, reinterpret_cast<const std::uint8_t*>(reason.data()),
                            reason.size());
  }
}

namespace {

// True when some bytes appended to `text` would make it well-formed UTF-8: its only fault, if
// any, is a last character not yet whole. (Completions tried: one of 80, 90, A0 then up to two
// 80s, which covers every lead byte's allowed second byte.)
bool isUtf8Prefix(std::string_view text) {
  if (common::isValidUtf8(text)) return true;
  std::string more(text);
  for (const char second : {'\x80', '\x90', '\xa0'}) {
    more.resize(text.size());
    more += second;
    for (int extra = 0; extra <= 2; ++extra, more += '\x80') {
      if (common::isValidUtf8(more)) return true;
    }
  }
  return false;
}

}  // namespace

void WsStream::takeCloseBytes(std::string_view raw) {
  const std::size_t n = std::min(raw.size(), closeLength_ - closeBody_.size());
  for (std::size_t i = 0; i < n; ++i)
    closeBody_ += static_cast<char>(raw[i] ^ closeMask_[closeBody_.size() % 4]);
  if (closeBody_.size() == closeLength_) {
    finishClose();
  } else if (closeBody_.size() > 2 && !isUtf8Prefix(std::string_view(closeBody_).substr(2))) {
    // libwslay closes at the first byte that no character can start or continue, before the
    // frame is whole: so does this.
    closeTakeover_ = false;
    fail(WSLAY_CODE_INVALID_FRAME_PAYLOAD_DATA);
  }
}

WsStream::State WsStream::receive(std::string_view bytes, std::string& payload,
                                  std::string& output) {
  if (state_ != State::kOpen) return state_;
  if (closeTakeover_) {
    takeCloseBytes(bytes);
    flush(output);
    return state_;
  }
  input_ = bytes;
  payload_ = &payload;
  // Each frameStart decides before the frame's payload is handed on; a failure stops the
  // decoding at once (libwslay reads no further once reading is shut down).
  while (!input_.empty() && wslay_event_get_read_enabled(ctx_) != 0) {
    const int r = wslay_event_recv(ctx_);
    if (failure_ != 0) break;  // the close is queued (frameStart)
    if (closeTakeover_) {
      // The rest of a close frame (frameChunk): what libwslay left of this read is its next
      // bytes.
      takeCloseBytes(input_);
      input_ = {};
      break;
    }
    if (r != 0) {
      // Our callbacks never fail, so this is a frame libwslay's frame layer refused (a
      // fragmented or oversized control frame, a 64-bit length with its top bit set) or out of
      // memory. libwslay has queued a close without a code for it; flush() sends 1002 instead.
      frameError_ = true;
      wslay_event_shutdown_read(ctx_);
      break;
    }
  }
  input_ = {};
  payload_ = nullptr;
  flush(output);
  return state_;
}

void WsStream::close(std::uint16_t code, std::string& output) {
  if (state_ != State::kOpen) return;
  fail(code);
  flush(output);
}

void WsStream::flush(std::string& output) {
  output_ = &output;
  const std::size_t before = output.size();
  wslay_event_send(ctx_);
  output_ = nullptr;
  if (wslay_event_get_close_sent(ctx_) != 0) {
    closeSent_ = wslay_event_get_status_code_sent(ctx_);
    // The codeless close libwslay sends for a frame it refused (see receive) says 1002, the code
    // RFC 6455 7.4.1 gives a protocol error. A client's own codeless close is echoed as it is.
    constexpr std::string_view kCodeless("\x88\x00", 2);
    if (frameError_ && output.size() >= before + 2 &&
        std::string_view(output).ends_with(kCodeless)) {
      output.replace(output.size() - 2, 2, "\x88\x02\x03\xea", 4);
      closeSent_ = 1002;
    }
    state_ = State::kClosing;
  } else if (wslay_event_get_read_enabled(ctx_) == 0 && !closeTakeover_) {
    state_ = State::kClosing;  // nothing more can be read and no close could be sent
  }
}

std::size_t WsStream::writeHeader(std::uint64_t length, char (&out)[10]) noexcept {
  out[0] = static_cast<char>(0x82);  // FIN, binary
  if (length < 126) {
    out[1] = static_cast<char>(length);
    return 2;
  }
  if (length <= 0xffff) {
    out[1] = 126;
    out[2] = static_cast<char>(length >> 8);
    out[3] = static_cast<char>(length);
    return 4;
  }
  out[1] = 127;
  for (int i = 0; i < 8; ++i)
    out[2 + i] = static_cast<char>(length >> (56 - 8 * i));
  return 10;
}

}  // namespace tern::protocol
