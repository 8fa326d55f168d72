#include "actors/api.hpp"

#include "core/encoding.hpp"
#include "core/uuid.hpp"
#include "net/problem.hpp"

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <charconv>
#include <cmath>
#include <limits>

namespace cloudbrain {
namespace asio = boost::asio;
namespace json = boost::json;
namespace http = net::http;

namespace {

constexpr std::string_view instance_states[] = {"creating",    "starting",   "running",
                                                "terminating", "terminated", "errored"};

net::response unauthorized() {
  auto r = net::problem(http::status::unauthorized, "invalid_token", "Unauthorized",
                        "missing or invalid token");
  r.set(http::field::www_authenticate, "Basic realm=\"cloudbrain\"");
  return r;
}

// Who asks on the admin listener, which takes no token: the operators.
const verified_token admin_listener_caller{0, token_role::admin, token_scope::all};

net::response not_found(std::string_view what) {
  return net::problem(http::status::not_found, "instance_not_found", "Not found",
                      "no instance " + std::string(what));
}

}  // namespace

api::api(const service_config& cfg, instance_store& store, reservation_store& reservations,
         audit_log& audit, reservation_set_store& sets, authenticator& auth, health& h,
         const provider_registry& providers, token_rate_limiter& limiter)
    : cfg_(cfg),
      store_(store),
      reservations_(reservations),
      sets_(sets),
      audit_(audit),
      auth_(auth),
      health_(h),
      providers_(providers),
      limiter_(limiter) {}

void api::install(net::router& r) {
  r.add(http::verb::post, "/instances", authenticated(&api::create_instance), "instances.create");
  r.add(http::verb::get, "/instances", authenticated(&api::list_instances), "instances.list");
  r.add(http::verb::get, "/instances/:id", authenticated(&api::get_instance), "instances.get");
  r.add(http::verb::delete_, "/instances/:id", authenticated(&api::delete_instance),
        "instances.delete");
  r.add(http::verb::get, "/providers", authenticated(&api::list_providers), "providers.list");
  r.add(http::verb::get, "/audit", authenticated(&api::read_audit, token_role::admin),
        "audit.read");
  if (cluster_ != nullptr) {
    r.add(http::verb::get, "/nodes", authenticated(&api::list_nodes, token_role::admin),
          "nodes.list");
  }
  install_tokens(r);
  install_reservations(r);
  install_reservation_sets(r);
  install_usage(r);
  install_operations(r);
}

void api::install_admin(net::router& r) {
  install_operations(r);
  // The admin listener is the operators' address: no token there, like /metrics. On `listen`,
  // GET /nodes needs an admin token.
  if (cluster_ != nullptr) {
    r.add(
        http::verb::get, "/nodes",
        [this](net::request_context& c) { return list_nodes(c, admin_listener_caller); },
        "nodes.list");
  }
}

void api::install_operations(net::router& r) {
  r.add(
      http::verb::get, "/livez", [this](net::request_context& c) { return livez(c); }, "livez");
  r.add(
      http::verb::get, "/readyz", [this](net::request_context& c) { return readyz(c); }, "readyz");
}

asio::awaitable<token_check> check_token(authenticator& auth, const net::request& req) {
  const auto token = presented_token(req);
  if (!token) co_return unauthorized();
  const auto parts = parse_token(*token);
  if (!parts) co_return unauthorized();
  if (const auto known = auth.cached(*parts)) co_return *known;  // no wait, no actor
  auto verified = co_await auth.verify(*parts, after(std::chrono::seconds(10)));
  if (!verified) {
    if (verified.error().is(errc::unauthorized)) co_return unauthorized();
    co_return net::problem_from_error(verified.error());
  }
  co_return *verified;
}

net::response role_not_allowed(token_role role, std::string_view what) {
  return net::problem(
      http::status::forbidden, "role_not_allowed", "Forbidden",
      "this token has the " + std::string(to_string(role)) + " role, which " + std::string(what));
}

net::response rate_limited(std::chrono::seconds retry_after) {
  auto r = net::problem(http::status::too_many_requests, "rate_limited", "Too many requests",
                        "this token has made more requests than token-rate-limit allows; retry "
                        "after " +
                            std::to_string(retry_after.count()) + " s");
  r.set(http::field::retry_after, std::to_string(retry_after.count()));
  return r;
}

net::handler api::authenticated(handler_fn fn, token_role needed) {
  return [this, fn, needed](net::request_context& ctx) -> asio::awaitable<net::response> {
    // A remembered token is answered here, without a message to the authenticator or another
    // coroutine frame; anything else goes through check_token.
    std::optional<verified_token> token;
    if (const auto presented = presented_token(ctx.req)) {
      if (const auto parts = parse_token(*presented)) token = auth_.cached(*parts);
    }
    if (!token) {
      auto checking = check_token(auth_, ctx.req);
      auto checked = co_await std::move(checking);
      if (auto* refused = std::get_if<net::response>(&checked)) co_return std::move(*refused);
      token = std::get<verified_token>(checked);
    }
    // Before anything else is done for the request: a refused one changes nothing.
    if (const auto d = limiter_.admit(token->id); !d.allowed) {
      co_return rate_limited(d.retry_after);
    }
    if (token->role == token_role::driver) {
      co_return role_not_allowed(token->role,
                                 "may only connect a driver at /drivers/connect; use a client "
                                 "token (cloudbrain token create) for the API");
    }
    if (needed == token_role::admin && token->role != token_role::admin) {
      co_return role_not_allowed(token->role,
                                 "may not use this administration resource; use an admin token "
                                 "(cloudbrain token create --role admin)");
    }
    auto res = co_await (this->*fn)(ctx, *token);
    const auto method = ctx.req.method();
    if (method != http::verb::get && method != http::verb::head && !ctx.audited) {
      co_await audit(ctx, token->id, res);
    }
    co_return res;
  };
}

audit_event api::audit_origin(const net::request_context& ctx, std::int64_t token_id) {
  audit_event e;
  e.token_id = token_id;
  e.request_id = ctx.request_id;
  e.address = ctx.remote.address().to_string();
  e.action = std::string(ctx.route);
  e.method = std::string(ctx.req.method_string());
  e.target = std::string(ctx.path);
  return e;
}

asio::awaitable<void> api::audit(const net::request_context& ctx, std::int64_t token_id,
                                 const net::response& res) {
  audit_event e = audit_origin(ctx, token_id);
  // What was acted on: a create's new resource (its Location), else the path.
  const auto location = res.find(http::field::location);
  if (location != res.end()) {
    const std::string_view l = location->value();
    e.target = std::string(l.substr(l.rfind('/') + 1));
  }
  e.status = res.result_int();
  e.outcome = "ok";
  if (e.status >= 400) {
    boost::system::error_code ec;
    const auto problem = json::parse(res.body(), ec);
    const auto* code =
        !ec && problem.is_object() ? problem.as_object().if_contains("code") : nullptr;
    e.outcome = code && code->is_string() ? std::string(code->as_string()) : "error";
  }
  const std::string request_id = e.request_id;
  auto recording = audit_.record(std::move(e));
  if (auto r = co_await std::move(recording); !r) {
    // The mutation has happened: its answer goes out, and the gap in the trail is loud.
    log::error("audit record failed", {{"request_id", request_id}, {"error", r.error().message()}});
  }
}

std::string api::base_url_of(const net::request_context& ctx) const {
  std::string base = cfg_.base_url;
  if (base.empty()) {
    const auto host = ctx.req.find(http::field::host);
    base = "http://" + (host != ctx.req.end() ? std::string(host->value()) : cfg_.listen);
  }
  while (!base.empty() && base.back() == '/') base.pop_back();
  return base;
}

std::string api::location_of(const net::request_context& ctx, const std::string& id) const {
  if (!cfg_.base_url.empty()) {
    std::string base = cfg_.base_url;
    while (!base.empty() && base.back() == '/') base.pop_back();
    return base + "/instances/" + id;
  }
  const auto host = ctx.req.find(http::field::host);
  const std::string authority = host != ctx.req.end() ? std::string(host->value()) : cfg_.listen;
  return "http://" + authority + "/instances/" + id;
}

asio::awaitable<net::response> api::create_instance(net::request_context& ctx,
                                                    const verified_token& token) {
  if (auto refused = refuse_media_type(ctx.req)) co_return std::move(*refused);
  auto [req, v] = parse_instance_request(ctx.req.body(), sections());
  if (!v.ok()) co_return invalid(v);

  auto idem = idempotency_of(ctx.req, ctx.req.body());
  if (!idem) co_return invalid_idempotency_key();
  auto created =
      co_await store_.create(req, token.id, token.owner(), *idem, audit_origin(ctx, token.id));
  // A create that is stored has its audit record in the same transaction.
  if (created && !created->replayed) ctx.audited = true;
  if (!created && req.reservation_id && created.error().is(errc::conflict)) {
    auto refusing = reservation_refused(req, token.owner());
    co_return co_await std::move(refusing);
  }
  if (!created) {
    if (created.error().is(errc::precondition_failed)) {
      co_return net::problem(http::status::unprocessable_entity, "idempotency_key_reused",
                             "The request is not valid", created.error().detail);
    }
    co_return net::problem_from_error(created.error());
  }
  auto res = raw_json(static_cast<http::status>(created->status), std::move(created->body));
  res.set(http::field::location, location_of(ctx, created->id));
  if (created->replayed) res.set("Idempotent-Replayed", "true");
  if (!created->replayed) {
    log::info(
        "instance requested",
        {{"request_id", ctx.request_id}, {"instance_id", created->id}, {"provider", req.provider}});
  }
  co_return res;
}

asio::awaitable<net::response> api::get_instance(net::request_context& ctx,
                                                 const verified_token& token) {
  const auto id = uuid::parse(ctx.param("id"));
  if (!id) co_return not_found(ctx.param("id"));
  auto body = co_await store_.get_json(id->str(), token.owner());
  if (!body) {
    if (body.error().is(errc::not_found)) co_return not_found(id->str());
    co_return net::problem_from_error(body.error());
  }
  co_return raw_json(http::status::ok, std::move(*body));
}

asio::awaitable<net::response> api::read_audit(net::request_context& ctx, const verified_token&) {
  audit_query q;
  validation v;
  const auto number = [&](std::string_view key, std::int64_t low,
                          std::int64_t high) -> std::optional<std::int64_t> {
    const auto it = ctx.query.find(key);
    if (it == ctx.query.end()) return std::nullopt;
    const std::string text((*it).value);
    std::int64_t n = 0;
    const auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
    if (ec != std::errc() || ptr != text.data() + text.size() || n < low || n > high) {
      v.errors.push_back("'" + std::string(key) + "' must be a whole number from " +
                         std::to_string(low) + " to " + std::to_string(high));
      return std::nullopt;
    }
    return n;
  };
  constexpr std::int64_t largest = std::numeric_limits<std::int64_t>::max();
  q.token_id = number("token", 1, largest);
  q.before = number("before", 1, largest);
  if (const auto limit = number("limit", 1, 1000)) q.limit = static_cast<std::size_t>(*limit);
  if (const auto it = ctx.query.find("action"); it != ctx.query.end()) {
    const std::string action((*it).value);
    if (action.empty() || action.size() > 64) {
      v.errors.push_back("'action' must be a route's name such as instances.create");
    } else {
      q.action = action;
    }
  }
  for (const auto& p : ctx.query) {
    const std::string_view key = p.key;
    if (key != "token" && key != "before" && key != "limit" && key != "action") {
      v.errors.push_back("unknown parameter '" + std::string(key).substr(0, 64) + "'");
    }
  }
  if (!v.ok()) co_return invalid(v);
  auto page = co_await audit_.read(q);
  if (!page) co_return net::problem_from_error(page.error());
  std::string body = "{\"events\":" + page->events_json + ",\"next_before\":";
  body += page->next_before ? std::to_string(*page->next_before) : std::string("null");
  body += '}';
  co_return raw_json(http::status::ok, std::move(body));
}

asio::awaitable<net::response> api::list_instances(net::request_context& ctx,
                                                   const verified_token& token) {
  auto [f, v] = parse_list_query(ctx.query, instance_states);
  if (!v.ok()) co_return invalid(v);
  f.created_by = token.owner();
  auto page = co_await store_.list(f);
  if (!page) co_return net::problem_from_error(page.error());
  std::string body = "{\"instances\":" + page->instances_json + ",\"next\":";
  body += page->next ? "\"" + *page->next + "\"" : std::string("null");
  body += '}';
  co_return raw_json(http::status::ok, std::move(body));
}

asio::awaitable<net::response> api::delete_instance(net::request_context& ctx,
                                                    const verified_token& token) {
  const auto id = uuid::parse(ctx.param("id"));
  if (!id) co_return not_found(ctx.param("id"));
  auto body = co_await store_.request_delete(id->str(), token.owner(), audit_origin(ctx, token.id));
  // A delete answered with its instance has its audit record in the same transaction.
  if (body) ctx.audited = true;
  if (!body) {
    if (body.error().is(errc::not_found)) co_return not_found(id->str());
    co_return net::problem_from_error(body.error());
  }
  log::info("instance delete requested",
            {{"request_id", ctx.request_id}, {"instance_id", id->str()}});
  co_return raw_json(http::status::accepted, std::move(*body));
}

asio::awaitable<net::response> api::list_providers(net::request_context&, const verified_token&) {
  json::array out;
  const auto providers = providers_.snapshot();
  for (const auto& [name, actor] : *providers) {
    auto s = co_await actor->status(after(std::chrono::seconds(2)));
    if (!s) {
      out.push_back(
          json::object{{"name", name}, {"state", "unknown"}, {"last_error", s.error().message()}});
      continue;
    }
    json::array zones;
    for (const auto& z : s->zones) zones.emplace_back(z);
    out.push_back(json::object{
        {"name", s->name},
        {"type", s->type},
        {"zones", std::move(zones)},
        {"state", s->state},
        {"in_flight", s->jobs_in_flight},
        {"max_in_flight", s->max_in_flight},
        // Boost.JSON writes 20.0 as 2E1: a whole rate as an integer, the way people write it.
        {"rate_limit", s->rate_limit == std::floor(s->rate_limit) && s->rate_limit < 1e15
                           ? json::value(static_cast<std::int64_t>(s->rate_limit))
                           : json::value(s->rate_limit)},
        {"calls", s->calls},
        {"rate_limit_waits", s->rate_limit_waits},
        {"last_error", s->last_error.empty() ? json::value(nullptr) : json::value(s->last_error)},
        {"details", s->details},
        {"reconciler", s->reconciler},
        {"janitor", s->janitor},
        {"pacing", s->pacing}});
  }
  co_await add_leaders(out);
  co_return net::json_response(http::status::ok, json::object{{"providers", std::move(out)}});
}

asio::awaitable<net::response> api::livez(net::request_context&) {
  co_return net::json_response(http::status::ok, json::object{{"status", "ok"}});
}

asio::awaitable<net::response> api::readyz(net::request_context&) {
  json::array reasons;
  if (health_.draining()) reasons.emplace_back("shutting down");
  if (!health_.schema_ok()) reasons.emplace_back("database schema is not at the version needed");
  auto ping = co_await store_.pool().ping(after(std::chrono::seconds(1)));
  if (!ping)
    reasons.emplace_back("database unavailable: " + std::string(ping.error().code.message()));
  for (auto& p : health_.problems()) reasons.emplace_back(p);
  json::array warnings;  // worth knowing, not a reason to take this process out of service
  for (auto& w : health_.warnings()) warnings.emplace_back(w);
  if (reasons.empty()) {
    json::object body{{"status", "ready"}};
    if (!warnings.empty()) body["warnings"] = std::move(warnings);
    co_return net::json_response(http::status::ok, std::move(body));
  }
  auto r = net::json_response(http::status::service_unavailable,
                              json::object{{"status", "not ready"},
                                           {"reasons", std::move(reasons)},
                                           {"warnings", std::move(warnings)}});
  r.set(http::field::retry_after, "2");
  co_return r;
}

}  // namespace cloudbrain
