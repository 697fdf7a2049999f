#include "tern/protocol/json_writer.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <string>

namespace tern::protocol {
namespace {

std::string asJson(std::string_view text) {
  std::string out;
  appendJsonString(out, text);
  return out;
}

TEST(JsonWriter, EscapesWhatJsonRequires) {
  EXPECT_EQ(asJson("plain"), "\"plain\"");
  EXPECT_EQ(asJson("a\"b\\c"), R"("a\"b\\c")");
  EXPECT_EQ(asJson("\n\r\t\b\f"), R"("\n\r\t\b\f")");
  EXPECT_EQ(asJson(std::string("\x01\0", 2)), R"("\u0001\u0000")");
  EXPECT_EQ(asJson("caf\xC3\xA9"), "\"caf\xC3\xA9\"");
}

TEST(JsonWriter, ReplacesInvalidUtf8) {
  EXPECT_EQ(asJson("a\xFF"
                   "b"),
            "\"a\xEF\xBF\xBD"
            "b\"");
}

TEST(JsonWriter, OutputParsesBackForArbitraryBytes) {
  // Every byte value, in one string: a JSON parser must accept the result.
  std::string all;
  for (int i = 0; i < 256; ++i)
    all.push_back(static_cast<char>(i));
  std::string out = "{";
  appendJsonString(out, "k");
  out.push_back(':');
  appendJsonString(out, all);
  out.push_back(',');
  appendJsonField(out, "n", 42);
  out.push_back('}');
  const auto parsed = nlohmann::json::parse(out);
  EXPECT_EQ(parsed["n"], 42);
  const std::string back = parsed["k"];
  EXPECT_EQ(back.substr(0, 128), all.substr(0, 128));  // ASCII survives unchanged
}

}  // namespace
}  // namespace tern::protocol
