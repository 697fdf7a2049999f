// `broker passwd FILE USER`: the password file tool, run as users run it (stdin not a terminal).
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>

#include "harness.hpp"
#include "tern/auth/password_file.hpp"

namespace tern::test {
namespace {

class PasswdCommand : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/tern-passwd-XXXXXX";
    ASSERT_NE(::mkdtemp(pattern), nullptr);
    dir_ = pattern;
    path_ = dir_ + "/passwords";
  }
  void TearDown() override {
    ::unlink(path_.c_str());
    ::rmdir(dir_.c_str());
  }
  RunResult passwd(std::vector<std::string> args, std::string_view input = {}) {
    std::vector<std::string> argv = {brokerBinary(), "passwd"};
    argv.insert(argv.end(), args.begin(), args.end());
    return runProcess(argv, input);
  }
  std::string contents() const {
    std::ifstream in(path_);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
  }

  std::string dir_;
  std::string path_;
};

TEST_F(PasswdCommand, CreatesUpdatesAndDeletesUsers) {
  RunResult r = passwd({path_, "alice"}, "s3cret\n");
  ASSERT_EQ(r.exitCode, 0) << r.err;
  struct stat st {};
  ASSERT_EQ(::stat(path_.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  r = passwd({path_, "bob", "--iterations", "2000"}, "other\r\n");
  ASSERT_EQ(r.exitCode, 0) << r.err;
  auth::PasswordFile::Loaded loaded = auth::PasswordFile::load(path_);
  ASSERT_TRUE(loaded.file.has_value()) << loaded.error;
  ASSERT_EQ(loaded.file->entries().size(), 2u);
  EXPECT_TRUE(loaded.file->find("alice")->verify("s3cret"));
  EXPECT_EQ(loaded.file->find("alice")->iterations, 101u);  // mosquitto_passwd's default
  EXPECT_TRUE(loaded.file->find("bob")->verify("other"));
  EXPECT_EQ(loaded.file->find("bob")->iterations, 2000u);
  EXPECT_EQ(contents().substr(0, 13), "alice:$7$101$");

  r = passwd({path_, "alice"}, "changed\n");  // an update keeps the user's place
  ASSERT_EQ(r.exitCode, 0) << r.err;
  loaded = auth::PasswordFile::load(path_);
  ASSERT_TRUE(loaded.file.has_value());
  EXPECT_EQ(loaded.file->entries()[0].user, "alice");
  EXPECT_TRUE(loaded.file->find("alice")->verify("changed"));
  EXPECT_FALSE(loaded.file->find("alice")->verify("s3cret"));

  r = passwd({path_, "alice", "-D"});
  ASSERT_EQ(r.exitCode, 0) << r.err;
  loaded = auth::PasswordFile::load(path_);
  ASSERT_TRUE(loaded.file.has_value());
  EXPECT_EQ(loaded.file->find("alice"), nullptr);
  EXPECT_NE(loaded.file->find("bob"), nullptr);
}

TEST_F(PasswdCommand, RefusesWhatItCannotDoAndLeavesTheFileAlone) {
  RunResult r = passwd({path_, "alice"}, "");
  EXPECT_EQ(r.exitCode, 1);
  EXPECT_NE(r.err.find("no password on stdin"), std::string::npos) << r.err;
  r = passwd({path_, "alice"}, "\n");
  EXPECT_EQ(r.exitCode, 1);
  EXPECT_NE(r.err.find("empty"), std::string::npos) << r.err;
  r = passwd({path_, "a:b"}, "x\n");
  EXPECT_EQ(r.exitCode, 1);
  r = passwd({path_, "nobody", "-D"});
  EXPECT_EQ(r.exitCode, 1);
  EXPECT_NE(r.err.find("No such file"), std::string::npos) << r.err;
  EXPECT_NE(::access(path_.c_str(), F_OK), 0) << "nothing was created";

  // A file that is not a password file is not overwritten.
  {
    std::ofstream out(path_);
    out << "alice:plaintext\n";
  }
  r = passwd({path_, "bob"}, "x\n");
  EXPECT_EQ(r.exitCode, 1);
  EXPECT_NE(r.err.find(path_ + ":1:"), std::string::npos) << r.err;
  EXPECT_EQ(contents(), "alice:plaintext\n");
  r = passwd({path_});  // USER missing
  EXPECT_EQ(r.exitCode, 2);
}

}  // namespace
}  // namespace tern::test
