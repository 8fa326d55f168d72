// The /reservations resource of API.md, and why an instance could not launch into one.
#include "actors/api.hpp"

#include "core/uuid.hpp"
#include "net/problem.hpp"

#include <boost/json/parse.hpp>

#include <charconv>

namespace cloudbrain {
namespace asio = boost::asio;
namespace json = boost::json;
namespace http = net::http;

namespace {

constexpr std::string_view reservation_states[] = {"pending",   "active",  "cancelling",
                                                   "cancelled", "expired", "failed"};

net::response reservation_not_found(std::string_view what) {
  return net::problem(http::status::not_found, "reservation_not_found", "Not found",
                      "no reservation " + std::string(what));
}

}  // namespace

void api::install_reservations(net::router& r) {
  r.add(http::verb::post, "/reservations", authenticated(&api::create_reservation),
        "reservations.create");
  r.add(http::verb::get, "/reservations", authenticated(&api::list_reservations),
        "reservations.list");
  r.add(http::verb::delete_, "/reservations", authenticated(&api::cancel_reservations),
        "reservations.cancel_matching");
  r.add(http::verb::get, "/reservations/:id", authenticated(&api::get_reservation),
        "reservations.get");
  r.add(http::verb::delete_, "/reservations/:id", authenticated(&api::cancel_reservation),
        "reservations.cancel");
}

asio::awaitable<net::response> api::create_reservation(net::request_context& ctx,
                                                       const verified_token& token) {
  if (auto refused = refuse_media_type(ctx.req)) co_return std::move(*refused);
  auto parsed = parse_reservation_request(ctx.req.body(), sections(), system_clock::now());
  if (!parsed.v.ok()) co_return invalid(parsed.v);
  // The route is part of what the key stands for: a key of POST /instances is not one here.
  auto idem = idempotency_of(ctx.req, "POST /reservations\n" + ctx.req.body());
  if (!idem) co_return invalid_idempotency_key();
  auto creating =
      reservations_.create(parsed.req, token.id, parsed.section->max_reserved_instances, *idem);
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
  if (created->replayed) res.set("Idempotent-Replayed", "true");
  res.set(http::field::location, base_url_of(ctx) + "/reservations/" + created->id);
  if (created->replayed) co_return res;
  log::info("reservation requested", {{"request_id", ctx.request_id},
                                      {"reservation_id", created->id},
                                      {"provider", parsed.req.provider},
                                      {"count", parsed.req.count}});
  co_return res;
}

asio::awaitable<net::response> api::get_reservation(net::request_context& ctx,
                                                    const verified_token& token) {
  const auto id = uuid::parse(ctx.param("id"));
  if (!id) co_return reservation_not_found(ctx.param("id"));
  auto reading = reservations_.get_json(id->str(), token.owner());
  auto body = co_await std::move(reading);
  if (!body) {
    if (body.error().is(errc::not_found)) co_return reservation_not_found(id->str());
    co_return net::problem_from_error(body.error());
  }
  co_return raw_json(http::status::ok, std::move(*body));
}

asio::awaitable<net::response> api::list_reservations(net::request_context& ctx,
                                                      const verified_token& token) {
  auto [f, v] = parse_list_query(ctx.query, reservation_states);
  if (!v.ok()) co_return invalid(v);
  f.created_by = token.owner();
  auto listing = reservations_.list(std::move(f));
  auto page = co_await std::move(listing);
  if (!page) co_return net::problem_from_error(page.error());
  std::string body = "{\"reservations\":" + page->reservations_json + ",\"next\":";
  body += page->next ? "\"" + *page->next + "\"" : std::string("null");
  body += '}';
  co_return raw_json(http::status::ok, std::move(body));
}

asio::awaitable<net::response> api::cancel_reservation(net::request_context& ctx,
                                                       const verified_token& token) {
  const auto id = uuid::parse(ctx.param("id"));
  if (!id) co_return reservation_not_found(ctx.param("id"));
  auto cancelling = reservations_.cancel(id->str(), token.owner());
  auto body = co_await std::move(cancelling);
  if (!body) {
    if (body.error().is(errc::not_found)) co_return reservation_not_found(id->str());
    co_return net::problem_from_error(body.error());
  }
  log::info("reservation cancel requested",
            {{"request_id", ctx.request_id}, {"reservation_id", id->str()}});
  co_return raw_json(http::status::accepted, std::move(*body));
}

asio::awaitable<net::response> api::cancel_reservations(net::request_context& ctx,
                                                        const verified_token& token) {
  json::object tags;
  std::optional<std::string> provider;
  validation v;
  for (const auto& p : ctx.query) {
    const std::string key = p.key;
    const std::string value = p.has_value ? std::string(p.value) : std::string();
    if (key.find('\0') != std::string::npos || value.find('\0') != std::string::npos) {
      v.errors.push_back("query parameters must not contain NUL characters");
    } else if (key.starts_with("tag.") && key.size() > 4) {
      tags[key.substr(4)] = value;
    } else if (key == "provider") {
      provider = value;
    } else {
      v.code = "unknown_parameter";
      v.errors.push_back("unknown query parameter '" + key + "'");
    }
  }
  if (v.ok() && tags.empty()) {
    v.code = "tag_required";
    v.errors.push_back(
        "cancelling by filter needs at least one tag.KEY=VALUE, so that no request can cancel "
        "every reservation by accident");
  }
  if (!v.ok()) co_return invalid(v);
  auto cancelling =
      reservations_.cancel_matching(std::move(tags), std::move(provider), token.owner());
  auto moved = co_await std::move(cancelling);
  if (!moved) co_return net::problem_from_error(moved.error());
  log::info("reservations cancel requested by tag", {{"request_id", ctx.request_id}});
  co_return raw_json(http::status::accepted, "{\"reservations\":" + *moved + "}");
}

asio::awaitable<net::response> api::reservation_refused(instance_request req,
                                                        std::optional<std::int64_t> owner) {
  const std::string id = *req.reservation_id;
  auto asking = reservations_.refusal_for(id, req.provider, req.instance_type, owner);
  auto why = co_await std::move(asking);
  if (!why) co_return net::problem_from_error(why.error());
  auto refuse = [](http::status s, std::string_view code, std::string detail) {
    return net::problem(s, code, "The reservation cannot take this instance", std::move(detail));
  };
  switch (*why) {
    case reservation_refusal::not_found:
      co_return refuse(http::status::unprocessable_entity, "reservation_not_found",
                       "no reservation " + id);
    case reservation_refusal::not_active:
      co_return refuse(http::status::conflict, "reservation_not_active",
                       "reservation " + id + " is not active");
    case reservation_refusal::other_provider:
      co_return refuse(
          http::status::unprocessable_entity, "reservation_provider_mismatch",
          "reservation " + id + " belongs to another provider than '" + req.provider + "'");
    case reservation_refusal::other_type:
      co_return refuse(
          http::status::unprocessable_entity, "reservation_type_mismatch",
          "reservation " + id + " holds another instance type than '" + req.instance_type + "'");
    case reservation_refusal::full:
      co_return refuse(http::status::conflict, "reservation_full",
                       "every instance of reservation " + id + " is in use");
    case reservation_refusal::none: break;
  }
  if (req.zone) {
    co_return refuse(http::status::unprocessable_entity, "reservation_zone_mismatch",
                     "reservation " + id + " is held in another zone than '" + *req.zone + "'");
  }
  co_return refuse(http::status::conflict, "reservation_changed",
                   "reservation " + id + " changed while the instance was being created; retry");
}

}  // namespace cloudbrain
