#pragma once

#include "core/blocking_pool.hpp"
#include "core/error.hpp"
#include "core/time.hpp"
#include "net/http_client.hpp"
#include "providers/aws/settings.hpp"
#include "providers/aws/sigv4.hpp"
#include "providers/single_flight.hpp"

#include <boost/asio/awaitable.hpp>

#include <cstdint>
#include <optional>
#include <string>

namespace cloudbrain::providers::aws {

struct credential_source_stats {
  std::uint64_t fetches = 0;   // reads of the file, or rounds of IMDS requests
  std::uint64_t failures = 0;  // of those, the ones that failed
  std::uint64_t invalidated = 0;
};

// AWS credentials in the order of the contract: the `credentials` file and its `profile`, else
// the environment (captured when the driver is made), else IMDSv2 (a session token, then the
// role's credentials). Credentials that expire are renewed before they do; while a fetch runs,
// every other caller waits for it (single_flight). Used from the driver's strand only.
class credential_source {
 public:
  credential_source(const aws_settings& settings, net::http_client& http, blocking_pool* blocking,
                    std::optional<credentials> environment);

  // Credentials good for at least a little while, or why there are none (cloud_auth for ones
  // refused or missing, cloud_transient/timeout for an IMDS that did not answer).
  boost::asio::awaitable<result<credentials>> get(deadline dl);

  // EC2 refused the credentials with this access key: read the file again, or ask IMDS again,
  // next time (the environment's are what they are).
  void invalidate(const std::string& access_key_id);

  // "shared file", "environment" or "IMDSv2".
  [[nodiscard]] std::string_view kind() const;
  [[nodiscard]] const credential_source_stats& stats() const { return stats_; }

 private:
  [[nodiscard]] bool usable() const;
  boost::asio::awaitable<result<credentials>> refresh(deadline dl);
  boost::asio::awaitable<result<credentials>> from_file();
  boost::asio::awaitable<result<credentials>> from_imds(deadline dl);
  // A GET of IMDS with the session token (a new one after a 401, once).
  boost::asio::awaitable<result<std::string>> imds_get(std::string path, deadline dl);
  boost::asio::awaitable<result<void>> imds_token(deadline dl);

  const aws_settings& settings_;
  net::http_client& http_;
  blocking_pool* blocking_;
  std::optional<credentials> environment_;
  std::optional<credentials> cached_;
  steady_clock::time_point refresh_at_ = steady_clock::time_point::max();
  std::string imds_token_;
  steady_clock::time_point imds_token_until_{};
  single_flight<credentials> flights_;
  credential_source_stats stats_;
};

}  // namespace cloudbrain::providers::aws
