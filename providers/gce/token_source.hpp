#pragma once

#include "core/blocking_pool.hpp"
#include "core/error.hpp"
#include "core/time.hpp"
#include "net/http_client.hpp"
#include "providers/gce/jwt.hpp"
#include "providers/gce/settings.hpp"
#include "providers/single_flight.hpp"

#include <boost/asio/awaitable.hpp>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace cloudbrain::providers::gce {

struct token_source_stats {
  std::uint64_t fetches = 0;   // requests to the token endpoint or the metadata server
  std::uint64_t failures = 0;  // of those, the ones that failed
  std::uint64_t invalidated = 0;
};

// OAuth2 access tokens for Compute Engine: from a service-account key (a JWT signed on the
// blocking pool and exchanged at the key's token_uri) or from the metadata server. A token is
// cached until shortly before it expires; while one is being fetched, every other caller waits
// for that fetch instead of starting its own. Used from one strand only.
class token_source {
 public:
  token_source(const gce_settings& settings, net::http_client& http, blocking_pool* blocking);

  // A bearer token valid for at least a little while, or why there is none (cloud_auth for
  // refused credentials, cloud_transient/timeout for an endpoint that did not answer).
  boost::asio::awaitable<result<std::string>> token(deadline dl);

  // The cloud refused `token` (401): forget it, unless it was already replaced.
  void invalidate(const std::string& token);

  [[nodiscard]] const token_source_stats& stats() const { return stats_; }
  [[nodiscard]] bool from_metadata_server() const { return settings_.credentials.empty(); }

 private:
  // A cached token not about to expire (it may be due for a refresh all the same).
  [[nodiscard]] bool usable() const;
  // Fetches a token and caches it; one at a time (flights_).
  boost::asio::awaitable<result<access_token>> refresh(deadline dl);
  boost::asio::awaitable<result<access_token>> fetch(deadline dl);
  boost::asio::awaitable<result<access_token>> fetch_with_key(deadline dl);
  boost::asio::awaitable<result<access_token>> fetch_from_metadata(deadline dl);
  boost::asio::awaitable<result<void>> load_key();

  const gce_settings& settings_;
  net::http_client& http_;
  blocking_pool* blocking_;
  std::optional<service_account_key> key_;
  std::optional<access_token> cached_;
  steady_clock::time_point refresh_at_{};
  single_flight<access_token> flights_;
  token_source_stats stats_;
};

}  // namespace cloudbrain::providers::gce
