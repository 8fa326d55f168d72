#include "providers/cloud_call.hpp"

#include <algorithm>
#include <array>
#include <charconv>
#include <ctime>
#include <string_view>

namespace cloudbrain::providers {
namespace asio = boost::asio;

namespace {

constexpr auto max_retry_after = std::chrono::hours(1);

bool retryable(const error& e) { return e.is(errc::cloud_transient) || e.is(errc::timeout); }

bool digits(std::string_view s, int& out) {
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc{} && end == s.data() + s.size();
}

}  // namespace

// IMF-fixdate, the only HTTP date a sender may produce (RFC 9110 5.6.7):
// "Sun, 06 Nov 1994 08:49:37 GMT".
std::optional<system_clock::time_point> parse_http_date(std::string_view v) {
  if (v.size() != 29 || v[3] != ',' || v[4] != ' ' || v.substr(25) != " GMT") return std::nullopt;
  static constexpr std::array<std::string_view, 12> months = {
      "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  std::tm tm{};
  const auto month = std::find(months.begin(), months.end(), v.substr(8, 3));
  if (month == months.end() || v[7] != ' ' || v[11] != ' ' || v[16] != ' ' || v[19] != ':' ||
      v[22] != ':') {
    return std::nullopt;
  }
  int year = 0;
  if (!digits(v.substr(5, 2), tm.tm_mday) || !digits(v.substr(12, 4), year) ||
      !digits(v.substr(17, 2), tm.tm_hour) || !digits(v.substr(20, 2), tm.tm_min) ||
      !digits(v.substr(23, 2), tm.tm_sec)) {
    return std::nullopt;
  }
  tm.tm_mon = static_cast<int>(month - months.begin());
  tm.tm_year = year - 1900;
  const std::time_t t = timegm(&tm);
  if (t == static_cast<std::time_t>(-1)) return std::nullopt;
  return system_clock::from_time_t(t);
}

std::chrono::milliseconds retry_after_of(const net::client_response& res,
                                         system_clock::time_point now) {
  const auto it = res.headers.find(net::http::field::retry_after);
  if (it == res.headers.end()) return std::chrono::milliseconds::zero();
  std::string_view v = it->value();
  while (!v.empty() && v.back() == ' ') v.remove_suffix(1);
  while (!v.empty() && v.front() == ' ') v.remove_prefix(1);
  unsigned seconds = 0;
  const auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), seconds);
  if (ec == std::errc{} && end == v.data() + v.size()) {
    return std::min<std::chrono::milliseconds>(std::chrono::seconds(seconds), max_retry_after);
  }
  if (auto when = parse_http_date(v)) {
    if (*when <= now) return std::chrono::milliseconds::zero();
    return std::min<std::chrono::milliseconds>(
        std::chrono::ceil<std::chrono::milliseconds>(*when - now), max_retry_after);
  }
  return std::chrono::milliseconds::zero();
}

std::chrono::milliseconds retry_after_of(const net::client_response& res) {
  return retry_after_of(res, system_clock::now());
}

asio::awaitable<result<net::client_response>> send_cloud_request(
    net::http_client& http, const cloud_request_hooks& hooks, cloud_request_policy policy,
    deadline dl, cloud_request_stats& stats, std::mt19937_64& rng) {
  bool renewed = false;
  unsigned failures = 0;  // transient ones; a renewal after a 401 does not count
  for (;;) {
    // Paced first, built second: a signature made now is not stale by the time it is sent.
    if (hooks.pace) {
      auto pacing = hooks.pace();
      co_await std::move(pacing);
    }
    auto making = hooks.make(dl);
    auto req = co_await std::move(making);
    if (!req) co_return req.error();
    ++stats.requests;
    auto sending = http.send(std::move(*req), dl);
    auto res = co_await std::move(sending);

    error failure;
    if (!res) {
      failure = res.error();
    } else if (res->status >= 200 && res->status < 300) {
      co_return std::move(*res);
    } else if ((res->status == 401 || (hooks.stale_credentials && hooks.stale_credentials(*res))) &&
               hooks.on_unauthorized && !renewed) {
      hooks.on_unauthorized();
      renewed = true;
      ++stats.auth_retries;
      continue;
    } else {
      failure = hooks.classify(*res);
      if (failure.retry_after == std::chrono::milliseconds::zero()) {
        failure.retry_after = retry_after_of(*res);
      }
    }
    if (!retryable(failure) || ++failures >= policy.max_transient_attempts) co_return failure;
    const auto pause = std::max<std::chrono::milliseconds>(policy.backoff.delay(failures - 1, rng),
                                                           failure.retry_after);
    if (steady_clock::now() + pause >= dl) co_return failure;
    ++stats.retried;
    co_await sleep_for(pause);
  }
}

}  // namespace cloudbrain::providers
