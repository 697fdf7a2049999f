// readTextFile: the whole of a small configuration file (password file, ACL file), or why not.
#pragma once

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>

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

}  // namespace tern::auth::detail
