#include "tern/auth/password_file.hpp"

#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <stdexcept>

#include "auth/text_file.hpp"

namespace tern::auth {
namespace {

constexpr std::size_t kHashBytes = 64;  // SHA-512

// Standard base64 with padding, as mosquitto_passwd writes it; nullopt for anything else.
std::optional<std::string> decodeBase64(std::string_view text) {
  if (text.empty() || text.size() % 4 != 0) return std::nullopt;
  std::string out(text.size() / 4 * 3, '\0');
  const int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                reinterpret_cast<const unsigned char*>(text.data()),
                                static_cast<int>(text.size()));
  if (n < 0) return std::nullopt;
  std::size_t size = static_cast<std::size_t>(n);
  // EVP_DecodeBlock counts the padding as zero bytes.
  if (text.back() == '=') --size;
  if (text.size() >= 2 && text[text.size() - 2] == '=') --size;
  out.resize(size);
  return out;
}

std::string encodeBase64(std::string_view bytes) {
  std::string out((bytes.size() + 2) / 3 * 4 + 1, '\0');
  const int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                reinterpret_cast<const unsigned char*>(bytes.data()),
                                static_cast<int>(bytes.size()));
  out.resize(static_cast<std::size_t>(n));
  return out;
}

// The hash `h` describes, of `password` (empty when OpenSSL fails, which never matches).
std::string compute(const PasswordHash& h, std::string_view password) {
  std::string out(kHashBytes, '\0');
  auto* digest = reinterpret_cast<unsigned char*>(out.data());
  if (h.kind == PasswordHash::Kind::kPbkdf2Sha512) {
    if (PKCS5_PBKDF2_HMAC(password.data(), static_cast<int>(password.size()),
                          reinterpret_cast<const unsigned char*>(h.salt.data()),
                          static_cast<int>(h.salt.size()), static_cast<int>(h.iterations),
                          EVP_sha512(), static_cast<int>(kHashBytes), digest) != 1) {
      return {};
    }
    return out;
  }
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  unsigned int size = 0;
  const bool ok = ctx != nullptr && EVP_DigestInit_ex(ctx, EVP_sha512(), nullptr) == 1 &&
                  EVP_DigestUpdate(ctx, password.data(), password.size()) == 1 &&
                  EVP_DigestUpdate(ctx, h.salt.data(), h.salt.size()) == 1 &&
                  EVP_DigestFinal_ex(ctx, digest, &size) == 1 && size == kHashBytes;
  EVP_MD_CTX_free(ctx);
  return ok ? out : std::string();
}

// Splits `text` at '$' into at most `max` fields.
std::vector<std::string_view> fields(std::string_view text, std::size_t max) {
  std::vector<std::string_view> out;
  while (out.size() + 1 < max) {
    const std::size_t at = text.find('$');
    if (at == std::string_view::npos) break;
    out.push_back(text.substr(0, at));
    text.remove_prefix(at + 1);
  }
  out.push_back(text);
  return out;
}

}  // namespace

std::optional<PasswordHash> PasswordHash::parse(std::string_view text) {
  PasswordHash h;
  std::string_view saltText;
  std::string_view hashText;
  if (text.substr(0, 3) == "$7$") {
    const std::vector<std::string_view> f = fields(text.substr(3), 4);
    if (f.size() != 3) return std::nullopt;
    const std::string_view count = f[0];
    const auto [end, ec] = std::from_chars(count.data(), count.data() + count.size(), h.iterations);
    if (ec != std::errc() || end != count.data() + count.size() || h.iterations == 0 ||
        h.iterations > kMaxIterations) {
      return std::nullopt;
    }
    h.kind = Kind::kPbkdf2Sha512;
    saltText = f[1];
    hashText = f[2];
  } else if (text.substr(0, 3) == "$6$") {
    const std::vector<std::string_view> f = fields(text.substr(3), 3);
    if (f.size() != 2) return std::nullopt;
    h.kind = Kind::kSha512;
    saltText = f[0];
    hashText = f[1];
  } else {
    return std::nullopt;
  }
  std::optional<std::string> salt = decodeBase64(saltText);
  std::optional<std::string> hash = decodeBase64(hashText);
  if (!salt || !hash || hash->size() != kHashBytes) return std::nullopt;
  h.salt = std::move(*salt);
  h.hash = std::move(*hash);
  return h;
}

PasswordHash PasswordHash::make(std::string_view password, std::uint32_t iterations) {
  PasswordHash h;
  h.kind = Kind::kPbkdf2Sha512;
  h.iterations = iterations;
  h.salt.assign(kSaltBytes, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(h.salt.data()), static_cast<int>(kSaltBytes)) !=
      1) {
    throw std::runtime_error("OpenSSL could not make random bytes for a salt");
  }
  h.hash = compute(h, password);
  if (h.hash.empty()) throw std::runtime_error("OpenSSL could not hash the password");
  return h;
}

