#include "actors/api.hpp"

#include "core/encoding.hpp"
#include "core/uuid.hpp"
#include "net/problem.hpp"

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <charconv>
#include <cmath>

namespace cloudbrain {
namespace asio = boost::asio;
namespace json = boost::json;
namespace http = net::http;

namespace {

constexpr std::size_t max_tags = 32;
constexpr std::string_view instance_states[] = {"creating",    "starting",   "running",
                                                "terminating", "terminated", "errored"};

net::response unauthorized() {
  auto r = net::problem(http::status::unauthorized, "invalid_token", "Unauthorized",
                        "missing or invalid token");
  r.set(http::field::www_authenticate, "Basic realm=\"cloudbrain\"");
  return r;
}

net::response not_found(std::string_view what) {
  return net::problem(http::status::not_found, "instance_not_found", "Not found",
                      "no instance " + std::string(what));
}

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(a[i])) !=
        std::tolower(static_cast<unsigned char>(b[i])))
      return false;
  }
  return true;
}

// Tag keys and values follow the strictest cloud (GCE labels), so that they travel anywhere.
bool valid_tag_key(std::string_view k) {
  if (k.empty() || k.size() > 63 || !(k[0] >= 'a' && k[0] <= 'z')) return false;
  for (char c : k)
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-')) return false;
  return true;
}

bool valid_tag_value(std::string_view v) {
  if (v.size() > 63) return false;
  for (char c : v)
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-')) return false;
  return true;
}

std::string hex_sha256(std::string_view s) {
  const auto d = sha256(s.data(), s.size());
  return to_hex(d.data(), d.size());
}

}  // namespace

result<std::optional<idempotent_request>> idempotency_of(const net::request& req,
                                                         std::string_view identity) {
  const auto k = req.find("Idempotency-Key");
  if (k == req.end()) return std::optional<idempotent_request>{};
  const std::string_view key = k->value();
  if (key.empty() || key.size() > 255) {
    return fail(errc::invalid_argument, "Idempotency-Key must be 1 to 255 characters");
  }
  return std::optional<idempotent_request>{
      idempotent_request{std::string(key), hex_sha256(identity)}};
}

net::response invalid_idempotency_key() {
  return net::problem(http::status::unprocessable_entity, "invalid_idempotency_key",
                      "The request is not valid", "Idempotency-Key must be 1 to 255 characters");
}

net::response raw_json(http::status status, std::string body) {
  return net::text_response(status, "application/json", std::move(body));
}

net::response invalid(const validation& v) {
  std::string detail = v.errors.size() == 1
                           ? v.errors.front()
                           : std::to_string(v.errors.size()) +
                                 " problems with the request: " + v.errors.front() +
                                 " (and more, see errors)";
  const auto status =
      v.code == "malformed_json" ? http::status::bad_request : http::status::unprocessable_entity;
  return net::problem(status, v.code, "The request is not valid", detail, v.errors);
}

bool is_json_content_type(std::string_view ct) {
  auto media = ct.substr(0, ct.find(';'));
  while (!media.empty() && (media.back() == ' ' || media.back() == '\t')) media.remove_suffix(1);
  while (!media.empty() && (media.front() == ' ' || media.front() == '\t')) media.remove_prefix(1);
  if (iequals(media, "application/json")) return true;
  // application/*+json (RFC 6839 structured syntax suffix): problem+json, merge-patch+json, ...
  constexpr std::string_view prefix = "application/", suffix = "+json";
  return media.size() > prefix.size() + suffix.size() &&
         iequals(media.substr(0, prefix.size()), prefix) &&
         iequals(media.substr(media.size() - suffix.size()), suffix) &&
         media.substr(prefix.size(), media.size() - prefix.size() - suffix.size())
                 .find_first_of("/ ") == std::string_view::npos;
}

