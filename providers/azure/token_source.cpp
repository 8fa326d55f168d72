#include "providers/azure/token_source.hpp"

#include "core/log.hpp"
#include "providers/cloud_call.hpp"

#include <cerrno>
#include <cstring>
#include <fstream>

namespace cloudbrain::providers::azure {
namespace asio = boost::asio;

namespace {

constexpr std::size_t max_secret_file = 4096;

// The secret in `path`: one line, surrounding whitespace dropped. Errors never quote the file.
result<std::string> read_secret_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return fail(errc::bad_config,
                "cannot read the client secret file '" + path + "': " + std::strerror(errno));
  }
  std::string text;
  char buf[1024];
  while (in.read(buf, sizeof buf) || in.gcount() > 0) {
    text.append(buf, static_cast<std::size_t>(in.gcount()));
    if (text.size() > max_secret_file) {
      return fail(errc::bad_config, "the client secret file '" + path + "' is too large");
    }
  }
  const auto first = text.find_first_not_of(" \t\r\n");
  const auto last = text.find_last_not_of(" \t\r\n");
  if (first == std::string::npos) {
    return fail(errc::bad_config, "the client secret file '" + path + "' is empty");
  }
  text = text.substr(first, last - first + 1);
  if (text.find_first_of("\r\n") != std::string::npos) {
    return fail(errc::bad_config, "the client secret file '" + path + "' holds more than one line");
  }
  return text;
}

// A token this close to its expiry is not handed out any more, even while a refresh is failing.
constexpr auto expiry_safety = std::chrono::seconds(10);

// Refresh a quarter of the lifetime early, but never more than five minutes early.
steady_clock::duration refresh_margin(steady_clock::duration lifetime) {
  return std::min<steady_clock::duration>(std::chrono::minutes(5), lifetime / 4);
}

}  // namespace

token_source::token_source(const azure_settings& settings, net::http_client& http,
                           blocking_pool* blocking)
    : settings_(settings), http_(http), blocking_(blocking) {}

void token_source::invalidate(const std::string& token) {
  if (cached_ && cached_->token == token) {
    cached_.reset();
    ++stats_.invalidated;
  }
}

bool token_source::usable() const {
  return cached_ && system_clock::now() + expiry_safety < cached_->expires_at;
}

asio::awaitable<result<std::string>> token_source::token(deadline dl) {
  const bool usable_now = usable();
  if (usable_now && steady_clock::now() < refresh_at_) co_return cached_->token;
  // Someone is fetching already: a token that is still good serves meanwhile.
  if (usable_now && flights_.in_flight()) co_return cached_->token;
  auto refreshing = flights_.run([this, dl] { return refresh(dl); }, dl, "Azure access token");
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
    log::warn("could not get an Azure access token",
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
  if (settings_.auth() == auth_method::managed_identity) {
    auto fetching = fetch_from_imds(dl);
    co_return co_await std::move(fetching);
  }
  auto fetching = fetch_with_secret(dl);
  co_return co_await std::move(fetching);
}

asio::awaitable<result<std::string>> token_source::secret() {
  if (!settings_.client_secret.empty()) co_return settings_.client_secret;
  if (secret_from_file_) co_return *secret_from_file_;
  if (!blocking_) co_return fail(errc::internal, "the azure driver needs a blocking pool");
  std::string path = settings_.client_secret_file;
  auto reading = blocking_->run([path] { return read_secret_file(path); });
  auto read = co_await std::move(reading);
  // No secret is refused credentials: the instance ends errored with why, not retried.
  if (!read) co_return fail(errc::cloud_auth, read.error().detail);
  secret_from_file_ = *read;
  co_return std::move(*read);
}

asio::awaitable<result<access_token>> token_source::fetch_with_secret(deadline dl) {
  auto getting = secret();
  auto client_secret = co_await std::move(getting);
  if (!client_secret) co_return client_secret.error();
  net::client_request req;
  req.method = net::http::verb::post;
  req.url = token_url(settings_);
  req.headers = {{"Content-Type", "application/x-www-form-urlencoded"},
                 {"Accept", "application/json"}};
  req.body = client_credentials_body(settings_.client_id, *client_secret, arm_scope(settings_));
  auto sending = http_.send(std::move(req), dl);
  auto res = co_await std::move(sending);
  if (!res) co_return res.error();
  if (res->status != 200) {
    error e = error_from_response(res->status, res->body);
    e.retry_after = retry_after_of(*res);
    if (e.is(errc::cloud_transient) || e.is(errc::cloud_rate_limited)) co_return e;
    secret_from_file_.reset();  // read the file again next time: the secret may be rotated
    // Entra ID's message says what is wrong (AADSTS7000215: invalid client secret, ...); it
    // never repeats the secret.
    co_return fail(errc::cloud_auth, "Entra ID refused the client credentials of application " +
                                         settings_.client_id + " in tenant " + settings_.tenant +
                                         ": " + e.detail);
  }
  auto tok = parse_token_response(res->body, system_clock::now());
  if (!tok) co_return fail(errc::cloud_transient, tok.error().detail);
  co_return std::move(*tok);
}

asio::awaitable<result<access_token>> token_source::fetch_from_imds(deadline dl) {
  net::client_request req;
  req.method = net::http::verb::get;
  req.url = imds_token_url(settings_);
  req.headers = {{"Metadata", "true"}};
  auto sending = http_.send(std::move(req), dl);
  auto res = co_await std::move(sending);
  if (!res) co_return res.error();
  if (res->status != 200) {
    error e = error_from_response(res->status, res->body);
    e.retry_after = retry_after_of(*res);
    // IMDS asks to be retried on 404, 410, 429 and 5xx; a 400 means no such identity.
    if (res->status == 400 || res->status == 401 || res->status == 403) {
      co_return fail(errc::cloud_auth,
                     "the managed identity endpoint at " + settings_.imds_endpoint +
                         " has no token for " +
                         (settings_.client_id.empty() ? std::string("the system-assigned identity")
                                                      : "identity " + settings_.client_id) +
                         ": " + e.detail);
    }
    if (res->status == 429) co_return fail(errc::cloud_rate_limited, e.detail);
    co_return fail(errc::cloud_transient, e.detail);
  }
  auto tok = parse_token_response(res->body, system_clock::now());
  if (!tok) co_return fail(errc::cloud_transient, tok.error().detail);
  co_return std::move(*tok);
}

}  // namespace cloudbrain::providers::azure
