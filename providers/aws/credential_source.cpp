#include "providers/aws/credential_source.hpp"

#include "core/log.hpp"
#include "providers/aws/credentials.hpp"
#include "providers/credentials_file.hpp"

namespace cloudbrain::providers::aws {
namespace asio = boost::asio;

namespace {

// IMDSv2 session tokens live six hours; one is renewed a minute before its end.
constexpr int imds_token_ttl_seconds = 21600;
// No IMDS request waits longer than this, whatever the caller's deadline: it is on the host.
constexpr auto imds_timeout = std::chrono::seconds(5);

}  // namespace

credential_source::credential_source(const aws_settings& settings, net::http_client& http,
                                     blocking_pool* blocking,
                                     std::optional<credentials> environment)
    : settings_(settings),
      http_(http),
      blocking_(blocking),
      environment_(settings.credentials.empty() ? std::move(environment) : std::nullopt) {}

std::string_view credential_source::kind() const {
  if (!settings_.credentials.empty()) return "shared file";
  if (environment_) return "environment";
  return "IMDSv2";
}

void credential_source::invalidate(const std::string& access_key_id) {
  if (cached_ && cached_->access_key_id == access_key_id) {
    cached_.reset();
    ++stats_.invalidated;
  }
}

bool credential_source::usable() const {
  return cached_ && (!cached_->expires_at ||
                     system_clock::now() + credential_expiry_safety < *cached_->expires_at);
}

asio::awaitable<result<credentials>> credential_source::get(deadline dl) {
  if (environment_) co_return *environment_;
  const bool usable_now = usable();
  if (usable_now && steady_clock::now() < refresh_at_) co_return *cached_;
  // Someone is fetching already: credentials still good serve meanwhile.
  if (usable_now && flights_.in_flight()) co_return *cached_;
  auto refreshing = flights_.run([this, dl] { return refresh(dl); }, dl, "AWS credentials");
  auto refreshed = co_await std::move(refreshing);
  if (refreshed) co_return std::move(*refreshed);
  // A renewal ahead of time that failed leaves the current credentials in use until they end.
  if (usable()) co_return *cached_;
  co_return refreshed.error();
}

asio::awaitable<result<credentials>> credential_source::refresh(deadline dl) {
  ++stats_.fetches;
  result<credentials> fetched = fail(errc::internal, "no credential source");
  if (!settings_.credentials.empty()) {
    auto reading = from_file();
    fetched = co_await std::move(reading);
  } else {
    auto asking = from_imds(dl);
    fetched = co_await std::move(asking);
  }
  if (!fetched) {
    ++stats_.failures;
    // No detail here ever holds a secret: the parsers and readers never quote one.
    log::warn(
        "could not get AWS credentials",
        {{"provider", settings_.name}, {"source", kind()}, {"error", fetched.error().message()}});
    co_return fetched;
  }
  refresh_at_ = steady_clock::time_point::max();
  if (fetched->expires_at) {
    const auto lifetime = *fetched->expires_at - system_clock::now();
    refresh_at_ = steady_clock::now() + std::chrono::duration_cast<steady_clock::duration>(
                                            lifetime - refresh_margin(lifetime));
  }
  cached_ = *fetched;
  co_return fetched;
}

asio::awaitable<result<credentials>> credential_source::from_file() {
  if (!blocking_) co_return fail(errc::internal, "the aws driver needs a blocking pool");
  const std::string path = settings_.credentials;
  auto reading = blocking_->run([path] { return read_credentials_file(path); });
  auto text = co_await std::move(reading);
  if (!text) co_return fail(errc::cloud_auth, text.error().detail);
  co_return parse_shared_credentials(*text, settings_.profile, path);
}

asio::awaitable<result<void>> credential_source::imds_token(deadline dl) {
  net::client_request req;
  req.method = net::http::verb::put;
  req.url = settings_.metadata_endpoint + imds_token_path;
  req.headers = {{imds_token_ttl_header, std::to_string(imds_token_ttl_seconds)}};
  auto sending = http_.send(std::move(req), dl);
  auto res = co_await std::move(sending);
  if (!res) co_return res.error();
  if (res->status != 200 || res->body.empty()) {
    co_return fail(res->status >= 500 ? errc::cloud_transient : errc::cloud_auth,
                   "IMDS at " + settings_.metadata_endpoint + " gave no session token (HTTP " +
                       std::to_string(res->status) + ")");
  }
  imds_token_ = res->body;
  imds_token_until_ = steady_clock::now() + std::chrono::seconds(imds_token_ttl_seconds - 60);
  co_return result<void>{};
}

asio::awaitable<result<std::string>> credential_source::imds_get(std::string path, deadline dl) {
  for (int attempt = 0;; ++attempt) {
    if (imds_token_.empty() || steady_clock::now() >= imds_token_until_) {
      auto getting = imds_token(dl);
      if (auto got = co_await std::move(getting); !got) co_return got.error();
    }
    net::client_request req;
    req.method = net::http::verb::get;
    req.url = settings_.metadata_endpoint + path;
    req.headers = {{imds_token_header, imds_token_}};
    auto sending = http_.send(std::move(req), dl);
    auto res = co_await std::move(sending);
    if (!res) co_return res.error();
    if (res->status == 200) co_return std::move(res->body);
    if (res->status == 401 && attempt == 0) {
      imds_token_.clear();  // the session token ended early: one new one
      continue;
    }
    const std::string what = "IMDS at " + settings_.metadata_endpoint + " answered HTTP " +
                             std::to_string(res->status) + " to " + path;
    co_return fail(res->status >= 500 ? errc::cloud_transient : errc::cloud_auth, what);
  }
}

asio::awaitable<result<credentials>> credential_source::from_imds(deadline dl) {
  const deadline bounded = std::min(dl, steady_clock::now() + imds_timeout);
  auto listing = imds_get(imds_role_path, bounded);
  auto roles = co_await std::move(listing);
  if (!roles) co_return roles.error();
  const auto role = first_role(*roles);
  if (role.empty()) {
    co_return fail(errc::cloud_auth,
                   "IMDS at " + settings_.metadata_endpoint + " has no role for this instance");
  }
  auto reading = imds_get(imds_role_path + role, bounded);
  auto body = co_await std::move(reading);
  if (!body) co_return body.error();
  auto parsed = parse_imds_credentials(*body);
  if (parsed) parsed->source = "IMDSv2 role " + role;
  co_return parsed;
}

}  // namespace cloudbrain::providers::aws
