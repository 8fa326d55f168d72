#pragma once

#include "core/backoff.hpp"
#include "core/error.hpp"
#include "core/time.hpp"
#include "net/http_client.hpp"

#include <boost/asio/awaitable.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <random>
#include <string_view>

namespace cloudbrain::providers {

// What one cloud request needs from its driver. Every hook runs on the driver's strand.
struct cloud_request_hooks {
  // Awaited before every try: the provider's rate limit (driver::pace).
  std::function<boost::asio::awaitable<void>()> pace;
  // Builds the request for one try, afresh each time: a signature carries the time, a token
  // may have been renewed. An error (no credentials, say) ends the call with it.
  std::function<boost::asio::awaitable<result<net::client_request>>(deadline)> make;
  // The error a non-2xx answer stands for: its errc::cloud_* kind and the cloud's own message.
  // retry_after is filled in from Retry-After afterwards when the hook leaves it zero.
  std::function<error(const net::client_response&)> classify;
  // A 401 the first time: forget the credentials just used, so that the next make() fetches
  // new ones, and try again once. Empty: a 401 is classified like any other answer.
  std::function<void()> on_unauthorized;
  // Answers other than 401 that also say the credentials just used are stale (EC2 answers an
  // expired session token with 400 RequestExpired): handled like a 401. Empty: only 401.
  std::function<bool(const net::client_response&)> stale_credentials;
};

struct cloud_request_policy {
  // Tries of a request that failed transiently (5xx, reset, timeout), the first included.
  unsigned max_transient_attempts = 3;
  backoff_policy backoff{std::chrono::milliseconds(200), std::chrono::milliseconds(3000),
                         std::chrono::milliseconds(50)};
};

struct cloud_request_stats {
  std::uint64_t requests = 0;      // sent, every try counted
  std::uint64_t retried = 0;       // tries after a transient failure
  std::uint64_t auth_retries = 0;  // tries after a 401 renewed the credentials
};

// Sends one cloud request until it is answered 2xx, fails for good, has used its tries, or the
// next try would not fit before the deadline. A transport failure or a classified
// cloud_transient/timeout is retried with jittered exponential backoff; every other error
// (cloud_rate_limited included: the provider pauses as a whole for those) is returned at once.
// Every try is the same request, so it must be a read or carry an idempotency key. `http`,
// `hooks`, `stats` and `rng` are referred to until the returned awaitable completes: keep them
// alive (named, not temporaries) until then.
boost::asio::awaitable<result<net::client_response>> send_cloud_request(
    net::http_client& http, const cloud_request_hooks& hooks, cloud_request_policy policy,
    deadline dl, cloud_request_stats& stats, std::mt19937_64& rng);

// An HTTP date in IMF-fixdate form ("Sun, 06 Nov 1994 08:49:37 GMT"), the only one a sender may
// produce (RFC 9110 5.6.7); none for anything else.
[[nodiscard]] std::optional<system_clock::time_point> parse_http_date(std::string_view v);

// Retry-After as delta-seconds or an HTTP date, capped at an hour; zero when absent or unreadable.
[[nodiscard]] std::chrono::milliseconds retry_after_of(const net::client_response& res,
                                                       system_clock::time_point now);
[[nodiscard]] std::chrono::milliseconds retry_after_of(const net::client_response& res);

}  // namespace cloudbrain::providers
