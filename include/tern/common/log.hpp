// Minimal leveled logging to stderr.
//
// The level is a process-wide setting made once at start-up (setLogLevel) and read with a relaxed
// load on every call: a stale read only means one line more or less while the level changes.
// Each line is formatted into one buffer and written with one write(2), so lines from different
// threads never interleave. Logging is for events (connections, errors, drops), never per message.
#pragma once

#include <fmt/format.h>

#include <atomic>
#include <optional>
#include <string_view>

namespace tern::common {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3, kOff = 4 };

// Parses "debug", "info", "warn", "error" or "off" (any case). Returns nullopt for anything else.
std::optional<LogLevel> parseLogLevel(std::string_view text) noexcept;

void setLogLevel(LogLevel level) noexcept;
LogLevel logLevel() noexcept;

// Writes "<time> <level> <message>\n" to stderr in a single write(2). Thread-safe.
void logLine(LogLevel level, std::string_view message) noexcept;

template <typename... Args>
void log(LogLevel level, fmt::format_string<Args...> format, Args&&... args) {
  if (level < logLevel()) return;
  logLine(level, fmt::format(format, std::forward<Args>(args)...));
}

#define TERN_LOG_DEBUG(...) ::tern::common::log(::tern::common::LogLevel::kDebug, __VA_ARGS__)
#define TERN_LOG_INFO(...) ::tern::common::log(::tern::common::LogLevel::kInfo, __VA_ARGS__)
#define TERN_LOG_WARN(...) ::tern::common::log(::tern::common::LogLevel::kWarn, __VA_ARGS__)
#define TERN_LOG_ERROR(...) ::tern::common::log(::tern::common::LogLevel::kError, __VA_ARGS__)

}  // namespace tern::common
