#include "tern/auth/acl_file.hpp"

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "auth/text_file.hpp"
#include "tern/routing/topic.hpp"

namespace tern::auth {
namespace {

// The next '/'-separated level of `rest` into `level`; false when there is none left.
bool nextLevel(std::string_view& rest, bool& done, std::string_view& level) {
  if (done) return false;
  const std::size_t slash = rest.find('/');
  if (slash == std::string_view::npos) {
    level = rest;
    done = true;
  } else {
    level = rest.substr(0, slash);
    rest.remove_prefix(slash + 1);
  }
  return true;
}

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

bool anyMatches(const std::vector<std::string>& filters, std::string_view topic) {
  for (const std::string& f : filters) {
    if (routing::filterMatches(f, topic)) return true;
  }
  return false;
}

bool anyCovers(const std::vector<std::string>& filters, std::string_view filter) {
  for (const std::string& f : filters) {
    if (filterCovers(f, filter)) return true;
  }
  return false;
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
  bool outerDone = false;
  bool innerDone = false;
  std::string_view o;
  std::string_view i;
  for (;;) {
    const bool hasOuter = nextLevel(outer, outerDone, o);
    if (hasOuter && o == "#") return true;  // the rest, including nothing
    const bool hasInner = nextLevel(inner, innerDone, i);
    if (!hasOuter || !hasInner) return hasOuter == hasInner;
    if (i == "#") return false;  // any depth, where outer is bounded
    if (o == "+") continue;      // any one level: a literal or '+'
    if (i == "+" || o != i) return false;
  }
}

bool Acl::mayWrite(std::string_view topic) const noexcept {
  return !anyMatches(denies_, topic) && anyMatches(writes_, topic);
}

bool Acl::mayRead(std::string_view topic) const noexcept {
  return !anyMatches(denies_, topic) && anyMatches(reads_, topic);
}

bool Acl::maySubscribe(std::string_view filter) const noexcept {
  return !anyCovers(denies_, filter) && anyCovers(reads_, filter);
}

AclFile::Loaded AclFile::parse(std::string_view contents, std::string_view name) {
  AclFile file;
  std::vector<AclRule>* target = &file.anonymous_;
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
      file.users_.push_back({std::string(rest), {}});
      target = &file.users_.back().rules;
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
    (keyword == "pattern" ? file.patterns_ : *target).push_back(std::move(rule));
  }
  Loaded loaded;
  loaded.file = std::move(file);
  return loaded;
}

AclFile::Loaded AclFile::load(const std::string& path) {
  std::string contents;
  if (std::string error = detail::readTextFile(path, contents); !error.empty()) {
    Loaded failed;
    failed.error = std::move(error);
    return failed;
  }
  return parse(contents, path);
}

Acl AclFile::compile(std::optional<std::string_view> user, std::string_view clientId) const {
  Acl acl;
  const auto add = [&acl](AclAccess access, std::string filter) {
    if (access == AclAccess::kDeny) {
      acl.denies_.push_back(std::move(filter));
      return;
    }
    if ((static_cast<unsigned>(access) & static_cast<unsigned>(AclAccess::kRead)) != 0) {
      acl.reads_.push_back(filter);
    }
    if ((static_cast<unsigned>(access) & static_cast<unsigned>(AclAccess::kWrite)) != 0) {
      acl.writes_.push_back(std::move(filter));
    }
  };
  if (!user) {
    for (const AclRule& r : anonymous_)
      add(r.access, r.filter);
  } else {
    for (const User& u : users_) {  // a user named on several lines has all their rules
      if (u.name != *user) continue;
      for (const AclRule& r : u.rules)
        add(r.access, r.filter);
    }
  }
  for (const AclRule& p : patterns_) {
    if (std::optional<std::string> filter = substitute(p.filter, user, clientId)) {
      add(p.access, std::move(*filter));
    }
  }
  return acl;
}

}  // namespace tern::auth
