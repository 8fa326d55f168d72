#include "core/time.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <charconv>
#include <cstdio>
#include <ctime>

namespace cloudbrain {

boost::asio::awaitable<void> sleep_for(steady_clock::duration d) {
  if (d <= steady_clock::duration::zero()) co_return;
  boost::asio::steady_timer t(co_await boost::asio::this_coro::executor, d);
  co_await t.async_wait(boost::asio::as_tuple(boost::asio::use_awaitable));
}

result<std::chrono::milliseconds> parse_duration(std::string_view text) {
  const std::string original(text);
  while (!text.empty() && text.back() == ' ') text.remove_suffix(1);
  while (!text.empty() && text.front() == ' ') text.remove_prefix(1);
  std::uint64_t n = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
  if (ec != std::errc{} || end == text.data()) {
    return fail(errc::invalid_argument,
                "not a duration: '" + original + "' (use e.g. 250ms, 30s, 10m)");
  }
  const std::string_view unit(end, static_cast<std::size_t>(text.data() + text.size() - end));
  std::uint64_t factor_ms = 0;
  if (unit.empty() || unit == "s")
    factor_ms = 1000;
  else if (unit == "ms")
    factor_ms = 1;
  else if (unit == "m" || unit == "min")
    factor_ms = 60'000;
  else if (unit == "h")
    factor_ms = 3'600'000;
  else if (unit == "d")
    factor_ms = 86'400'000;
  else {
    return fail(errc::invalid_argument,
                "unknown duration unit in '" + original + "' (use ms, s, m, h or d)");
  }
  if (n > (std::uint64_t{1} << 52) / factor_ms) {
    return fail(errc::invalid_argument, "duration too large: '" + original + "'");
  }
  return std::chrono::milliseconds(static_cast<std::int64_t>(n * factor_ms));
}

std::string format_duration(std::chrono::milliseconds d) {
  const auto ms = d.count();
  if (ms % 3'600'000 == 0 && ms != 0) return std::to_string(ms / 3'600'000) + "h";
  if (ms % 60'000 == 0 && ms != 0) return std::to_string(ms / 60'000) + "m";
  if (ms % 1000 == 0) return std::to_string(ms / 1000) + "s";
  return std::to_string(ms) + "ms";
}

std::string format_rfc3339(system_clock::time_point t) {
  const auto secs = std::chrono::floor<std::chrono::seconds>(t);
  const auto micros = std::chrono::duration_cast<std::chrono::microseconds>(t - secs).count();
  const std::time_t tt = system_clock::to_time_t(secs);
  std::tm tm{};
  gmtime_r(&tt, &tm);
  char buf[40];
  const int n = std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%06ldZ",
                              tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                              tm.tm_sec, static_cast<long>(micros));
  return {buf, static_cast<std::size_t>(n)};
}

result<system_clock::time_point> parse_rfc3339(std::string_view text) {
  // YYYY-MM-DDTHH:MM:SS[.frac](Z|+HH:MM|-HH:MM)
  const std::string s(text);
  // sscanf's %d also takes signs and leading blanks, so check that every field is digits.
  const auto is_digit = [&s](std::size_t k) { return k < s.size() && s[k] >= '0' && s[k] <= '9'; };
  for (const std::size_t k : {0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18}) {
    if (!is_digit(k)) return fail(errc::invalid_argument, "not an RFC 3339 time: '" + s + "'");
  }
  int y = 0, mo = 0, d = 0, h = 0, mi = 0, se = 0, consumed = 0;
  if (std::sscanf(s.c_str(), "%4d-%2d-%2d%*1[Tt ]%2d:%2d:%2d%n", &y, &mo, &d, &h, &mi, &se,
                  &consumed) != 6 ||
      consumed != 19) {
    return fail(errc::invalid_argument, "not an RFC 3339 time: '" + s + "'");
  }
  if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || se > 60) {
    return fail(errc::invalid_argument, "not a valid time: '" + s + "'");
  }
  // system_clock counts nanoseconds in 64 bits: years 1678 to 2261. Nothing this service reads
  // (cloud timestamps, cursors, request times) is from before 1970.
  if (y < 1970 || y > 2261) {
    return fail(errc::invalid_argument, "a time from 1970 to 2261 was expected, not '" + s + "'");
  }
  std::size_t i = 19;
  std::int64_t micros = 0;
  if (i < s.size() && s[i] == '.') {
    ++i;
    int digits = 0;
    while (i < s.size() && s[i] >= '0' && s[i] <= '9') {
      if (digits < 6) micros = micros * 10 + (s[i] - '0');
      ++digits;
      ++i;
    }
    if (digits == 0) return fail(errc::invalid_argument, "not an RFC 3339 time: '" + s + "'");
    for (int k = digits; k < 6; ++k) micros *= 10;
  }
  std::int64_t offset_s = 0;
  if (i < s.size() && (s[i] == 'Z' || s[i] == 'z')) {
    ++i;
  } else if (i + 6 == s.size() && (s[i] == '+' || s[i] == '-') && s[i + 3] == ':' &&
             is_digit(i + 1) && is_digit(i + 2) && is_digit(i + 4) && is_digit(i + 5)) {
    const int oh = std::atoi(s.substr(i + 1, 2).c_str());
    const int om = std::atoi(s.substr(i + 4, 2).c_str());
    if (oh > 23 || om > 59) {
      return fail(errc::invalid_argument, "not a valid zone offset: '" + s + "'");
    }
    offset_s = (std::int64_t{oh} * 3600 + std::int64_t{om} * 60) * (s[i] == '+' ? 1 : -1);
    i += 6;
  } else {
    return fail(errc::invalid_argument, "RFC 3339 time needs a zone ('Z' or ±HH:MM): '" + s + "'");
  }
  if (i != s.size()) return fail(errc::invalid_argument, "not an RFC 3339 time: '" + s + "'");
  const std::chrono::year_month_day ymd{std::chrono::year{y},
                                        std::chrono::month{static_cast<unsigned>(mo)},
                                        std::chrono::day{static_cast<unsigned>(d)}};
  if (!ymd.ok()) return fail(errc::invalid_argument, "not a valid date: '" + s + "'");
  const auto tp = std::chrono::sys_days{ymd} + std::chrono::hours{h} + std::chrono::minutes{mi} +
                  std::chrono::seconds{se} - std::chrono::seconds{offset_s} +
                  std::chrono::microseconds{micros};
  return system_clock::time_point(
      std::chrono::duration_cast<system_clock::duration>(tp.time_since_epoch()));
}

}  // namespace cloudbrain
