#include "core/error.hpp"

#include <gtest/gtest.h>

#include <set>
#include <stdexcept>
#include <string>

namespace cloudbrain {
namespace {

TEST(error, category_names_every_code) {
  EXPECT_STREQ(error_category().name(), "cloudbrain");
  std::set<std::string> seen;
  for (int i = 0; i <= static_cast<int>(errc::internal); ++i) {
    const auto ec = make_error_code(static_cast<errc>(i));
    EXPECT_EQ(&ec.category(), &error_category());
    const std::string m = ec.message();
    EXPECT_NE(m, "unknown error") << i;
    EXPECT_FALSE(m.empty()) << i;
    EXPECT_TRUE(seen.insert(m).second) << "duplicate message '" << m << "' for " << i;
  }
  EXPECT_EQ(make_error_code(static_cast<errc>(9999)).message(), "unknown error");
}

TEST(error, implicit_conversion_to_error_code) {
  const boost::system::error_code ec = errc::not_found;
  EXPECT_EQ(ec, make_error_code(errc::not_found));
  EXPECT_NE(ec, make_error_code(errc::conflict));
  EXPECT_TRUE(ec);
  EXPECT_FALSE(make_error_code(errc::ok));
}

TEST(error, message_joins_code_and_detail) {
  const error plain(errc::timeout);
  EXPECT_EQ(plain.message(), "deadline exceeded");
  const error detailed(errc::not_found, "no such instance");
  EXPECT_EQ(detailed.message(), "not found: no such instance");
  EXPECT_TRUE(detailed.is(errc::not_found));
  EXPECT_FALSE(detailed.is(errc::conflict));
  const auto f = fail(errc::bad_config, "x");
  EXPECT_TRUE(f.is(errc::bad_config));
  EXPECT_EQ(f.detail, "x");
}

result<int> half(int n) {
  if (n % 2 != 0) return fail(errc::invalid_argument, "odd");
  return n / 2;
}

TEST(error, result_carries_value_or_error) {
  const auto ok = half(8);
  ASSERT_TRUE(ok);
  EXPECT_EQ(*ok, 4);
  const auto bad = half(3);
  ASSERT_FALSE(bad);
  EXPECT_TRUE(bad.error().is(errc::invalid_argument));
  EXPECT_EQ(bad.error().detail, "odd");
}

TEST(error, value_on_error_throws_with_the_message) {
  const auto bad = half(3);
  try {
    (void)bad.value();
    FAIL() << "value() did not throw";
  } catch (const std::runtime_error& e) {
    EXPECT_STREQ(e.what(), "invalid argument: odd");
  }
}

}  // namespace
}  // namespace cloudbrain
