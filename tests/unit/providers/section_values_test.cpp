#include "providers/section_values.hpp"

#include <gtest/gtest.h>

namespace cloudbrain::providers {
namespace {

TEST(SectionValues, Switches) {
  for (const char* on : {"true", "yes", "on", "1"}) EXPECT_EQ(parse_switch(on), true) << on;
  for (const char* off : {"false", "no", "off", "0"}) EXPECT_EQ(parse_switch(off), false) << off;
  for (const char* bad : {"", "True", "2", "y", " true"}) EXPECT_FALSE(parse_switch(bad)) << bad;
}

TEST(SectionValues, SnippetsAreOneLineAndBounded) {
  EXPECT_EQ(body_snippet("a\nb\r\tc"), "a b  c");
  EXPECT_EQ(body_snippet(std::string(250, 'x')), std::string(200, 'x') + "...");
  EXPECT_EQ(body_snippet("abcdef", 3), "abc...");
  EXPECT_EQ(body_snippet(""), "");
}

}  // namespace
}  // namespace cloudbrain::providers
