#include "tern/auth/acl_file.hpp"

#include <gtest/gtest.h>

namespace tern::auth {
namespace {

AclFile parsed(std::string_view text) {
  AclFile::Loaded loaded = AclFile::parse(text, "acl");
  EXPECT_EQ(loaded.error, "");
  return loaded.file ? *loaded.file : AclFile{};
}

// Mosquitto's aclfile.example, and a few more rules.
constexpr std::string_view kFile =
    "# This affects access control for clients with no username.\n"
    "topic read $SYS/#\n"
    "\n"
    "# This only affects clients with username \"roger\".\n"
    "user roger\n"
    "topic foo/bar\n"
    "topic read sensors/#\n"
    "topic deny sensors/secret/#\n"
    "topic write cmd/+/set\n"
    "\n"
    "user ann\n"
    "topic readwrite with space/in it\n"
    "\n"
    "# This affects all clients.\n"
    "pattern write $SYS/broker/connection/%c/state\n"
    "pattern readwrite home/%u/#\n";

TEST(FilterCovers, WhatAFilterMatchesInsideAnother) {
  EXPECT_TRUE(filterCovers("#", "a/b"));
  EXPECT_TRUE(filterCovers("#", "#"));
  EXPECT_TRUE(filterCovers("a/#", "a"));
  EXPECT_TRUE(filterCovers("a/#", "a/+/c/#"));
  EXPECT_TRUE(filterCovers("a/+", "a/+"));
  EXPECT_TRUE(filterCovers("a/+", "a/b"));
  EXPECT_TRUE(filterCovers("a/b", "a/b"));
  EXPECT_FALSE(filterCovers("a/b", "a/+"));
  EXPECT_FALSE(filterCovers("a/+", "a/#"));
  EXPECT_FALSE(filterCovers("a/+", "a/b/c"));
  EXPECT_FALSE(filterCovers("a/b/c", "a/b"));
  EXPECT_FALSE(filterCovers("a/#", "b/#"));
  EXPECT_FALSE(filterCovers("#", "$SYS/#"));  // '#' does not match '$' topics
  EXPECT_FALSE(filterCovers("+/x", "$SYS/x"));
  EXPECT_TRUE(filterCovers("$SYS/#", "$SYS/broker/+"));
}

TEST(AclFile, AnonymousUserAndPatternRules) {
  const AclFile file = parsed(kFile);
  EXPECT_EQ(file.users(), 2u);

  const Acl anonymous = file.compile(std::nullopt, "dev1");
  EXPECT_TRUE(anonymous.mayRead("$SYS/broker/uptime"));
  EXPECT_FALSE(anonymous.mayWrite("$SYS/broker/uptime"));
  EXPECT_FALSE(anonymous.mayRead("foo/bar"));                            // roger's, not theirs
  EXPECT_TRUE(anonymous.mayWrite("$SYS/broker/connection/dev1/state"));  // pattern, %c
  EXPECT_FALSE(anonymous.mayWrite("$SYS/broker/connection/dev2/state"));
  EXPECT_FALSE(anonymous.mayRead("home/x/a"));  // %u: not for anonymous clients

  const Acl roger = file.compile("roger", "r1");
  EXPECT_TRUE(roger.mayRead("foo/bar"));
  EXPECT_TRUE(roger.mayWrite("foo/bar"));             // no access word: readwrite
  EXPECT_FALSE(roger.mayRead("$SYS/broker/uptime"));  // anonymous rules are not roger's
  EXPECT_TRUE(roger.mayRead("sensors/a/t"));
  EXPECT_FALSE(roger.mayWrite("sensors/a/t"));
  EXPECT_FALSE(roger.mayRead("sensors/secret/key"));  // deny wins
  EXPECT_TRUE(roger.mayWrite("cmd/lamp/set"));
  EXPECT_FALSE(roger.mayRead("cmd/lamp/set"));
  EXPECT_TRUE(roger.mayRead("home/roger/kitchen"));
  EXPECT_TRUE(roger.mayWrite("home/roger"));
  EXPECT_FALSE(roger.mayRead("home/ann/kitchen"));

  const Acl ann = file.compile("ann", "a1");
  EXPECT_TRUE(ann.mayRead("with space/in it"));
  EXPECT_FALSE(ann.mayRead("foo/bar"));
  const Acl stranger = file.compile("nobody", "n1");  // a user without rules of its own
  EXPECT_FALSE(stranger.mayRead("foo/bar"));
  EXPECT_TRUE(stranger.mayRead("home/nobody/x"));
  EXPECT_FALSE(stranger.mayRead("$SYS/x"));
}

TEST(AclFile, SubscriptionsMustBeCoveredByAReadGrant) {
  const AclFile file = parsed(kFile);  // outlives the rules compiled from it
  const Acl roger = file.compile("roger", "r1");
  EXPECT_TRUE(roger.maySubscribe("sensors/#"));
  EXPECT_TRUE(roger.maySubscribe("sensors/+/t"));
  EXPECT_TRUE(roger.maySubscribe("foo/bar"));
  EXPECT_FALSE(roger.maySubscribe("#"));
  EXPECT_FALSE(roger.maySubscribe("foo/+"));             // wider than foo/bar
  EXPECT_FALSE(roger.maySubscribe("cmd/lamp/set"));      // write only
  EXPECT_FALSE(roger.maySubscribe("sensors/secret/#"));  // denied whole
  // Overlapping a deny rule: allowed, and the denied topics are taken out per delivery.
  EXPECT_TRUE(roger.maySubscribe("sensors/+/key"));
  EXPECT_TRUE(roger.readsNeedChecks());
  EXPECT_FALSE(file.compile("ann", "a").readsNeedChecks());
}

TEST(AclFile, SubstitutedValuesCannotWidenAPattern) {
  const AclFile file = parsed("pattern readwrite dev/%c/#\npattern read users/%u\n");
  EXPECT_TRUE(file.compile("bob", "d1").mayRead("dev/d1/x"));
  for (const char* id : {"+", "#", "a/b", ""}) {
    const Acl acl = file.compile("bob", id);
    EXPECT_FALSE(acl.mayRead("dev/d1/x")) << id;
    EXPECT_FALSE(acl.maySubscribe("dev/+/#")) << id;
  }
  EXPECT_FALSE(file.compile("+", "d1").mayRead("users/alice"));
  EXPECT_TRUE(file.compile("alice", "d1").mayRead("users/alice"));
}

TEST(AclFile, NoRulesMeansNothingIsAllowed) {
  const AclFile file = parsed("# nothing\n");
  const Acl acl = file.compile("u", "c");
  EXPECT_FALSE(acl.mayRead("a"));
  EXPECT_FALSE(acl.mayWrite("a"));
  EXPECT_FALSE(acl.maySubscribe("a"));
}

TEST(AclFile, ManyRulesAreIndexedByTheirFirstLevel) {
  std::string text;
  for (int k = 0; k < 1000; ++k)
    text += "topic readwrite other" + std::to_string(k) + "/x/#\n";
  text += "topic read lg/+/t\ntopic write +/w\ntopic deny lg/secret\n";
  const AclFile file = parsed(text);
  const Acl acl = file.compile(std::nullopt, "c");
  EXPECT_TRUE(acl.mayWrite("other999/x/y"));
  EXPECT_FALSE(acl.mayWrite("other999/y"));
  EXPECT_TRUE(acl.mayRead("lg/a/t"));
  EXPECT_FALSE(acl.mayRead("lg/secret"));
  EXPECT_TRUE(acl.mayWrite("anything/w"));  // a wildcard first level matches every bucket
  EXPECT_TRUE(acl.maySubscribe("lg/+/t"));
  EXPECT_FALSE(acl.maySubscribe("+/+/t"));  // no rule that starts with a wildcard reads it
  EXPECT_TRUE(acl.maySubscribe("other5/x/+"));
}

TEST(AclFile, ErrorsNameTheLine) {
  for (const char* bad : {"frobnicate a/b", "topic", "topic read", "topic read a/#/b", "user",
                          "pattern write a/%c/#/x"}) {
    const AclFile::Loaded loaded = AclFile::parse(std::string("# c\n") + bad + "\n", "acl");
    EXPECT_FALSE(loaded.file.has_value()) << bad;
    EXPECT_EQ(loaded.error.substr(0, 6), "acl:2:") << bad << " -> " << loaded.error;
  }
  EXPECT_NE(AclFile::load("/nonexistent/acl").error.find("No such file"), std::string::npos);
}

}  // namespace
}  // namespace tern::auth
