// `broker passwd FILE USER`: creates or updates (or with --delete removes) one user of a password
// file in Mosquitto's format (password_file.hpp), like `mosquitto_passwd`. The password is read
// from the terminal without echo, twice, or as one line from stdin when stdin is not a terminal;
// never from the command line, where other users could see it in the process list.
//
// Threads: the calling (main) thread only.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>

#include "tern/auth/password_file.hpp"

namespace tern::auth {

struct PasswdOptions {
  std::string file;
  std::string user;
  bool remove = false;
  std::uint32_t iterations = PasswordHash::kDefaultIterations;
};

// Runs the command: 0 done, 1 failed (the reason on `err`). `in` is where the password comes
// from (its terminal, when it is one).
int runPasswd(const PasswdOptions& options, std::FILE* in, std::FILE* err);

}  // namespace tern::auth
