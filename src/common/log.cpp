#include "tern/common/log.hpp"

#include <unistd.h>

#include <cctype>
#include <ctime>
#include <string>

namespace tern::common {
namespace {

// Relaxed is enough: the level is configuration, and a reader that sees the old value for a moment
// only logs one line more or less.
std::atomic<LogLevel> g_level{LogLevel::kInfo};

bool equalsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(a[i])) != b[i]) return false;
  }
  return true;
}

}  // namespace

std::optional<LogLevel> parseLogLevel(std::string_view text) noexcept {
  if (equalsIgnoreCase(text, "debug")) return LogLevel::kDebug;
  if (equalsIgnoreCase(text, "info")) return LogLevel::kInfo;
  if (equalsIgnoreCase(text, "warn") || equalsIgnoreCase(text, "warning")) return LogLevel::kWarn;
  if (equalsIgnoreCase(text, "error")) return LogLevel::kError;
  if (equalsIgnoreCase(text, "off")) return LogLevel::kOff;
  return std::nullopt;
}

void setLogLevel(LogLevel level) noexcept {
  g_level.store(level, std::memory_order_relaxed);
}

LogLevel logLevel() noexcept {
  return g_level.load(std::memory_order_relaxed);
}

void logLine(LogLevel level, std::string_view message) noexcept {
  static constexpr std::string_view kNames[] = {"DEBUG", "INFO ", "WARN ", "ERROR", "OFF  "};
  timespec now{};
  clock_gettime(CLOCK_REALTIME, &now);
  tm parts{};
  gmtime_r(&now.tv_sec, &parts);
  char stamp[40];
  std::size_t n = std::strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &parts);
  try {
    std::string line = fmt::format("{}.{:03d}Z {} {}\n", std::string_view(stamp, n),
                                   static_cast<int>(now.tv_nsec / 1000000),
                                   kNames[static_cast<int>(level)], message);
    // One write so that concurrent lines do not interleave; a short write to stderr is ignored.
    [[maybe_unused]] ssize_t written = ::write(STDERR_FILENO, line.data(), line.size());
  } catch (...) {
    // Out of memory while logging: drop the line rather than take the process down.
  }
}

}  // namespace tern::common
