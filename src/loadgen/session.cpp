#include "tern/loadgen/session.hpp"

namespace tern::loadgen {

std::string_view describe(SessionFailure failure) noexcept {
  switch (failure) {
    case SessionFailure::kConnect:
      return "connect failed";
    case SessionFailure::kHandshake:
      return "handshake refused";
    case SessionFailure::kTimeout:
      return "timed out";
    case SessionFailure::kDisconnected:
      return "disconnected";
    case SessionFailure::kProtocol:
      return "protocol error";
  }
  return "failed";
}

}  // namespace tern::loadgen
