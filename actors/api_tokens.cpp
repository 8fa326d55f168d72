// The /tokens resource: the API tokens, listed and revoked by admin tokens. Neither the secret
// nor its hash ever leaves the database.
#include "actors/api.hpp"

#include "net/problem.hpp"

#include <charconv>
#include <limits>

namespace cloudbrain {
namespace asio = boost::asio;
namespace http = net::http;

namespace {

// A token row `t` as API JSON, built by PostgreSQL.
constexpr std::string_view token_json_sql = R"(json_build_object(
  'id', t.id, 'description', t.description, 'role', t.role, 'scope', t.scope,
  'created_at', to_char(t.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
  'revoked_at', to_char(t.revoked_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
  'last_used_at', to_char(t.last_used_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')))";

// Newest first, `before` an id; the last column is the row's id, for the next page.
const std::string list_sql = "SELECT " + std::string(token_json_sql) + R"(::text, t.id
FROM tokens t
WHERE ($1::bigint IS NULL OR t.id < $1::bigint)
ORDER BY t.id DESC
LIMIT $2::int)";

// Revokes a live token; one revoked already is answered as it is, unchanged.
const std::string revoke_sql = R"(
WITH u AS (
  UPDATE tokens t SET revoked_at = now()
  WHERE t.id = $1::bigint AND t.revoked_at IS NULL
  RETURNING t.*)
SELECT )" + std::string(token_json_sql) +
                               R"(::text FROM u t
UNION ALL
SELECT )" + std::string(token_json_sql) +
                               R"(::text FROM tokens t
WHERE t.id = $1::bigint AND NOT EXISTS (SELECT 1 FROM u))";

const pg::statement stmt_token_list{"token_list", list_sql};
const pg::statement stmt_token_revoke{"token_revoke", revoke_sql};

net::response token_not_found(std::string_view what) {
  std::string shown(what.substr(0, 64));
  for (char& c : shown) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = '?';
  }
  return net::problem(http::status::not_found, "token_not_found", "Not found", "no token " + shown);
}

// A whole number from `low` to `high`, written without sign or padding.
std::optional<std::int64_t> whole_number(std::string_view text, std::int64_t low,
                                         std::int64_t high) {
  std::int64_t n = 0;
  const auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
  if (ec != std::errc() || ptr != text.data() + text.size() || n < low || n > high) {
    return std::nullopt;
  }
  return n;
}

}  // namespace

void api::install_tokens(net::router& r) {
  r.add(http::verb::get, "/tokens", authenticated(&api::list_tokens, token_role::admin),
        "tokens.list");
  r.add(http::verb::delete_, "/tokens/:id", authenticated(&api::revoke_token, token_role::admin),
        "tokens.revoke");
}

asio::awaitable<net::response> api::list_tokens(net::request_context& ctx, const verified_token&) {
  constexpr std::int64_t largest = std::numeric_limits<std::int64_t>::max();
  validation v;
  std::optional<std::int64_t> before;
  std::int64_t limit = 100;
  for (const auto& p : ctx.query) {
    const std::string_view key = p.key;
    const std::string value = p.has_value ? std::string(p.value) : std::string();
    if (key == "before") {
      before = whole_number(value, 1, largest);
      if (!before) v.errors.push_back("'before' must be a token id, a whole number from 1");
    } else if (key == "limit") {
      const auto n = whole_number(value, 1, 1000);
      if (!n) v.errors.push_back("'limit' must be a whole number from 1 to 1000");
      limit = n.value_or(limit);
    } else {
      v.code = "unknown_parameter";
      v.errors.push_back("unknown parameter '" + std::string(key).substr(0, 64) + "'");
    }
  }
  if (!v.ok()) co_return invalid(v);
  const std::vector<pg::param> args{before ? pg::param(std::to_string(*before)) : pg::param(),
                                    std::to_string(limit + 1)};
  auto r = co_await store_.pool().execute(stmt_token_list, args);
  if (!r) co_return net::problem_from_error(r.error());
  const int shown = static_cast<int>(std::min<std::size_t>(r->size(), limit));
  std::string body = "{\"tokens\":[";
  for (int row = 0; row < shown; ++row) {
    if (row) body += ',';
    body += r->text(row, 0);
  }
  body += "],\"next_before\":";
  body += r->size() > static_cast<std::size_t>(limit) && shown > 0
              ? std::string(r->text(shown - 1, 1))
              : std::string("null");
  body += '}';
  co_return raw_json(http::status::ok, std::move(body));
}

asio::awaitable<net::response> api::revoke_token(net::request_context& ctx, const verified_token&) {
  const auto id = whole_number(ctx.param("id"), 1, std::numeric_limits<std::int64_t>::max());
  if (!id) co_return token_not_found(ctx.param("id"));
  const std::vector<pg::param> args{std::to_string(*id)};
  auto r = co_await store_.pool().execute(stmt_token_revoke, args);
  if (!r) co_return net::problem_from_error(r.error());
  if (r->size() == 0) co_return token_not_found(std::to_string(*id));
  // Every node's token cache drops it at its next confirmation, within five seconds.
  log::info("token revoked", {{"request_id", ctx.request_id}, {"token_id", *id}});
  co_return raw_json(http::status::ok, std::string(r->text(0, 0)));
}

}  // namespace cloudbrain
