// readTextFile: the whole of a small configuration file (password file, ACL file), or why not;
// loadTextFile: that file parsed, or why it could not be read.
#pragma once

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>
#include <utility>

namespace tern::auth::detail {

// Fills `contents` with the file; returns an empty string, or "<path>: <reason>".
inline std::string readTextFile(const std::string& path, std::string& contents) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) return path + ": " + std::strerror(errno);
  contents.clear();
  char buffer[4096];
  std::size_t n = 0;
  while ((n = std::fread(buffer, 1, sizeof buffer, f)) > 0)
    contents.append(buffer, n);
  const bool failed = std::ferror(f) != 0;
  std::fclose(f);
  return failed ? path + ": read error" : std::string();
}

// Reads `path` and returns parse(contents, path); a file that cannot be read is a Loaded with
// only `error` set. Loaded is the parser's result (a `file` and an `error`).
template <class Loaded, class Parse>
Loaded loadTextFile(const std::string& path, Parse parse) {
  std::string contents;
  if (std::string error = readTextFile(path, contents); !error.empty()) {
    Loaded failed;
    failed.error = std::move(error);
    return failed;
  }
  return parse(contents, path);
}

}  // namespace tern::auth::detail
