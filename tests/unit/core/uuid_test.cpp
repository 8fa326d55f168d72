#include "core/uuid.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace cloudbrain {
namespace {

using namespace std::chrono_literals;

std::uint64_t unix_ms(const uuid& u) {
  std::uint64_t ms = 0;
  for (int i = 0; i < 6; ++i) ms = (ms << 8) | u.bytes()[i];
  return ms;
}

std::uint64_t now_ms() {
  return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                        std::chrono::system_clock::now().time_since_epoch())
                                        .count());
}

TEST(uuid, default_is_nil) {
  const uuid u;
  EXPECT_TRUE(u.is_nil());
  EXPECT_EQ(u.str(), "00000000-0000-0000-0000-000000000000");
}

TEST(uuid, v7_has_version_and_variant_bits) {
  for (int i = 0; i < 1000; ++i) {
    const auto u = uuid::generate_v7();
    EXPECT_EQ(u.bytes()[6] >> 4, 0x7) << u.str();
    EXPECT_EQ(u.bytes()[8] >> 6, 0b10) << u.str();
    const std::string s = u.str();
    EXPECT_EQ(s[14], '7') << s;
    EXPECT_NE(std::string("89ab").find(s[19]), std::string::npos) << s;
    EXPECT_FALSE(u.is_nil());
  }
}

TEST(uuid, v7_carries_the_current_unix_milliseconds) {
  const auto before = now_ms();
  const auto u = uuid::generate_v7();
  const auto after = now_ms();
  EXPECT_GE(unix_ms(u), before);
  EXPECT_LE(unix_ms(u), after);
}

TEST(uuid, v7_sorts_by_creation_time) {
  std::vector<uuid> ids;
  for (int i = 0; i < 20; ++i) {
    ids.push_back(uuid::generate_v7());
    std::this_thread::sleep_for(2ms);  // a new millisecond for each id
  }
  for (std::size_t i = 1; i < ids.size(); ++i) {
    EXPECT_LT(ids[i - 1], ids[i]) << ids[i - 1].str() << " vs " << ids[i].str();
    EXPECT_LT(ids[i - 1].str(), ids[i].str());  // the text form sorts the same way
    EXPECT_LT(unix_ms(ids[i - 1]), unix_ms(ids[i]));
  }
}

TEST(uuid, v7_is_unique) {
  std::set<uuid> seen;
  for (int i = 0; i < 20000; ++i) EXPECT_TRUE(seen.insert(uuid::generate_v7()).second);
}

TEST(uuid, str_is_canonical_lowercase) {
  const auto u = uuid::generate_v7();
  const std::string s = u.str();
  ASSERT_EQ(s.size(), 36u);
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      EXPECT_EQ(s[i], '-');
    } else {
      EXPECT_TRUE((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')) << s;
    }
  }
}

TEST(uuid, parses_lower_and_upper_case) {
  const auto lower = uuid::parse("0190d3a8-7b2c-7def-8a12-3456789abcde");
  const auto upper = uuid::parse("0190D3A8-7B2C-7DEF-8A12-3456789ABCDE");
  const auto mixed = uuid::parse("0190d3A8-7b2C-7DeF-8a12-3456789AbCdE");
  ASSERT_TRUE(lower);
  ASSERT_TRUE(upper);
  ASSERT_TRUE(mixed);
  EXPECT_EQ(*lower, *upper);
  EXPECT_EQ(*lower, *mixed);
  EXPECT_EQ(upper->str(), "0190d3a8-7b2c-7def-8a12-3456789abcde");
  const std::array<std::uint8_t, 16> want{0x01, 0x90, 0xd3, 0xa8, 0x7b, 0x2c, 0x7d, 0xef,
                                          0x8a, 0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde};
  EXPECT_EQ(lower->bytes(), want);
}

TEST(uuid, parses_nil) {
  const auto u = uuid::parse("00000000-0000-0000-0000-000000000000");
  ASSERT_TRUE(u);
  EXPECT_TRUE(u->is_nil());
  EXPECT_EQ(*u, uuid{});
}

