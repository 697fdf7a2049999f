// ACL files in Mosquitto's format (acl_file), so that users moving from Mosquitto keep theirs:
//
//   # a comment
//   topic [read|write|readwrite|deny] <filter>     rules of anonymous clients, until the first
//   user <name>                                    user line; then the rules of that user
//   pattern [read|write|readwrite|deny] <filter>   every client, %u = its user, %c = its client id
//
// The access is readwrite when left out (the filter may then not contain a space). Once an ACL
// file is given, what no rule grants is denied; a deny rule wins over every grant.
//
// AclFile is the parsed file; Acl is what applies to one client (compile(): its user's or the
// anonymous rules plus the patterns, substituted), checked with plain filter matches: no lock, no
// allocation. Checks:
//   - mayWrite(topic): a publish (or a will) to `topic`: no deny rule matches it and a write grant
//     does.
//   - mayRead(topic): a delivery of a message on `topic` (retained messages and LIST included): no
//     deny rule matches it and a read grant does.
//   - maySubscribe(filter): a read grant covers `filter` (every topic it matches) and no deny rule
//     covers it. A deny rule that only overlaps `filter` does not refuse the subscription; the
//     deliveries it denies are taken out one by one (readsNeedChecks()).
// %u and %c are not substituted with a value holding '+', '#' or '/' (such a pattern does not
// apply to that client): a client id "+" must not widen "dev/%c/#" to every device.
//
// Threads: values; const methods from any thread.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "tern/common/string_map.hpp"

namespace tern::auth {

enum class AclAccess : std::uint8_t { kRead = 1, kWrite = 2, kReadWrite = 3, kDeny = 4 };

struct AclRule {
  AclAccess access = AclAccess::kReadWrite;
  std::string filter;
};

// Filters of one access kind, indexed by their first level: a check looks at the filters whose
// first level is the topic's (one hash lookup) and at those that start with a wildcard, not at
// every rule. Values; const methods from any thread.
class AclRules {
 public:
  void add(std::string filter);
  bool empty() const noexcept { return count_ == 0; }
  // Whether some filter matches `topic` / covers `filter` (filterCovers).
  bool matches(std::string_view topic) const noexcept;
  bool covers(std::string_view filter) const noexcept;

 private:
  common::StringMap<std::vector<std::string>> byFirstLevel_;
  std::vector<std::string> wildcardFirst_;  // first level '+' or '#'
  std::size_t count_ = 0;
};

// The rules of one kind of client (anonymous, or one user): deny, read, write.
struct AclRuleSet {
  AclRules denies;
  AclRules reads;
  AclRules writes;
  void add(AclAccess access, std::string filter);
};

class Acl {
 public:
  bool mayWrite(std::string_view topic) const noexcept;
  bool mayRead(std::string_view topic) const noexcept;
  bool maySubscribe(std::string_view filter) const noexcept;
  // Whether a subscription maySubscribe() allowed can still match topics mayRead() refuses (some
  // deny rule overlaps what can be subscribed): deliveries are then checked one by one.
  bool readsNeedChecks() const noexcept {
    return (base_ != nullptr && !base_->denies.empty()) || !own_.denies.empty();
  }

 private:
  friend class AclFile;
  // The rules of the client's user (or of anonymous clients), shared by every session of that
  // user and owned by the AclFile; null when the user has none. A session must not use it once a
  // reload replaced the file (WorkerCore::aclOf compiles again first).
  const AclRuleSet* base_ = nullptr;
  AclRuleSet own_;  // the patterns, substituted for this client
};

class AclFile {
 public:
  struct Loaded;
  static Loaded load(const std::string& path);
  static Loaded parse(std::string_view contents, std::string_view name);

  // The rules of a client: those of `user` (nullopt: anonymous; a user the file does not name has
  // none of its own), and every pattern with %u and %c replaced. A pattern that needs %u for an
  // anonymous client does not apply to it. The result refers to this file's rules: it must not
  // outlive it.
  Acl compile(std::optional<std::string_view> user, std::string_view clientId) const;

  std::size_t users() const noexcept { return users_.size(); }

 private:
  AclRuleSet anonymous_;
  common::StringMap<AclRuleSet> users_;
  std::vector<AclRule> patterns_;
};

struct AclFile::Loaded {
  std::optional<AclFile> file;
  std::string error;  // "<path>:<line>: <reason>"
};

// Whether every topic that `inner` matches is matched by `outer` (both valid filters).
bool filterCovers(std::string_view outer, std::string_view inner) noexcept;

}  // namespace tern::auth
