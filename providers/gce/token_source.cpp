#include "providers/gce/token_source.hpp"

#include "core/log.hpp"
#include "providers/credentials_file.hpp"
#include "providers/gce/wire.hpp"

namespace cloudbrain::providers::gce {
namespace asio = boost::asio;

token_source::token_source(const gce_settings& settings, net::http_client& http,
                           blocking_pool* blocking)
    : settings_(settings), http_(http), blocking_(blocking) {}

void token_source::invalidate(const std::string& token) {
  if (cached_ && cached_->token == token) {
    cached_.reset();
    ++stats_.invalidated;
  }
}

bool token_source::usable() const {
  return cached_ && system_clock::now() + credential_expiry_safety < cached_->expires_at;
}

asio::awaitable<result<std::string>> token_source::token(deadline dl) {
  const bool usable_now = usable();
  if (usable_now && steady_clock::now() < refresh_at_) co_return cached_->token;
  // Someone is fetching already: a token that is still good serves meanwhile.
  if (usable_now && flights_.in_flight()) co_return cached_->token;
  auto refreshing = flights_.run([this, dl] { return refresh(dl); }, dl, "GCE access token");
  auto refreshed = co_await std::move(refreshing);
  if (refreshed) co_return refreshed->token;
  // A refresh ahead of time that failed leaves the current token in use until it expires.
  if (usable()) co_return cached_->token;
  co_return refreshed.error();
}

asio::awaitable<result<access_token>> token_source::refresh(deadline dl) {
  auto fetching = fetch(dl);
  auto fetched = co_await std::move(fetching);
  if (!fetched) {
    ++stats_.failures;
    log::warn("could not get a GCE access token",
              {{"provider", settings_.name}, {"error", fetched.error().message()}});
    co_return fetched;
  }
  const auto lifetime = fetched->expires_at - system_clock::now();
  refresh_at_ = steady_clock::now() + lifetime - refresh_margin(lifetime);
  cached_ = *fetched;
  co_return fetched;
}

asio::awaitable<result<access_token>> token_source::fetch(deadline dl) {
  ++stats_.fetches;
  if (from_metadata_server()) {
    auto fetching = fetch_from_metadata(dl);
    co_return co_await std::move(fetching);
  }
  auto fetching = fetch_with_key(dl);
  co_return co_await std::move(fetching);
}

asio::awaitable<result<void>> token_source::load_key() {
  if (!blocking_) co_return fail(errc::internal, "the gce driver needs a blocking pool");
  std::string path = settings_.credentials;
  auto reading = blocking_->run([path] { return read_credentials_file(path); });
  auto text = co_await std::move(reading);
  if (!text) co_return text.error();
  auto key = parse_service_account_key(*text);
  if (!key) {
    co_return fail(errc::bad_config, "the credentials file '" + path +
                                         "' is not a service-account key: " + key.error().detail);
  }
  key_ = std::move(*key);
  co_return result<void>{};
}

asio::awaitable<result<access_token>> token_source::fetch_with_key(deadline dl) {
  if (!key_) {
    auto loading = load_key();
    auto loaded = co_await std::move(loading);
    if (!loaded) co_return loaded.error();
  }
  std::string token_uri = settings_.token_uri_override;
  if (token_uri.empty()) token_uri = key_->token_uri.empty() ? default_token_uri : key_->token_uri;

  // RSA signing is CPU work: off the event loop.
  auto key = *key_;
  auto signing = blocking_->run([key = std::move(key), token_uri] {
    return make_jwt_assertion(key, compute_scope, system_clock::now(), token_uri);
  });
  auto assertion = co_await std::move(signing);
  if (!assertion) co_return assertion.error();

  net::client_request req;
  req.method = net::http::verb::post;
  req.url = token_uri;
  req.headers = {{"Content-Type", "application/x-www-form-urlencoded"},
                 {"Accept", "application/json"}};
  req.body = token_request_body(*assertion);
  auto sending = http_.send(std::move(req), dl);
  auto res = co_await std::move(sending);
  if (!res) co_return res.error();
  if (res->status != 200) {
    error e = error_from_response(res->status, res->body);
    if (!e.is(errc::cloud_transient) && !e.is(errc::cloud_rate_limited)) {
      const std::string email = key_->client_email;
      key_.reset();  // read the file again next time: it may have been replaced
      co_return fail(errc::cloud_auth, "the token endpoint refused the service-account key of " +
                                           email + ": " + e.detail);
    }
    co_return e;
  }
  auto tok = parse_token_response(res->body, system_clock::now());
  if (!tok) co_return fail(errc::cloud_transient, tok.error().detail);
  co_return std::move(*tok);
}

asio::awaitable<result<access_token>> token_source::fetch_from_metadata(deadline dl) {
  net::client_request req;
  req.method = net::http::verb::get;
  req.url = "http://" + settings_.metadata_host +
            "/computeMetadata/v1/instance/service-accounts/default/token";
  req.headers = {{"Metadata-Flavor", "Google"}};
  auto sending = http_.send(std::move(req), dl);
  auto res = co_await std::move(sending);
  if (!res) co_return res.error();
  if (res->status != 200) {
    error e = error_from_response(res->status, res->body);
    if (res->status == 404 || res->status == 403) {
      co_return fail(errc::cloud_auth,
                     "the metadata server at " + settings_.metadata_host +
                         " has no token for the default service account: " + e.detail);
    }
    co_return e;
  }
  auto tok = parse_token_response(res->body, system_clock::now());
  if (!tok) co_return fail(errc::cloud_transient, tok.error().detail);
  co_return std::move(*tok);
}

}  // namespace cloudbrain::providers::gce