TEST(uuid, rejects_bad_lengths_and_characters) {
  for (const char* bad : {
           "",
           "0190d3a8-7b2c-7def-8a12-3456789abcd",     // 35
           "0190d3a8-7b2c-7def-8a12-3456789abcdef",   // 37
           "0190d3a87b2c7def8a123456789abcde",        // no dashes (32)
           "{0190d3a8-7b2c-7def-8a12-3456789abcde}",  // braces
           "0190d3a8-7b2c-7def-8a12-3456789abcdg",    // g
           "0190d3a8-7b2c-7def-8a12-3456789abcd ",    // space
           "0190d3a8-7b2c-7def-8a12-3456789abcd-",    // dash in the hex
           "0190d3a8_7b2c-7def-8a12-3456789abcde",    // wrong separator
           "0190d3a87-b2c-7def-8a12-3456789abcde",    // dash one place late
           "0190d3a-87b2c-7def-8a12-3456789abcde",    // dash one place early
           "0190d3a8-7b2c-7def-8a123-456789abcde",    // last dash misplaced
           "zzzzzzzz-zzzz-zzzz-zzzz-zzzzzzzzzzzz",
           "0190d3a8-7b2c-7def-8a12-3456789abc\xc3\xa9",  // non-ASCII
           "------------------------------------",
       }) {
    EXPECT_FALSE(uuid::parse(bad)) << "'" << bad << "'";
  }
  // An embedded NUL must not end the parse early.
  EXPECT_FALSE(uuid::parse(std::string_view("0190d3a8-7b2c-7def-8a12-3456789abc\0e", 36)));
}

TEST(uuid, round_trips) {
  for (int i = 0; i < 1000; ++i) {
    const auto u = uuid::generate_v7();
    const auto back = uuid::parse(u.str());
    ASSERT_TRUE(back);
    EXPECT_EQ(*back, u);
    EXPECT_EQ(back->str(), u.str());
  }
}

TEST(uuid, order_is_byte_order) {
  const auto a = uuid::parse("00000000-0000-0000-0000-000000000001").value();
  const auto b = uuid::parse("00000000-0000-0000-0000-000000000100").value();
  const auto c = uuid::parse("10000000-0000-0000-0000-000000000000").value();
  EXPECT_LT(a, b);
  EXPECT_LT(b, c);
  EXPECT_NE(a, b);
}

TEST(hex, to_hex_is_lowercase) {
  const std::uint8_t data[] = {0x00, 0x01, 0x7f, 0x80, 0xab, 0xff};
  EXPECT_EQ(to_hex(data, sizeof data), "00017f80abff");
  EXPECT_EQ(to_hex(data, 0), "");
}

TEST(hex, from_hex_accepts_both_cases) {
  EXPECT_EQ(from_hex("00017f80abff").value(), std::string("\x00\x01\x7f\x80\xab\xff", 6));
  EXPECT_EQ(from_hex("00017F80ABFF").value(), std::string("\x00\x01\x7f\x80\xab\xff", 6));
  EXPECT_EQ(from_hex("").value(), "");
}

TEST(hex, from_hex_rejects_odd_length_and_non_hex) {
  EXPECT_FALSE(from_hex("abc"));
  EXPECT_FALSE(from_hex("0"));
  EXPECT_FALSE(from_hex("zz"));
  EXPECT_FALSE(from_hex("0g"));
  EXPECT_FALSE(from_hex("g0"));
  EXPECT_FALSE(from_hex(" 0"));
  EXPECT_FALSE(from_hex("0x00"));
  EXPECT_FALSE(from_hex("-1"));
}

TEST(hex, round_trips_every_byte) {
  std::vector<std::uint8_t> all(256);
  for (int i = 0; i < 256; ++i) all[i] = static_cast<std::uint8_t>(i);
  const std::string hex = to_hex(all.data(), all.size());
  ASSERT_EQ(hex.size(), 512u);
  const auto back = from_hex(hex);
  ASSERT_TRUE(back);
  ASSERT_EQ(back->size(), 256u);
  EXPECT_TRUE(std::equal(all.begin(), all.end(), back->begin(),
                         [](std::uint8_t a, char b) { return a == static_cast<std::uint8_t>(b); }));
}

TEST(secure_random, fills_the_buffer) {
  std::array<std::uint8_t, 32> a{}, b{};
  secure_random(a.data(), a.size());
  secure_random(b.data(), b.size());
  EXPECT_NE(a, b);
  EXPECT_NE(a, (std::array<std::uint8_t, 32>{}));
}

}  // namespace
}  // namespace cloudbrain
