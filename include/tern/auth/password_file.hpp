// Password files in Mosquitto's format, so that files made by `mosquitto_passwd` work unchanged
// and files made by `broker passwd` work in Mosquitto:
//
//   <user>:$7$<iterations>$<salt, base64>$<hash, base64>   PBKDF2-HMAC-SHA512 (mosquitto 2.x)
//   <user>:$6$<salt, base64>$<hash, base64>                SHA-512 of password then salt (1.x)
//
// One entry per line; empty lines and lines starting with '#' are ignored. A user name is
// everything before the first ':'. Crypto is OpenSSL's (PKCS5_PBKDF2_HMAC, EVP SHA-512,
// RAND_bytes); hashes are compared in constant time (CRYPTO_memcmp).
//
// Cost (measured with Python's hashlib, the same OpenSSL): about 130 µs per verification at
// Mosquitto's default of 101 iterations, growing linearly with the iteration count.
//
// Threads: PasswordHash and PasswordFile are values; const methods may be called from any thread.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace tern::auth {

struct PasswordHash {
  enum class Kind { kSha512, kPbkdf2Sha512 };
  // mosquitto_passwd's default (its PW_DEFAULT_ITERATIONS).
  static constexpr std::uint32_t kDefaultIterations = 101;
  static constexpr std::uint32_t kMaxIterations = 10'000'000;
  static constexpr std::size_t kSaltBytes = 12;

  Kind kind = Kind::kPbkdf2Sha512;
  std::uint32_t iterations = 0;  // kPbkdf2Sha512 only
  std::string salt;              // raw bytes
  std::string hash;              // raw bytes: 64 (SHA-512)

  // "$7$..." or "$6$..."; nullopt when `text` is neither, well formed.
  static std::optional<PasswordHash> parse(std::string_view text);
  // A new PBKDF2-SHA512 hash of `password` with a random salt. Throws std::runtime_error only
  // when OpenSSL's random generator fails.
  static PasswordHash make(std::string_view password,
                           std::uint32_t iterations = kDefaultIterations);
  std::string format() const;
  // Whether `password` is the one hashed; the comparison takes the same time whatever matches.
  bool verify(std::string_view password) const;
};

class PasswordFile {
 public:
  struct Entry {
    std::string user;
    PasswordHash hash;
  };
  // The file's entries, or the first problem as "<path>:<line>: <reason>".
  struct Loaded;
  static Loaded load(const std::string& path);
  // Parses file contents (`name` is used in error texts).
  static Loaded parse(std::string_view contents, std::string_view name);

  const PasswordHash* find(std::string_view user) const noexcept;
  const std::vector<Entry>& entries() const noexcept { return entries_; }
  // Adds `user` or replaces its hash; false when the user name cannot be stored (empty, or with
  // ':', a line break or a NUL).
  bool set(std::string_view user, PasswordHash hash);
  bool remove(std::string_view user);
  // The file's contents, one line per entry in the order they were read or added.
  std::string serialize() const;
  // Writes serialize() to `path` through a temporary file renamed over it, mode 0600. An empty
  // string on success, otherwise what failed.
  std::string save(const std::string& path) const;

  static bool validUser(std::string_view user) noexcept;

 private:
  std::vector<Entry> entries_;
};

struct PasswordFile::Loaded {
  std::optional<PasswordFile> file;
  std::string error;
};

}  // namespace tern::auth