std::string PasswordHash::format() const {
  if (kind == Kind::kSha512) return "$6$" + encodeBase64(salt) + "$" + encodeBase64(hash);
  return "$7$" + std::to_string(iterations) + "$" + encodeBase64(salt) + "$" + encodeBase64(hash);
}

bool PasswordHash::verify(std::string_view password) const {
  const std::string computed = compute(*this, password);
  return computed.size() == hash.size() &&
         CRYPTO_memcmp(computed.data(), hash.data(), hash.size()) == 0;
}

bool PasswordFile::validUser(std::string_view user) noexcept {
  return !user.empty() &&
         user.find_first_of(std::string_view(":\n\r\0", 4)) == std::string_view::npos;
}

PasswordFile::Loaded PasswordFile::parse(std::string_view contents, std::string_view name) {
  PasswordFile file;
  std::size_t lineNumber = 0;
  while (!contents.empty()) {
    ++lineNumber;
    const std::size_t end = contents.find('\n');
    std::string_view line = contents.substr(0, end);
    contents.remove_prefix(end == std::string_view::npos ? contents.size() : end + 1);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty() || line[0] == '#') continue;
    const auto problem = [&](std::string_view why) {
      Loaded failed;
      failed.error = std::string(name) + ":" + std::to_string(lineNumber) + ": " + std::string(why);
      return failed;
    };
    const std::size_t colon = line.find(':');
    if (colon == std::string_view::npos || colon == 0) {
      return problem("expected <user>:<hash>, as mosquitto_passwd writes them");
    }
    const std::string_view user = line.substr(0, colon);
    std::optional<PasswordHash> hash = PasswordHash::parse(line.substr(colon + 1));
    if (!hash) {
      return problem(
          "the hash is neither $7$<iterations>$<salt>$<hash> (PBKDF2-SHA512) nor "
          "$6$<salt>$<hash> (SHA-512), base64-encoded; a plain-text password must be hashed "
          "first (broker passwd, or mosquitto_passwd -U)");
    }
    if (file.find(user) != nullptr) return problem("the user appears twice");
    file.entries_.push_back({std::string(user), std::move(*hash)});
  }
  Loaded loaded;
  loaded.file = std::move(file);
  return loaded;
}

PasswordFile::Loaded PasswordFile::load(const std::string& path) {
  return detail::loadTextFile<Loaded>(
      path,
      [](const std::string& contents, const std::string& name) { return parse(contents, name); });
}

const PasswordHash* PasswordFile::find(std::string_view user) const noexcept {
  for (const Entry& e : entries_) {
    if (e.user == user) return &e.hash;
  }
  return nullptr;
}

bool PasswordFile::set(std::string_view user, PasswordHash hash) {
  if (!validUser(user)) return false;
  for (Entry& e : entries_) {
    if (e.user == user) {
      e.hash = std::move(hash);
      return true;
    }
  }
  entries_.push_back({std::string(user), std::move(hash)});
  return true;
}

bool PasswordFile::remove(std::string_view user) {
  for (auto it = entries_.begin(); it != entries_.end(); ++it) {
    if (it->user == user) {
      entries_.erase(it);
      return true;
    }
  }
  return false;
}

std::string PasswordFile::serialize() const {
  std::string out;
  for (const Entry& e : entries_)
    out.append(e.user).append(":").append(e.hash.format()).append("\n");
  return out;
}

std::string PasswordFile::save(const std::string& path) const {
  const std::string temporary = path + ".tmp-" + std::to_string(::getpid());
  const int fd = ::open(temporary.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return temporary + ": " + std::strerror(errno);
  const std::string contents = serialize();
  std::size_t written = 0;
  while (written < contents.size()) {
    const ssize_t n = ::write(fd, contents.data() + written, contents.size() - written);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const std::string why = temporary + ": " + std::strerror(errno);
      ::close(fd);
      ::unlink(temporary.c_str());
      return why;
    }
    written += static_cast<std::size_t>(n);
  }
  const bool synced = ::fsync(fd) == 0;
  const int syncErrno = errno;
  if (::close(fd) != 0 || !synced) {
    const std::string why = temporary + ": " + std::strerror(synced ? errno : syncErrno);
    ::unlink(temporary.c_str());
    return why;
  }
  if (::rename(temporary.c_str(), path.c_str()) != 0) {
    const std::string why = path + ": " + std::strerror(errno);
    ::unlink(temporary.c_str());
    return why;
  }
  return {};
}

}  // namespace tern::auth
