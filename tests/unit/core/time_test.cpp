#include "core/time.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <random>
#include <string>
#include <vector>

namespace cloudbrain {
namespace {

using namespace std::chrono;
using namespace std::chrono_literals;

system_clock::time_point utc(int y, unsigned mo, unsigned d, int h = 0, int mi = 0, int s = 0,
                             long us = 0) {
  return system_clock::time_point(sys_days{year{y} / month{mo} / day{d}} + hours{h} + minutes{mi} +
                                  seconds{s} + microseconds{us});
}

// --- parse_duration -------------------------------------------------------------------------

TEST(parse_duration, accepts_every_unit) {
  struct c {
    const char* text;
    milliseconds want;
  };
  const std::vector<c> cases = {
      {"250ms", 250ms}, {"0ms", 0ms},     {"30s", 30s}, {"30", 30s},   {"0", 0ms},
      {"10m", 10min},   {"10min", 10min}, {"2h", 2h},   {"7d", 168h},  {"1d", 24h},
      {"1ms", 1ms},     {"86400s", 24h},  {"007s", 7s}, {"1h", 3600s},
  };
  for (const auto& k : cases) {
    const auto r = parse_duration(k.text);
    ASSERT_TRUE(r) << k.text;
    EXPECT_EQ(*r, k.want) << k.text;
  }
}

TEST(parse_duration, trims_surrounding_spaces) {
  EXPECT_EQ(parse_duration("  30s").value(), 30s);
  EXPECT_EQ(parse_duration("30s  ").value(), 30s);
  EXPECT_EQ(parse_duration(" 250ms ").value(), 250ms);
}

TEST(parse_duration, rejects_bad_units_and_shapes) {
  for (const char* bad :
       {"",    " ",   "s",    "ms",    "10x",   "10S", "10Ms",  "10sec", "10 s", "10sm", "ms10",
        "-5s", "+5s", "1.5s", "1e3ms", "0x10s", "ten", "10s10", "10mm",  "5hh",  "1w"}) {
    const auto r = parse_duration(bad);
    ASSERT_FALSE(r) << "'" << bad << "'";
    EXPECT_TRUE(r.error().is(errc::invalid_argument)) << bad;
    // The detail quotes what was given, so the operator sees the culprit.
    EXPECT_NE(r.error().detail.find(std::string("'") + bad + "'"), std::string::npos)
        << r.error().detail;
  }
}

TEST(parse_duration, unknown_unit_says_which_units_exist) {
  const auto r = parse_duration("3fortnights");
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().detail.find("ms, s, m, h or d"), std::string::npos) << r.error().detail;
}

TEST(parse_duration, rejects_overflow) {
  // Limit: 2^52 ms (exactly representable in a double, far beyond any sane setting).
  constexpr std::int64_t limit = std::int64_t{1} << 52;
  EXPECT_EQ(parse_duration(std::to_string(limit) + "ms").value(), milliseconds(limit));
  EXPECT_FALSE(parse_duration(std::to_string(limit + 1) + "ms"));
  EXPECT_EQ(parse_duration(std::to_string(limit / 1000) + "s").value(),
            milliseconds(limit / 1000 * 1000));
  EXPECT_FALSE(parse_duration(std::to_string(limit / 1000 + 1) + "s"));
  EXPECT_TRUE(parse_duration("52124995d"));  // 2^52 ms is about 142,000 years
  EXPECT_FALSE(parse_duration("52124996d"));
  EXPECT_TRUE(parse_duration("1250999896h"));
  EXPECT_FALSE(parse_duration("1250999897h"));
  EXPECT_FALSE(parse_duration("99999999999999999999s"));   // beyond uint64
  EXPECT_FALSE(parse_duration("18446744073709551615ms"));  // uint64 max
  EXPECT_FALSE(parse_duration("18446744073709551616"));    // uint64 max + 1
  EXPECT_FALSE(parse_duration("9223372036854775807h"));    // would wrap on multiply
  const auto r = parse_duration("9223372036854775807h");
  EXPECT_TRUE(r.error().is(errc::invalid_argument));
}

// --- format_duration ------------------------------------------------------------------------

TEST(format_duration, picks_the_largest_exact_unit) {
  EXPECT_EQ(format_duration(0ms), "0s");
  EXPECT_EQ(format_duration(1ms), "1ms");
  EXPECT_EQ(format_duration(250ms), "250ms");
  EXPECT_EQ(format_duration(1500ms), "1500ms");
  EXPECT_EQ(format_duration(1s), "1s");
  EXPECT_EQ(format_duration(30s), "30s");
  EXPECT_EQ(format_duration(90s), "90s");
  EXPECT_EQ(format_duration(1min), "1m");
  EXPECT_EQ(format_duration(10min), "10m");
  EXPECT_EQ(format_duration(90min), "90m");
  EXPECT_EQ(format_duration(2h), "2h");
  EXPECT_EQ(format_duration(24h), "24h");
}

TEST(format_duration, round_trips_through_parse) {
  std::mt19937_64 rng(7);
  std::uniform_int_distribution<std::int64_t> dist(0, std::int64_t{1} << 40);
  std::vector<milliseconds> values = {0ms, 1ms, 999ms, 1s, 61s, 1min, 59min, 1h, 25h, 168h};
  for (int i = 0; i < 500; ++i) values.emplace_back(dist(rng));
  for (int i = 0; i < 100; ++i) values.emplace_back(dist(rng) / 3'600'000 * 3'600'000);
  for (int i = 0; i < 100; ++i) values.emplace_back(dist(rng) / 60'000 * 60'000);
  for (const auto d : values) {
    const std::string text = format_duration(d);
    const auto back = parse_duration(text);
    ASSERT_TRUE(back) << text;
    EXPECT_EQ(*back, d) << text;
  }
}

// --- format_rfc3339 -------------------------------------------------------------------------

TEST(format_rfc3339, utc_with_microseconds) {
  EXPECT_EQ(format_rfc3339(system_clock::time_point{}), "1970-01-01T00:00:00.000000Z");
  EXPECT_EQ(format_rfc3339(utc(2026, 11, 23, 19, 35, 10, 123456)), "2026-11-23T19:35:10.123456Z");
  EXPECT_EQ(format_rfc3339(utc(2024, 2, 29, 23, 59, 59, 999999)), "2024-02-29T23:59:59.999999Z");
  EXPECT_EQ(format_rfc3339(utc(2000, 1, 1, 0, 0, 0, 1)), "2000-01-01T00:00:00.000001Z");
}

TEST(format_rfc3339, truncates_below_microseconds) {
  const auto t = utc(2026, 1, 2, 3, 4, 5, 6) + nanoseconds(999);
  EXPECT_EQ(format_rfc3339(time_point_cast<system_clock::duration>(t)),
            "2026-01-02T03:04:05.000006Z");
}

TEST(format_rfc3339, before_the_epoch) {
  EXPECT_EQ(format_rfc3339(system_clock::time_point{} - microseconds(1)),
            "1969-12-31T23:59:59.999999Z");
  EXPECT_EQ(format_rfc3339(utc(1969, 7, 20, 20, 17, 40, 500000)), "1969-07-20T20:17:40.500000Z");
}

// --- parse_rfc3339 --------------------------------------------------------------------------

TEST(parse_rfc3339, zulu) {
  EXPECT_EQ(parse_rfc3339("2026-11-23T19:35:10Z").value(), utc(2026, 11, 23, 19, 35, 10));
  EXPECT_EQ(parse_rfc3339("2026-11-23t19:35:10z").value(), utc(2026, 11, 23, 19, 35, 10));
  EXPECT_EQ(parse_rfc3339("1970-01-01T00:00:00Z").value(), system_clock::time_point{});
  EXPECT_EQ(parse_rfc3339("2024-02-29T12:00:00Z").value(), utc(2024, 2, 29, 12));
  EXPECT_EQ(parse_rfc3339("2000-02-29T00:00:00Z").value(), utc(2000, 2, 29));
}

TEST(parse_rfc3339, fractions) {
  EXPECT_EQ(parse_rfc3339("2026-11-23T19:35:10.123456Z").value(),
            utc(2026, 11, 23, 19, 35, 10, 123456));
  EXPECT_EQ(parse_rfc3339("2026-11-23T19:35:10.1Z").value(), utc(2026, 11, 23, 19, 35, 10, 100000));
  EXPECT_EQ(parse_rfc3339("2026-11-23T19:35:10.000001Z").value(), utc(2026, 11, 23, 19, 35, 10, 1));
  EXPECT_EQ(parse_rfc3339("2026-11-23T19:35:10.05Z").value(), utc(2026, 11, 23, 19, 35, 10, 50000));
  // More than microseconds: truncated, not rounded.
  EXPECT_EQ(parse_rfc3339("2026-11-23T19:35:10.123456789Z").value(),
            utc(2026, 11, 23, 19, 35, 10, 123456));
  EXPECT_EQ(parse_rfc3339("2026-11-23T19:35:10.9999999Z").value(),
            utc(2026, 11, 23, 19, 35, 10, 999999));
}

TEST(parse_rfc3339, offsets) {
  const auto want = utc(2026, 11, 23, 19, 35, 10);
  EXPECT_EQ(parse_rfc3339("2026-11-23T20:35:10+01:00").value(), want);
  EXPECT_EQ(parse_rfc3339("2026-11-23T14:05:10-05:30").value(), want);
  EXPECT_EQ(parse_rfc3339("2026-11-23T19:35:10+00:00").value(), want);
  EXPECT_EQ(parse_rfc3339("2026-11-23T19:35:10-00:00").value(), want);
  // The offset moves the date across midnight and the year boundary.
  EXPECT_EQ(parse_rfc3339("2027-01-01T01:00:00+02:00").value(), utc(2026, 12, 31, 23));
  EXPECT_EQ(parse_rfc3339("2026-12-31T22:00:00-03:00").value(), utc(2027, 1, 1, 1));
  EXPECT_EQ(parse_rfc3339("2026-11-23T20:35:10.250+01:00").value(),
            utc(2026, 11, 23, 19, 35, 10, 250000));
  EXPECT_EQ(parse_rfc3339("2026-11-24T09:20:10+13:45").value(), want);
}

TEST(parse_rfc3339, rejects_invalid_dates) {
  for (const char* bad : {
           "2026-02-30T00:00:00Z",  // no 30 February
           "2026-02-29T00:00:00Z",  // 2026 is not a leap year
           "1900-02-29T00:00:00Z",  // nor is 1900
           "2026-04-31T00:00:00Z",  // April has 30 days
           "2026-13-01T00:00:00Z",
           "2026-00-10T00:00:00Z",
           "2026-01-00T00:00:00Z",
           "2026-01-32T00:00:00Z",
           "2026-01-01T24:00:00Z",
           "2026-01-01T23:60:00Z",
           "2026-01-01T23:59:61Z",
       }) {
    const auto r = parse_rfc3339(bad);
    EXPECT_FALSE(r) << bad;
    if (!r) {
      EXPECT_TRUE(r.error().is(errc::invalid_argument)) << bad;
    }
  }
}

// Found by fuzzing: a year outside what system_clock holds overflowed the conversion.
TEST(parse_rfc3339, rejects_years_system_clock_cannot_hold) {
  for (const char* bad :
       {"1010-01-01T00:00:00Z", "4052-11-23T14:17:55.755-07:00", "2262-01-01T00:00:00Z",
        "1969-12-31T23:59:59Z", "0000-01-01T00:00:00Z", "9999-12-31T23:59:59Z"}) {
    const auto r = parse_rfc3339(bad);
    ASSERT_FALSE(r) << bad;
    EXPECT_NE(r.error().detail.find("from 1970 to 2261"), std::string::npos) << bad;
  }
  EXPECT_TRUE(parse_rfc3339("2261-12-31T23:59:59Z"));
  EXPECT_TRUE(parse_rfc3339("1970-01-01T00:00:00+01:00"));
}

TEST(parse_rfc3339, rejects_missing_or_malformed_zone) {
  for (const char* bad : {
           "2026-11-23T19:35:10",         // no zone at all
           "2026-11-23T19:35:10.123",     // fraction but no zone
           "2026-11-23T19:35:10+0100",    // offset without colon
           "2026-11-23T19:35:10+01",      // offset without minutes
           "2026-11-23T19:35:10+1:00",    // one-digit hour
           "2026-11-23T19:35:10 +01:00",  // space before the offset
           "2026-11-23T19:35:10UTC",      // zone name
           "2026-11-23T19:35:10+ab:cd",   // not digits
           "2026-11-23T19:35:10+0a:00",   // not digits
           "2026-11-23T19:35:10+24:00",   // offset hour out of range
           "2026-11-23T19:35:10+01:60",   // offset minute out of range
           "2026-11-23T19:35:10-+1:00",   // sign inside the offset
       }) {
    const auto r = parse_rfc3339(bad);
    EXPECT_FALSE(r) << bad;
  }
  const auto r = parse_rfc3339("2026-11-23T19:35:10");
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().detail.find("zone"), std::string::npos) << r.error().detail;
}

