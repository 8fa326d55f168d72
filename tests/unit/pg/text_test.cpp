#include "core/pg/text.hpp"

#include <gtest/gtest.h>

#include <array>
#include <limits>
#include <string_view>

namespace cloudbrain::pg {
namespace {

TEST(pg_param, encodes_scalars_in_text_format) {
  EXPECT_EQ(to_param(std::int64_t{-42}), "-42");
  EXPECT_EQ(to_param(std::numeric_limits<std::int64_t>::min()), "-9223372036854775808");
  EXPECT_EQ(to_param(7), "7");
  EXPECT_EQ(to_param(true), "true");
  EXPECT_EQ(to_param(false), "false");
  EXPECT_EQ(to_param("abc"), "abc");
  EXPECT_EQ(to_param(std::string_view("a\0b", 3)), std::string("a\0b", 3));
  EXPECT_EQ(to_param(std::optional<int>()), std::nullopt);
  EXPECT_EQ(to_param(std::optional<int>(3)), "3");
}

TEST(pg_param, values_point_into_params_with_null_for_null) {
  const std::array<param, 3> params{to_param("x"), std::nullopt, to_param("")};
  const auto values = param_values(params);
  ASSERT_EQ(values.size(), 3u);
  EXPECT_EQ(values[0], params[0]->c_str());
  EXPECT_EQ(values[1], nullptr);
  EXPECT_STREQ(values[2], "");
  EXPECT_TRUE(param_values({}).empty());
}

TEST(pg_text_array, quotes_every_element) {
  const std::array<std::string, 6> elements{"a",           "b c",  "with \"quote\"",
                                            "back\\slash", "NULL", ""};
  EXPECT_EQ(text_array(elements), R"({"a","b c","with \"quote\"","back\\slash","NULL",""})");
  EXPECT_EQ(text_array(std::span<const std::string>()), "{}");
}

TEST(pg_text_array, views_are_quoted_as_strings_are) {
  const std::string owned = "with \"quote\"";
  const std::array<std::string_view, 4> elements{"a", owned, "back\\slash", ""};
  EXPECT_EQ(text_array(elements), R"({"a","with \"quote\"","back\\slash",""})");
  EXPECT_EQ(text_array(std::span<const std::string_view>()), "{}");
}

TEST(pg_text_array, nullopt_is_a_null_element) {
  const std::array<std::optional<std::string>, 3> elements{"x", std::nullopt, "{,}"};
  EXPECT_EQ(text_array(elements), R"({"x",NULL,"{,}"})");
}

TEST(pg_decode, int64) {
  EXPECT_EQ(parse_int64("0"), 0);
  EXPECT_EQ(parse_int64("-17"), -17);
  EXPECT_EQ(parse_int64("9223372036854775807"), std::numeric_limits<std::int64_t>::max());
  EXPECT_EQ(parse_int64("9223372036854775808"), std::nullopt);
  EXPECT_EQ(parse_int64(""), std::nullopt);
  EXPECT_EQ(parse_int64("12a"), std::nullopt);
  EXPECT_EQ(parse_int64(" 1"), std::nullopt);
  EXPECT_EQ(parse_int64("1.5"), std::nullopt);
}

TEST(pg_decode, bool) {
  EXPECT_EQ(parse_bool("t"), true);
  EXPECT_EQ(parse_bool("f"), false);
  EXPECT_EQ(parse_bool("true"), true);
  EXPECT_EQ(parse_bool("false"), false);
  EXPECT_EQ(parse_bool("yes"), std::nullopt);
  EXPECT_EQ(parse_bool(""), std::nullopt);
}

}  // namespace
}  // namespace cloudbrain::pg
