#pragma once

#include "core/blocking_pool.hpp"
#include "core/error.hpp"
#include "core/time.hpp"
#include "net/http_client.hpp"
#include "providers/azure/settings.hpp"
#include "providers/azure/wire.hpp"
#include "providers/single_flight.hpp"

#include <boost/asio/awaitable.hpp>

#include <cstdint>
#include <optional>
#include <string>

namespace cloudbrain::providers::azure {

struct token_source_stats {
  std::uint64_t fetches = 0;   // requests to Entra ID or IMDS
  std::uint64_t failures = 0;  // of those, the ones that failed
  std::uint64_t invalidated = 0;
};

// Bearer tokens for ARM: Entra ID's client-credentials grant with the app's secret, or the
// managed identity's token from IMDS. A token is cached until shortly before it expires; while
// one is being fetched, every other caller waits for that fetch instead of starting its own.
// Used from one strand only.
class token_source {
 public:
  token_source(const azure_settings& settings, net::http_client& http, blocking_pool* blocking);

  // A bearer token valid for at least a little while, or why there is none (cloud_auth for
  // refused credentials, with Entra ID's message; cloud_transient/timeout for an endpoint that
  // did not answer). Never the secret in any detail.
  boost::asio::awaitable<result<std::string>> token(deadline dl);

  // ARM refused `token` (401): forget it, unless it was already replaced.
  void invalidate(const std::string& token);

  [[nodiscard]] const token_source_stats& stats() const { return stats_; }

 private:
  [[nodiscard]] bool usable() const;
  // One fetch, its outcome cached (or logged); run by flights_ for every waiting caller.
  boost::asio::awaitable<result<access_token>> refresh(deadline dl);
  boost::asio::awaitable<result<access_token>> fetch(deadline dl);
  boost::asio::awaitable<result<access_token>> fetch_with_secret(deadline dl);
  boost::asio::awaitable<result<access_token>> fetch_from_imds(deadline dl);
  // The secret itself, or read from client-secret's file on the blocking pool.
  boost::asio::awaitable<result<std::string>> secret();

  const azure_settings& settings_;
  net::http_client& http_;
  blocking_pool* blocking_;
  std::optional<std::string> secret_from_file_;
  std::optional<access_token> cached_;
  steady_clock::time_point refresh_at_{};
  single_flight<access_token> flights_;
  token_source_stats stats_;
};

}  // namespace cloudbrain::providers::azure
