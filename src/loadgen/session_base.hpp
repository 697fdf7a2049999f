// SessionBase: what the line-protocol and MQTT sessions share: the host, the configuration, the
// stage of the set-up, how subscribing starts and the one way a session fails.
//
// Ownership: like every Session, owned and called by one loadgen worker thread only.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "tern/loadgen/session.hpp"

namespace tern::loadgen {

class SessionBase : public Session {
 protected:
  enum class Stage { kIdle, kConnecting, kConnected, kSubscribing, kReady, kFailed, kClosed };

  SessionBase(SessionHost& host, const SessionConfig& config) : host_(host), config_(config) {}

  // The common start of subscribe(): true when the caller must now send `filters`. False when
  // the session is not connected, or when there are no filters (the session is then ready and the
  // host has been told).
  bool beginSubscribe(std::span<const std::string> filters, std::int64_t nowNs) {
    if (stage_ != Stage::kConnected) return false;
    if (filters.empty()) {
      stage_ = Stage::kReady;
      host_.onSubscribed(config_.client, nowNs);
      return false;
    }
    stage_ = Stage::kSubscribing;
    return true;
  }

  // Reports the first failure to the host and closes every socket; later ones are ignored.
  void fail(SessionFailure failure, std::string_view detail) {
    if (stage_ == Stage::kFailed || stage_ == Stage::kClosed) return;
    stage_ = Stage::kFailed;
    // The detail may point into the received bytes or a carried frame: copied before closing.
    const std::string text(detail);
    close();
    host_.onFailed(config_.client, failure, text);
  }

  SessionHost& host_;
  const SessionConfig config_;
  Stage stage_ = Stage::kIdle;
};

}  // namespace tern::loadgen