std::optional<net::response> refuse_media_type(const net::request& req) {
  // No Content-Type (or an empty one) is read as JSON: Cloud Brain's own client, Go's net/http
  // posting a bytes.Reader, sends none, and the original server decoded whatever it got.
  const auto ct = req.find(http::field::content_type);
  if (ct == req.end()) return std::nullopt;
  const std::string_view value = ct->value();
  if (value.find_first_not_of(" \t") == std::string_view::npos || is_json_content_type(value)) {
    return std::nullopt;
  }
  std::string shown(value.substr(0, 100));
  for (char& c : shown) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = '?';
  }
  return net::problem(http::status::unsupported_media_type, "unsupported_media_type",
                      "Unsupported media type",
                      "the body must be JSON: send Content-Type: application/json (or none), "
                      "not '" +
                          shown + "'");
}

std::optional<std::string> presented_token(const net::request& req) {
  const auto it = req.find(http::field::authorization);
  if (it == req.end()) return std::nullopt;
  const std::string_view value = it->value();
  const auto space = value.find(' ');
  if (space == std::string_view::npos) return std::nullopt;
  const auto scheme = value.substr(0, space);
  auto rest = value.substr(space + 1);
  while (!rest.empty() && rest.front() == ' ') rest.remove_prefix(1);
  if (iequals(scheme, "token")) return std::string(rest);
  if (iequals(scheme, "basic")) {
    auto decoded = base64_decode(rest);
    if (!decoded) return std::nullopt;
    const auto colon = decoded->find(':');
    if (colon == std::string::npos || decoded->substr(0, colon) != "token") return std::nullopt;
    return decoded->substr(colon + 1);
  }
  return std::nullopt;
}

void parse_tags(const json::object& body, validation& v, json::object& out) {
  if (const auto* tags = body.if_contains("tags"); tags && !tags->is_null()) {
    if (!tags->is_object()) {
      v.errors.push_back("'tags' must be an object of strings");
    } else if (tags->as_object().size() > max_tags) {
      v.errors.push_back("at most 32 tags are allowed");
    } else {
      for (const auto& [k, val] : tags->as_object()) {
        if (!val.is_string()) {
          v.errors.push_back("tag '" + std::string(k) + "' must have a string value");
        } else if (!valid_tag_key(k) || std::string_view(k).starts_with("cloudbrain")) {
          v.errors.push_back("tag key '" + std::string(k) +
                             "' must be 1-63 characters of a-z, 0-9, '_' and '-', start with a "
                             "letter, and not start with 'cloudbrain'");
        } else if (!valid_tag_value(val.as_string())) {
          v.errors.push_back("tag '" + std::string(k) +
                             "' must have a value of at most 63 characters of a-z, 0-9, '_' "
                             "and '-'");
        } else {
          out[k] = val.as_string();
        }
      }
    }
  }
}

