#include "tern/auth/password_file.hpp"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>

namespace tern::auth {
namespace {

// Made by Debian 12's mosquitto_passwd 2.0.11:
//   mosquitto_passwd -c -b pw alice secret && mosquitto_passwd -H sha512 -b pw bob hunter2
constexpr std::string_view kMosquittoFile =
    "alice:$7$101$FcdflbDLbR4LQLWv$/5cfdrr0PAZHoZZs6duTKeyqcBDG+g+ima48Ke3K0U+ceXigomEzxBRWQ3aY8M"
    "WD54s13UoWi6jfi2W4aywbpg==\n"
    "bob:$6$d7VPou6qVL8m1u7P$hyL2sQeiwmqVo33pwLjBfWIiEnKmWYZ8Y6sPjJ70oGQBIFnSNOCyAQwcHE+BmomCGKfr"
    "0l8TRr5h89hB6Cn9aA==\n";

PasswordFile parsed(std::string_view contents) {
  PasswordFile::Loaded loaded = PasswordFile::parse(contents, "pw");
  EXPECT_EQ(loaded.error, "");
  return loaded.file ? *loaded.file : PasswordFile{};
}

TEST(PasswordFile, ReadsWhatMosquittoPasswdWrites) {
  const PasswordFile file = parsed(kMosquittoFile);
  ASSERT_EQ(file.entries().size(), 2u);
  const PasswordHash* alice = file.find("alice");
  ASSERT_NE(alice, nullptr);
  EXPECT_EQ(alice->kind, PasswordHash::Kind::kPbkdf2Sha512);
  EXPECT_EQ(alice->iterations, 101u);
  EXPECT_EQ(alice->salt.size(), 12u);
  EXPECT_TRUE(alice->verify("secret"));
  EXPECT_FALSE(alice->verify("Secret"));
  EXPECT_FALSE(alice->verify(""));
  const PasswordHash* bob = file.find("bob");
  ASSERT_NE(bob, nullptr);
  EXPECT_EQ(bob->kind, PasswordHash::Kind::kSha512);
  EXPECT_TRUE(bob->verify("hunter2"));
  EXPECT_FALSE(bob->verify("hunter3"));
  EXPECT_EQ(file.find("carol"), nullptr);
  // Written back unchanged: the same bytes mosquitto_passwd wrote.
  EXPECT_EQ(file.serialize(), kMosquittoFile);
}

TEST(PasswordFile, MadeHashesVerifyAndRoundTrip) {
  const PasswordHash h = PasswordHash::make("pa:ss@word\n", 1000);
  EXPECT_EQ(h.kind, PasswordHash::Kind::kPbkdf2Sha512);
  EXPECT_EQ(h.iterations, 1000u);
  EXPECT_TRUE(h.verify("pa:ss@word\n"));
  EXPECT_FALSE(h.verify("pa:ss@word"));
  const std::optional<PasswordHash> back = PasswordHash::parse(h.format());
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(back->format(), h.format());
  EXPECT_TRUE(back->verify("pa:ss@word\n"));
  // Salts are random: the same password hashes differently.
  EXPECT_NE(PasswordHash::make("x").format(), PasswordHash::make("x").format());
  EXPECT_EQ(PasswordHash::make("x").iterations, PasswordHash::kDefaultIterations);
}

TEST(PasswordFile, RefusesMalformedHashesWithTheLine) {
  for (const char* bad : {
           "alice:secret",                     // plain text
           "alice:$5$abc$def",                 // another scheme
           "alice:$7$$FcdflbDLbR4LQLWv$AAAA",  // no iteration count
           "alice:$7$0$FcdflbDLbR4LQLWv$AAAA",
           "alice:$7$99999999999$FcdflbDLbR4LQLWv$AAAA",
           "alice:$7$101$not*base64$AAAA",
           "alice:$7$101$FcdflbDLbR4LQLWv$AAAA",  // a hash of 3 bytes, not 64
           "alice:$6$d7VPou6qVL8m1u7P",           // no hash
           ":$6$d7VPou6qVL8m1u7P$AAAA",           // no user
           "no colon at all",
       }) {
    const PasswordFile::Loaded loaded =
        PasswordFile::parse(std::string("# header\n\n") + bad, "pw");
    EXPECT_FALSE(loaded.file.has_value()) << bad;
    EXPECT_EQ(loaded.error.substr(0, 5), "pw:3:") << bad << " -> " << loaded.error;
  }
  const std::string twice = std::string(kMosquittoFile) +
                            std::string(kMosquittoFile.substr(0, kMosquittoFile.find('\n') + 1));
  const PasswordFile::Loaded loaded = PasswordFile::parse(twice, "pw");
  EXPECT_FALSE(loaded.file.has_value());
  EXPECT_NE(loaded.error.find("pw:3: the user appears twice"), std::string::npos) << loaded.error;
}

TEST(PasswordFile, CommentsBlankLinesAndCrlfAreAccepted) {
  std::string text = "# users\r\n\r\n";
  text += std::string(kMosquittoFile.substr(0, kMosquittoFile.find('\n'))) + "\r\n";
  const PasswordFile file = parsed(text);
  ASSERT_EQ(file.entries().size(), 1u);
  EXPECT_TRUE(file.find("alice")->verify("secret"));
}

TEST(PasswordFile, SetRemoveAndUserNames) {
  PasswordFile file = parsed(kMosquittoFile);
  EXPECT_TRUE(file.set("carol", PasswordHash::make("c")));
  EXPECT_TRUE(file.set("alice", PasswordHash::make("new")));  // replaced in place
  EXPECT_FALSE(file.set("", PasswordHash::make("c")));
  EXPECT_FALSE(file.set("a:b", PasswordHash::make("c")));
  EXPECT_FALSE(file.set(std::string_view("a\0b", 3), PasswordHash::make("c")));
  EXPECT_FALSE(file.set("a\nb", PasswordHash::make("c")));
  ASSERT_EQ(file.entries().size(), 3u);
  EXPECT_EQ(file.entries()[0].user, "alice");
  EXPECT_TRUE(file.find("alice")->verify("new"));
  EXPECT_TRUE(file.remove("bob"));
  EXPECT_FALSE(file.remove("bob"));
  EXPECT_EQ(file.entries().size(), 2u);
}

TEST(PasswordFile, SavesAtomicallyWithOwnerOnlyPermissions) {
  char dir[] = "/tmp/tern-pw-XXXXXX";
  ASSERT_NE(::mkdtemp(dir), nullptr);
  const std::string path = std::string(dir) + "/passwords";
  PasswordFile file = parsed(kMosquittoFile);
  ASSERT_EQ(file.save(path), "");
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  const PasswordFile::Loaded back = PasswordFile::load(path);
  ASSERT_TRUE(back.file.has_value()) << back.error;
  EXPECT_EQ(back.file->serialize(), kMosquittoFile);
  EXPECT_NE(PasswordFile::load(std::string(dir) + "/missing").error.find("No such file"),
            std::string::npos);
  ::unlink(path.c_str());
  ::rmdir(dir);
}

}  // namespace
}  // namespace tern::auth
