#include "tern/common/utf8.hpp"

#include <gtest/gtest.h>

#include <string>

namespace tern::common {
namespace {

TEST(Utf8, AcceptsWellFormedText) {
  EXPECT_TRUE(isValidUtf8(""));
  EXPECT_TRUE(isValidUtf8("plain ascii text that is longer than eight bytes"));
  EXPECT_TRUE(isValidUtf8("caf\xC3\xA9"));           // U+00E9
  EXPECT_TRUE(isValidUtf8("\xE2\x82\xAC"));          // U+20AC
  EXPECT_TRUE(isValidUtf8("\xF0\x9F\x98\x80"));      // U+1F600
  EXPECT_TRUE(isValidUtf8("\xF4\x8F\xBF\xBF"));      // U+10FFFF
  EXPECT_TRUE(isValidUtf8(std::string("a\0b", 3)));  // NUL is well-formed UTF-8
}

TEST(Utf8, RejectsIllFormedText) {
  EXPECT_FALSE(isValidUtf8("\x80"));                  // lone continuation byte
  EXPECT_FALSE(isValidUtf8("\xC0\xAF"));              // overlong '/'
  EXPECT_FALSE(isValidUtf8("\xE0\x80\xAF"));          // overlong three-byte form
  EXPECT_FALSE(isValidUtf8("\xED\xA0\x80"));          // surrogate U+D800
  EXPECT_FALSE(isValidUtf8("\xF4\x90\x80\x80"));      // above U+10FFFF
  EXPECT_FALSE(isValidUtf8("\xF5\x80\x80\x80"));      // invalid lead byte
  EXPECT_FALSE(isValidUtf8("abc\xE2\x82"));           // truncated at the end
  EXPECT_FALSE(isValidUtf8("0123456789abcdef\xFF"));  // bad byte after the ASCII fast path
}

TEST(Utf8, SanitizeReplacesEachMaximalSubpart) {
  std::string out;
  appendSanitizedUtf8(out,
                      "a\xFF"
                      "b");
  EXPECT_EQ(out,
            "a\xEF\xBF\xBD"
            "b");

  out.clear();  // truncated 3-byte sequence followed by ASCII: one replacement for the subpart
  appendSanitizedUtf8(out,
                      "\xE2\x82"
                      "x");
  EXPECT_EQ(out,
            "\xEF\xBF\xBD"
            "x");

  out.clear();  // two lone continuation bytes: two replacements
  appendSanitizedUtf8(out, "\x80\x80");
  EXPECT_EQ(out, "\xEF\xBF\xBD\xEF\xBF\xBD");

  out.clear();  // valid text is copied unchanged
  appendSanitizedUtf8(out, "caf\xC3\xA9 \xF0\x9F\x98\x80");
  EXPECT_EQ(out, "caf\xC3\xA9 \xF0\x9F\x98\x80");
}

}  // namespace
}  // namespace tern::common