std::pair<instance_request, validation> parse_instance_request(std::string_view body,
                                                               const provider_registry& providers) {
  instance_request req;
  validation v;
  boost::system::error_code ec;
  json::value doc = json::parse(body, ec);
  if (ec) {
    v.code = "malformed_json";
    v.errors.push_back("the body is not valid JSON: " + ec.message());
    return {req, v};
  }
  if (!doc.is_object()) {
    v.errors.push_back("the body must be a JSON object");
    return {req, v};
  }
  const auto& o = doc.as_object();
  static constexpr std::string_view known[] = {
      "provider", "image", "instance_type", "public_ssh_key", "zone", "reservation_id", "tags"};
  for (const auto& [k, val] : o) {
    if (std::find(std::begin(known), std::end(known), std::string_view(k)) == std::end(known)) {
      v.code = "unknown_field";
      v.errors.push_back("unknown field '" + std::string(k) + "'");
    }
  }
  auto string_field = [&](std::string_view name, bool required,
                          std::size_t max_len) -> std::optional<std::string> {
    const auto* f = o.if_contains(name);
    if (!f || f->is_null()) {
      if (required) v.errors.push_back("'" + std::string(name) + "' is required");
      return std::nullopt;
    }
    if (!f->is_string()) {
      v.errors.push_back("'" + std::string(name) + "' must be a string");
      return std::nullopt;
    }
    std::string s(f->as_string());
    if (s.find('\0') != std::string::npos) {
      v.errors.push_back("'" + std::string(name) + "' must not contain NUL characters");
      return std::nullopt;
    }
    if (required && s.empty()) {
      v.errors.push_back("'" + std::string(name) + "' must not be empty");
      return std::nullopt;
    }
    if (s.size() > max_len) {
      v.errors.push_back("'" + std::string(name) + "' is longer than " + std::to_string(max_len) +
                         " characters");
      return std::nullopt;
    }
    return s;
  };

  const auto provider = string_field("provider", true, 63);
  const provider_section* section = nullptr;
  if (provider) {
    section = providers.section(*provider);
    if (!section) {
      if (v.errors.empty()) v.code = "unknown_provider";
      v.errors.push_back("unknown provider '" + *provider + "'");
    } else {
      req.provider = *provider;
    }
  }
  if (auto image = string_field("image", true, 1024)) req.image = *image;
  if (auto type = string_field("instance_type", false, 32)) {
    // travis-ci/worker sends the job's vm_type: "default" or "premium" (or "" when unset), and
    // Cloud Brain took anything but "premium" as standard.
    if (type->empty() || *type == "default") *type = "standard";
    if (*type != "standard" && *type != "premium") {
      v.errors.push_back("'instance_type' must be 'standard' or 'premium', not '" + *type + "'");
    } else {
      req.instance_type = *type;
    }
  }
  req.public_ssh_key = string_field("public_ssh_key", false, std::size_t{16} * 1024);
  // The worker always sends the field, empty when it has no key: the same as none.
  if (req.public_ssh_key && req.public_ssh_key->empty()) req.public_ssh_key.reset();
  if (req.public_ssh_key && req.public_ssh_key->find('\n') != std::string::npos) {
    v.errors.push_back("'public_ssh_key' must be a single line");
  }
  if (auto zone = string_field("zone", false, 63)) {
    if (section && !section->zones.empty() &&
        std::find(section->zones.begin(), section->zones.end(), *zone) == section->zones.end()) {
      v.errors.push_back("zone '" + *zone + "' is not one of provider '" + section->name +
                         "''s zones");
    } else {
      req.zone = *zone;
    }
  }
  if (auto rid = string_field("reservation_id", false, 64)) {
    if (auto id = uuid::parse(*rid)) {
      req.reservation_id = id->str();
    } else {
      v.errors.push_back("'reservation_id' must be a UUID");
    }
  }
  parse_tags(o, v, req.tags);

  return {req, v};
}

api::api(const service_config& cfg, instance_store& store, reservation_store& reservations,
         reservation_set_store& sets, authenticator& auth, health& h,
         const provider_registry& providers)
    : cfg_(cfg),
      store_(store),
      reservations_(reservations),
      sets_(sets),
      auth_(auth),
      health_(h),
      providers_(providers) {}

void api::install(net::router& r) {
  r.add(http::verb::post, "/instances", authenticated(&api::create_instance), "instances.create");
  r.add(http::verb::get, "/instances", authenticated(&api::list_instances), "instances.list");
  r.add(http::verb::get, "/instances/:id", authenticated(&api::get_instance), "instances.get");
  r.add(http::verb::delete_, "/instances/:id", authenticated(&api::delete_instance),
        "instances.delete");
  r.add(http::verb::get, "/providers", authenticated(&api::list_providers), "providers.list");
  install_reservations(r);
  install_reservation_sets(r);
  install_usage(r);
  install_operations(r);
}

void api::install_admin(net::router& r) {
  install_operations(r);
  // Admin only: the admin listener is the operators' address (no token there, like /metrics)
  // until tokens carry roles.
  if (cluster_ != nullptr) {
    r.add(
        http::verb::get, "/nodes", [this](net::request_context& c) { return list_nodes(c, 0); },
        "nodes.list");
  }
}

void api::install_operations(net::router& r) {
  r.add(
      http::verb::get, "/livez", [this](net::request_context& c) { return livez(c); }, "livez");
  r.add(
      http::verb::get, "/readyz", [this](net::request_context& c) { return readyz(c); }, "readyz");
}

