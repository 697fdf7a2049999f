#include "tern/auth/acl_file.hpp"

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "auth/text_file.hpp"
#include "tern/routing/topic.hpp"

namespace tern::auth {
namespace {

bool startsWithWildcard(std::string_view filter) {
  return !filter.empty() && (filter[0] == '+' || filter[0] == '#') &&
         (filter.size() == 1 || filter[1] == '/');
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t'))
    s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r'))
    s.remove_suffix(1);
  return s;
}

// The first level of a topic or filter.
std::string_view firstLevel(std::string_view text) {
  return text.substr(0, text.find('/'));
}

// `pattern` with %u and %c replaced; nullopt when the pattern does not apply to the client.
std::optional<std::string> substitute(std::string_view pattern,
                                      std::optional<std::string_view> user,
                                      std::string_view clientId) {
  const auto safe = [](std::string_view v) {
    return !v.empty() && v.find_first_of("+#/") == std::string_view::npos;
  };
  std::string out;
  for (std::size_t k = 0; k < pattern.size(); ++k) {
    if (pattern[k] == '%' && k + 1 < pattern.size() && pattern[k + 1] == 'u') {
      if (!user || !safe(*user)) return std::nullopt;
      out.append(*user);
      ++k;
    } else if (pattern[k] == '%' && k + 1 < pattern.size() && pattern[k + 1] == 'c') {
      if (!safe(clientId)) return std::nullopt;
      out.append(clientId);
      ++k;
    } else {
      out.push_back(pattern[k]);
    }
  }
  return out;
}

}  // namespace

bool filterCovers(std::string_view outer, std::string_view inner) noexcept {
  if (!inner.empty() && inner[0] == '$' && startsWithWildcard(outer)) return false;
  routing::LevelCursor outerLevels(outer);
  routing::LevelCursor innerLevels(inner);
  std::string_view o;
  std::string_view i;
  for (;;) {
    const bool hasOuter = outerLevels.next(o);
    if (hasOuter && o == "#") return true;  // the rest, including nothing
    const bool hasInner = innerLevels.next(i);
    if (!hasOuter || !hasInner) return hasOuter == hasInner;
    if (i == "#") return false;  // any depth, where outer is bounded
    if (o == "+") continue;      // any one level: a literal or '+'
    if (i == "+" || o != i) return false;
  }
}

void AclRules::add(std::string filter) {
  ++count_;
  if (startsWithWildcard(filter)) {
    wildcardFirst_.push_back(std::move(filter));
    return;
  }
  const std::string first(firstLevel(filter));
  byFirstLevel_[first].push_back(std::move(filter));
}

bool AclRules::matches(std::string_view topic) const noexcept {
  if (count_ == 0) return false;
  if (const auto it = byFirstLevel_.find(firstLevel(topic)); it != byFirstLevel_.end()) {
    for (const std::string& f : it->second) {
      if (routing::filterMatches(f, topic)) return true;
    }
  }
  for (const std::string& f : wildcardFirst_) {
    if (routing::filterMatches(f, topic)) return true;
  }
  return false;
}

bool AclRules::covers(std::string_view filter) const noexcept {
  if (count_ == 0) return false;
  // A filter that starts with a wildcard is covered only by one that does too.
  if (!startsWithWildcard(filter)) {
    if (const auto it = byFirstLevel_.find(firstLevel(filter)); it != byFirstLevel_.end()) {
      for (const std::string& f : it->second) {
        if (filterCovers(f, filter)) return true;
      }
    }
  }
  for (const std::string& f : wildcardFirst_) {
    if (filterCovers(f, filter)) return true;
  }
  return false;
}

void AclRuleSet::add(AclAccess access, std::string filter) {
  if (access == AclAccess::kDeny) {
    denies.add(std::move(filter));
    return;
  }
  if ((static_cast<unsigned>(access) & static_cast<unsigned>(AclAccess::kRead)) != 0) {
    reads.add(filter);
  }
  if ((static_cast<unsigned>(access) & static_cast<unsigned>(AclAccess::kWrite)) != 0) {
    writes.add(std::move(filter));
  }
}

bool Acl::mayWrite(std::string_view topic) const noexcept {
  if (own_.denies.matches(topic) || (base_ != nullptr && base_->denies.matches(topic))) {
    return false;
  }
  return own_.writes.matches(topic) || (base_ != nullptr && base_->writes.matches(topic));
}

bool Acl::mayRead(std::string_view topic) const noexcept {
  if (own_.denies.matches(topic) || (base_ != nullptr && base_->denies.matches(topic))) {
    return false;
  }
  return own_.reads.matches(topic) || (base_ != nullptr && base_->reads.matches(topic));
}

bool Acl::maySubscribe(std::string_view filter) const noexcept {
  if (own_.denies.covers(filter) || (base_ != nullptr && base_->denies.covers(filter))) {
    return false;
  }
  return own_.reads.covers(filter) || (base_ != nullptr && base_->reads.covers(filter));
}

AclFile::Loaded AclFile::parse(std::string_view contents, std::string_view name) {
  AclFile file;
  AclRuleSet* target = &file.anonymous_;
  std::size_t lineNumber = 0;
  while (!contents.empty()) {
    ++lineNumber;
    const std::size_t end = contents.find('\n');
    const std::string_view line = trim(contents.substr(0, end));
    contents.remove_prefix(end == std::string_view::npos ? contents.size() : end + 1);
    if (line.empty() || line[0] == '#') continue;
    const auto problem = [&](std::string_view why) {
      Loaded failed;
      failed.error = std::string(name) + ":" + std::to_string(lineNumber) + ": " + std::string(why);
      return failed;
    };
    const std::size_t space = line.find_first_of(" \t");
    const std::string_view keyword = line.substr(0, space);
    const std::string_view rest =
        space == std::string_view::npos ? std::string_view() : trim(line.substr(space));
    if (keyword == "user") {
      if (rest.empty()) return problem("'user' needs a user name");
      // A user named on several lines has all their rules (the map's nodes do not move).
      target = &file.users_[std::string(rest)];
      continue;
    }
    if (keyword != "topic" && keyword != "pattern") {
      return problem("expected 'topic', 'pattern' or 'user' (Mosquitto's acl_file format)");
    }
    AclRule rule;
    std::string_view filter = rest;
    const std::size_t gap = rest.find_first_of(" \t");
    const std::string_view first = rest.substr(0, gap);
    const std::pair<std::string_view, AclAccess> kinds[] = {{"read", AclAccess::kRead},
                                                            {"write", AclAccess::kWrite},
                                                            {"readwrite", AclAccess::kReadWrite},
                                                            {"deny", AclAccess::kDeny}};
    for (const auto& [word, access] : kinds) {
      if (first != word) continue;
      // An access word alone is a rule without its filter, not a topic named "read".
      if (gap == std::string_view::npos) return problem("the rule has no topic filter");
      rule.access = access;
      filter = trim(rest.substr(gap));
    }
    if (filter.empty()) return problem("the rule has no topic filter");
    // A pattern is checked once substituted (with a stand-in for %u and %c).
    std::optional<std::string> sample = substitute(filter, "u", "c");
    const std::string checked = keyword == "pattern" && sample ? *sample : std::string(filter);
    if (routing::validateTopicFilter(checked) != routing::TopicStatus::kOk) {
      return problem("not a valid topic filter: " + std::string(filter));
    }
    rule.filter.assign(filter);
    if (keyword == "pattern") {
      file.patterns_.push_back(std::move(rule));
    } else {
      target->add(rule.access, std::move(rule.filter));
    }
  }
  Loaded loaded;
  loaded.file = std::move(file);
  return loaded;
}

AclFile::Loaded AclFile::load(const std::string& path) {
  return detail::loadTextFile<Loaded>(
      path,
      [](const std::string& contents, const std::string& name) { return parse(contents, name); });
}

Acl AclFile::compile(std::optional<std::string_view> user, std::string_view clientId) const {
  Acl acl;
  if (!user) {
    acl.base_ = &anonymous_;
  } else if (const auto it = users_.find(*user); it != users_.end()) {
    acl.base_ = &it->second;
  }
  for (const AclRule& p : patterns_) {
    if (std::optional<std::string> filter = substitute(p.filter, user, clientId)) {
      acl.own_.add(p.access, std::move(*filter));
    }
  }
  return acl;
}

}  // namespace tern::auth
