#include "tern/auth/passwd_command.hpp"

#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <optional>
#include <stdexcept>

namespace tern::auth {
namespace {

constexpr std::size_t kMaxPassword = 65535;  // what an MQTT CONNECT can carry

// One line of `in` without its line end; nullopt at end of input or when too long.
std::optional<std::string> readLine(std::FILE* in) {
  std::string line;
  for (int c = std::fgetc(in); c != EOF && c != '\n'; c = std::fgetc(in)) {
    if (line.size() == kMaxPassword) return std::nullopt;
    line.push_back(static_cast<char>(c));
  }
  if (line.empty() && std::feof(in)) return std::nullopt;
  if (!line.empty() && line.back() == '\r') line.pop_back();
  return line;
}

// Prompts on the terminal and reads a line with echo off.
std::optional<std::string> readHidden(std::FILE* in, std::FILE* err, const char* prompt) {
  const int fd = ::fileno(in);
  termios saved{};
  ::tcgetattr(fd, &saved);
  termios quiet = saved;
  quiet.c_lflag &= ~static_cast<tcflag_t>(ECHO);
  ::tcsetattr(fd, TCSAFLUSH, &quiet);
  std::fputs(prompt, err);
  std::fflush(err);
  std::optional<std::string> line = readLine(in);
  ::tcsetattr(fd, TCSAFLUSH, &saved);
  std::fputs("\n", err);
  return line;
}

std::optional<std::string> readPassword(std::FILE* in, std::FILE* err) {
  if (::isatty(::fileno(in)) == 0) {
    std::optional<std::string> line = readLine(in);
    if (!line) std::fputs("broker passwd: no password on stdin (one line)\n", err);
    return line;
  }
  std::optional<std::string> first = readHidden(in, err, "Password: ");
  if (!first) return std::nullopt;
  std::optional<std::string> second = readHidden(in, err, "Reenter password: ");
  if (!second || *first != *second) {
    std::fputs("broker passwd: the passwords do not match\n", err);
    return std::nullopt;
  }
  return first;
}

}  // namespace

int runPasswd(const PasswdOptions& options, std::FILE* in, std::FILE* err) {
  if (!PasswordFile::validUser(options.user)) {
    std::fputs("broker passwd: a user name is not empty and holds no ':' or line break\n", err);
    return 1;
  }
  PasswordFile file;
  struct stat st {};
  if (::stat(options.file.c_str(), &st) == 0) {
    PasswordFile::Loaded loaded = PasswordFile::load(options.file);
    if (!loaded.file) {
      std::fprintf(err, "broker passwd: %s\n", loaded.error.c_str());
      return 1;
    }
    file = std::move(*loaded.file);
  } else if (errno != ENOENT || options.remove) {
    std::fprintf(err, "broker passwd: %s: %s\n", options.file.c_str(), std::strerror(errno));
    return 1;
  }
  if (options.remove) {
    if (!file.remove(options.user)) {
      std::fprintf(err, "broker passwd: %s has no user %s\n", options.file.c_str(),
                   options.user.c_str());
      return 1;
    }
  } else {
    const std::optional<std::string> password = readPassword(in, err);
    if (!password) return 1;
    if (password->empty()) {
      std::fputs("broker passwd: the password is empty\n", err);
      return 1;
    }
    try {
      file.set(options.user, PasswordHash::make(*password, options.iterations));
    } catch (const std::runtime_error& e) {
      std::fprintf(err, "broker passwd: %s\n", e.what());
      return 1;
    }
  }
  const std::string problem = file.save(options.file);
  if (!problem.empty()) {
    std::fprintf(err, "broker passwd: %s\n", problem.c_str());
    return 1;
  }
  return 0;
}

}  // namespace tern::auth