TEST(parse_rfc3339, rejects_malformed_shapes) {
  for (const char* bad : {
           "",
           "2026-11-23",
           "2026-11-23T19:35Z",
           "2026-11-23X19:35:10Z",
           "2026/11/23T19:35:10Z",
           "2026-11-23T19:35:10.Z",   // empty fraction
           "2026-11-23T19:35:10Z ",   // trailing space
           "2026-11-23T19:35:10ZZ",   // trailing junk
           " 2026-11-23T19:35:10Z",   // leading space
           "2026-1-23T19:35:10Z",     // one-digit month
           "26-11-23T19:35:10Z",      // two-digit year
           "+026-11-23T19:35:10Z",    // sign in the year
           "-026-11-23T19:35:10Z",    // sign in the year
           "2026-+1-23T19:35:10Z",    // sign in the month
           "2026-11- 3T19:35:10Z",    // space in the day
           "2026-11-23T-1:35:10Z",    // sign in the hour
           "2026-11-23T19:35:+1Z",    // sign in the second
           "2026-11-23T19:35:10,5Z",  // comma fraction
           "20261123T193510Z",        // basic ISO 8601 format
       }) {
    EXPECT_FALSE(parse_rfc3339(bad)) << "'" << bad << "'";
  }
}

TEST(parse_rfc3339, round_trips_format) {
  std::mt19937_64 rng(42);
  // 1970 .. 2100, microsecond precision
  std::uniform_int_distribution<std::int64_t> dist(0, std::int64_t{4'102'444'800} * 1'000'000);
  for (int i = 0; i < 2000; ++i) {
    const system_clock::time_point t{microseconds(dist(rng))};
    const std::string text = format_rfc3339(t);
    const auto back = parse_rfc3339(text);
    ASSERT_TRUE(back) << text;
    EXPECT_EQ(*back, t) << text;
  }
}

TEST(deadline, after_is_in_the_future) {
  const auto before = steady_clock::now();
  const auto dl = after(50ms);
  EXPECT_GE(dl - before, 50ms);
  EXPECT_LT(dl - before, 10s);
}

}  // namespace
}  // namespace cloudbrain
