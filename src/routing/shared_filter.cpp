#include "tern/routing/shared_filter.hpp"

namespace tern::routing {

namespace {

constexpr std::string_view kSharePrefix = "$share/";

}  // namespace

SharedFilter parseSharedFilter(std::string_view subscription) noexcept {
  SharedFilter out;
  if (subscription.substr(0, kSharePrefix.size()) != kSharePrefix) return out;
  out.kind = SharedFilter::Kind::kInvalid;
  const std::string_view rest = subscription.substr(kSharePrefix.size());
  const std::size_t slash = rest.find('/');
  if (slash == 0 || slash == std::string_view::npos || slash + 1 == rest.size()) return out;
  const std::string_view name = rest.substr(0, slash);
  if (name.find_first_of("+#") != std::string_view::npos) return out;
  out.kind = SharedFilter::Kind::kShared;
  out.name = name;
  out.filter = rest.substr(slash + 1);
  return out;
}

std::string_view effectiveFilter(std::string_view subscription) noexcept {
  const SharedFilter shared = parseSharedFilter(subscription);
  return shared.kind == SharedFilter::Kind::kShared ? shared.filter : subscription;
}

}  // namespace tern::routing