net::handler api::authenticated(handler_fn fn) {
  return [this, fn](net::request_context& ctx) -> asio::awaitable<net::response> {
    const auto token = presented_token(ctx.req);
    if (!token) co_return unauthorized();
    const auto parts = parse_token(*token);
    if (!parts) co_return unauthorized();
    if (const auto known = auth_.cached(*parts)) co_return co_await (this->*fn)(ctx, *known);
    auto id = co_await auth_.verify(*parts, after(std::chrono::seconds(10)));
    if (!id) {
      if (id.error().is(errc::unauthorized)) co_return unauthorized();
      co_return net::problem_from_error(id.error());
    }
    co_return co_await (this->*fn)(ctx, *id);
  };
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
                                                    std::int64_t token_id) {
  if (auto refused = refuse_media_type(ctx.req)) co_return std::move(*refused);
  auto [req, v] = parse_instance_request(ctx.req.body(), providers_);
  if (!v.ok()) co_return invalid(v);

  auto idem = idempotency_of(ctx.req, ctx.req.body());
  if (!idem) co_return invalid_idempotency_key();
  auto created = co_await store_.create(req, token_id, *idem);
  if (!created && req.reservation_id && created.error().is(errc::conflict)) {
    auto refusing = reservation_refused(req);
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

asio::awaitable<net::response> api::get_instance(net::request_context& ctx, std::int64_t) {
  const auto id = uuid::parse(ctx.param("id"));
  if (!id) co_return not_found(ctx.param("id"));
  auto body = co_await store_.get_json(id->str());
  if (!body) {
    if (body.error().is(errc::not_found)) co_return not_found(id->str());
    co_return net::problem_from_error(body.error());
  }
  co_return raw_json(http::status::ok, std::move(*body));
}

asio::awaitable<net::response> api::list_instances(net::request_context& ctx, std::int64_t) {
  list_filter f;
  validation v;
  for (const auto& p : ctx.query) {
    const std::string key = p.key;
    const std::string value = p.has_value ? std::string(p.value) : std::string();
    if (key.find('\0') != std::string::npos || value.find('\0') != std::string::npos) {
      v.errors.push_back("query parameters must not contain NUL characters");
      continue;
    }
    if (key == "provider") {
      f.provider = value;
    } else if (key == "state") {
      if (std::find(std::begin(instance_states), std::end(instance_states), value) ==
          std::end(instance_states)) {
        v.errors.push_back(
            "'state' must be one of creating, starting, running, terminating, "
            "terminated, errored; not '" +
            value + "'");
      } else {
        f.state = value;
      }
    } else if (key.starts_with("tag.") && key.size() > 4) {
      f.tags[key.substr(4)] = value;
    } else if (key == "limit") {
      std::size_t n = 0;
      const auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
      if (ec != std::errc{} || end != value.data() + value.size() || n < 1 || n > 1000) {
        v.errors.push_back("'limit' must be a number from 1 to 1000, not '" + value + "'");
      } else {
        f.limit = n;
      }
    } else if (key == "after") {
      f.after = value;
    } else {
      v.code = "unknown_parameter";
      v.errors.push_back("unknown query parameter '" + key + "'");
    }
  }
  if (!v.ok()) co_return invalid(v);
  auto page = co_await store_.list(f);
  if (!page) {
    if (page.error().is(errc::invalid_argument)) {
      v.errors.push_back(page.error().detail);
      co_return invalid(v);
    }
    co_return net::problem_from_error(page.error());
  }
  std::string body = "{\"instances\":" + page->instances_json + ",\"next\":";
  body += page->next ? "\"" + *page->next + "\"" : std::string("null");
  body += '}';
  co_return raw_json(http::status::ok, std::move(body));
}

asio::awaitable<net::response> api::delete_instance(net::request_context& ctx, std::int64_t) {
  const auto id = uuid::parse(ctx.param("id"));
  if (!id) co_return not_found(ctx.param("id"));
  auto body = co_await store_.request_delete(id->str());
  if (!body) {
    if (body.error().is(errc::not_found)) co_return not_found(id->str());
    co_return net::problem_from_error(body.error());
  }
  log::info("instance delete requested",
            {{"request_id", ctx.request_id}, {"instance_id", id->str()}});
  co_return raw_json(http::status::accepted, std::move(*body));
}

asio::awaitable<net::response> api::list_providers(net::request_context&, std::int64_t) {
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
