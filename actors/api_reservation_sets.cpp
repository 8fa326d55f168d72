// The /reservation-sets resource: reservations asked for together, across providers.
#include "actors/api.hpp"

#include "core/uuid.hpp"
#include "net/problem.hpp"

#include <boost/json/parse.hpp>

#include <charconv>
#include <map>

namespace cloudbrain {
namespace asio = boost::asio;
namespace json = boost::json;
namespace http = net::http;

namespace {

constexpr std::string_view set_states[] = {"pending",   "active",  "partial", "cancelling",
                                           "cancelled", "expired", "failed"};
net::response set_not_found(std::string_view what) {
  return net::problem(http::status::not_found, "reservation_set_not_found", "Not found",
                      "no reservation set " + std::string(what));
}

}  // namespace

void api::install_reservation_sets(net::router& r) {
  r.add(http::verb::post, "/reservation-sets", authenticated(&api::create_reservation_set),
        "reservation_sets.create");
  r.add(http::verb::get, "/reservation-sets", authenticated(&api::list_reservation_sets),
        "reservation_sets.list");
  r.add(http::verb::get, "/reservation-sets/:id", authenticated(&api::get_reservation_set),
        "reservation_sets.get");
  r.add(http::verb::delete_, "/reservation-sets/:id", authenticated(&api::cancel_reservation_set),
        "reservation_sets.cancel");
}

asio::awaitable<net::response> api::create_reservation_set(net::request_context& ctx,
                                                           const verified_token& token) {
  if (auto refused = refuse_media_type(ctx.req)) co_return std::move(*refused);
  auto parsed = parse_set_request(ctx.req.body(), sections(), system_clock::now());
  if (!parsed.v.ok()) co_return invalid(parsed.v);
  // The route is part of what the key stands for, as for POST /reservations.
  auto idem = idempotency_of(ctx.req, "POST /reservation-sets\n" + ctx.req.body());
  if (!idem) co_return invalid_idempotency_key();
  std::map<std::string, std::size_t> caps;
  for (const auto& [name, section] : parsed.sections) caps[name] = section->max_reserved_instances;
  auto creating = sets_.create(parsed.req, token.id, std::move(caps), *idem);
  auto created = co_await std::move(creating);
  if (!created) {
    if (created.error().is(errc::invalid_argument)) {
      co_return net::problem(http::status::unprocessable_entity, "reservation_cap_exceeded",
                             "The request is not valid", created.error().detail);
    }
    if (created.error().is(errc::precondition_failed)) {
      co_return net::problem(http::status::unprocessable_entity, "idempotency_key_reused",
                             "The request is not valid", created.error().detail);
    }
    co_return net::problem_from_error(created.error());
  }
  auto res = raw_json(http::status::created, std::move(created->body));
  res.set(http::field::location, base_url_of(ctx) + "/reservation-sets/" + created->id);
  if (created->replayed) {
    res.set("Idempotent-Replayed", "true");
    co_return res;
  }
  log::info("reservation set requested", {{"request_id", ctx.request_id},
                                          {"reservation_set_id", created->id},
                                          {"placements", parsed.req.placements.size()},
                                          {"on_partial", parsed.req.on_partial}});
  co_return res;
}

asio::awaitable<net::response> api::get_reservation_set(net::request_context& ctx,
                                                        const verified_token& token) {
  const auto id = uuid::parse(ctx.param("id"));
  if (!id) co_return set_not_found(ctx.param("id"));
  auto reading = sets_.get_json(id->str(), token.owner());
  auto body = co_await std::move(reading);
  if (!body) {
    if (body.error().is(errc::not_found)) co_return set_not_found(id->str());
    co_return net::problem_from_error(body.error());
  }
  co_return raw_json(http::status::ok, std::move(*body));
}

asio::awaitable<net::response> api::list_reservation_sets(net::request_context& ctx,
                                                          const verified_token& token) {
  reservation_set_filter f;
  f.created_by = token.owner();
  validation v;
  for (const auto& p : ctx.query) {
    const std::string key = p.key;
    const std::string value = p.has_value ? std::string(p.value) : std::string();
    if (key.find('\0') != std::string::npos || value.find('\0') != std::string::npos) {
      v.errors.push_back("query parameters must not contain NUL characters");
      continue;
    }
    if (key == "state") {
      if (std::find(std::begin(set_states), std::end(set_states), value) == std::end(set_states)) {
        v.errors.push_back(
            "'state' must be one of pending, active, partial, cancelling, cancelled, expired, "
            "failed; not '" +
            value.substr(0, 64) + "'");
      } else {
        f.state = value;
      }
    } else if (key.starts_with("tag.") && key.size() > 4) {
      f.tags[key.substr(4)] = value;
    } else if (key == "limit") {
      std::size_t n = 0;
      const auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
      if (ec != std::errc{} || end != value.data() + value.size() || n < 1 || n > 1000) {
        v.errors.push_back("'limit' must be a number from 1 to 1000, not '" + value.substr(0, 64) +
                           "'");
      } else {
        f.limit = n;
      }
    } else if (key == "after") {
      f.after = value;
    } else {
      v.code = "unknown_parameter";
      v.errors.push_back("unknown query parameter '" + key.substr(0, 64) + "'");
    }
  }
  if (!v.ok()) co_return invalid(v);
  auto listing = sets_.list(std::move(f));
  auto page = co_await std::move(listing);
  if (!page) {
    if (page.error().is(errc::invalid_argument)) {
      v.errors.push_back(page.error().detail);
      co_return invalid(v);
    }
    co_return net::problem_from_error(page.error());
  }
  std::string body = "{\"reservation_sets\":" + page->sets_json + ",\"next\":";
  body += page->next ? "\"" + *page->next + "\"" : std::string("null");
  body += '}';
  co_return raw_json(http::status::ok, std::move(body));
}

asio::awaitable<net::response> api::cancel_reservation_set(net::request_context& ctx,
                                                           const verified_token& token) {
  const auto id = uuid::parse(ctx.param("id"));
  if (!id) co_return set_not_found(ctx.param("id"));
  auto cancelling = sets_.cancel(id->str(), token.owner());
  auto body = co_await std::move(cancelling);
  if (!body) {
    if (body.error().is(errc::not_found)) co_return set_not_found(id->str());
    co_return net::problem_from_error(body.error());
  }
  log::info("reservation set cancel requested",
            {{"request_id", ctx.request_id}, {"reservation_set_id", id->str()}});
  co_return raw_json(http::status::accepted, std::move(*body));
}

}  // namespace cloudbrain
