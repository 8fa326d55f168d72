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

struct parsed_reservation {
  reservation_request req;
  validation v;
  const provider_section* section = nullptr;
  bool over_cap = false;  // the request asks for more than a cost guard allows
};

parsed_reservation parse_reservation_request(std::string_view body,
                                             const provider_registry& providers,
                                             system_clock::time_point now) {
  parsed_reservation p;
  auto& v = p.v;
  auto& req = p.req;
  boost::system::error_code ec;
  json::value doc = json::parse(body, ec);
  if (ec) {
    v.code = "malformed_json";
    v.errors.push_back("the body is not valid JSON: " + ec.message());
    return p;
  }
  if (!doc.is_object()) {
    v.errors.push_back("the body must be a JSON object");
    return p;
  }
  const auto& o = doc.as_object();
  static constexpr std::string_view known[] = {"provider", "instance_type",    "count", "zones",
                                               "ends_at",  "duration_minutes", "tags"};
  for (const auto& [k, val] : o) {
    if (std::find(std::begin(known), std::end(known), std::string_view(k)) == std::end(known)) {
      v.code = "unknown_field";
      v.errors.push_back("unknown field '" + std::string(k) + "'");
    }
  }

  auto capacity = parse_capacity_fields(o, providers, "", v);
  p.section = capacity.section;
  p.over_cap = capacity.over_cap;
  req.provider = std::move(capacity.provider);
  req.instance_type = std::move(capacity.instance_type);
  req.count = capacity.count;
  req.zones = std::move(capacity.zones);

  auto end = parse_end_fields(o, now, v);
  if (!end.given && p.section) {
    end.at = now + std::min<std::chrono::milliseconds>(default_reservation_duration,
                                                       p.section->max_reservation_duration);
  }
  if (end.at && p.section) {
    if (*end.at - now > p.section->max_reservation_duration) {
      p.over_cap = true;
      v.errors.push_back("the reservation would last longer than provider '" + p.section->name +
                         "''s cap of " + describe_duration(p.section->max_reservation_duration) +
                         " (max-reservation-duration)");
    } else {
      req.ends_at = *end.at;
    }
  }

  parse_tags(o, v, req.tags);
  if (p.over_cap && v.errors.size() > 0 && v.code == "invalid_request") {
    v.code = "reservation_cap_exceeded";
  }
  return p;
}

}  // namespace

std::string describe_duration(std::chrono::milliseconds d) {
  using namespace std::chrono;
  const auto minutes_total = duration_cast<minutes>(d).count();
  if (minutes_total % (60 * 24) == 0) return std::to_string(minutes_total / (60 * 24)) + "d";
  if (minutes_total % 60 == 0) return std::to_string(minutes_total / 60) + "h";
  return std::to_string(minutes_total) + "m";
}

capacity_fields parse_capacity_fields(const json::object& o, const provider_registry& providers,
                                      std::string_view where, validation& v) {
  capacity_fields c;
  const std::string at(where);
  const auto* provider = o.if_contains("provider");
  if (!provider || provider->is_null()) {
    v.errors.push_back(at + "'provider' is required");
  } else if (!provider->is_string()) {
    v.errors.push_back(at + "'provider' must be a string");
  } else {
    c.section = providers.section(std::string_view(provider->as_string()));
    if (!c.section) {
      if (v.errors.empty()) v.code = "unknown_provider";
      v.errors.push_back(at + "unknown provider '" +
                         std::string(provider->as_string()).substr(0, 63) + "'");
    } else {
      c.provider = c.section->name;
    }
  }

  if (const auto* type = o.if_contains("instance_type"); type && !type->is_null()) {
    if (!type->is_string() || (type->as_string() != "standard" && type->as_string() != "premium")) {
      v.errors.push_back(at + "'instance_type' must be 'standard' or 'premium'");
    } else {
      c.instance_type = std::string(type->as_string());
    }
  }

  const auto* count = o.if_contains("count");
  if (!count || count->is_null()) {
    v.errors.push_back(at + "'count' is required");
  } else if (!count->is_int64() && !count->is_uint64()) {
    v.errors.push_back(at + "'count' must be a whole number");
  } else {
    const auto n =
        count->is_int64()
            ? count->as_int64()
            : static_cast<std::int64_t>(std::min<std::uint64_t>(count->as_uint64(), 1ULL << 62));
    if (n < 1) {
      v.errors.push_back(at + "'count' must be at least 1");
    } else if (c.section && static_cast<std::uint64_t>(n) > c.section->max_reserved_instances) {
      c.over_cap = true;
      v.errors.push_back(at + "'count' " + std::to_string(n) + " is over provider '" +
                         c.section->name + "''s cap of " +
                         std::to_string(c.section->max_reserved_instances) +
                         " reserved instances (max-reserved-instances)");
    } else {
      c.count = static_cast<int>(std::min<std::int64_t>(n, 1'000'000));
    }
  }

  if (const auto* zones = o.if_contains("zones"); zones && !zones->is_null()) {
    if (!zones->is_array() || zones->as_array().empty()) {
      v.errors.push_back(at + "'zones' must be a non-empty array of zone names");
    } else {
      for (const auto& z : zones->as_array()) {
        if (!z.is_string()) {
          v.errors.push_back(at + "'zones' must contain only strings");
          break;
        }
        const std::string zone(z.as_string());
        if (c.section && std::find(c.section->zones.begin(), c.section->zones.end(), zone) ==
                             c.section->zones.end()) {
          v.errors.push_back(at + "zone '" + zone.substr(0, 63) + "' is not one of provider '" +
                             c.section->name + "''s zones");
        } else if (std::find(c.zones.begin(), c.zones.end(), zone) != c.zones.end()) {
          v.errors.push_back(at + "zone '" + zone + "' is listed twice");
        } else {
          c.zones.push_back(zone);
        }
      }
    }
  }
  return c;
}

end_fields parse_end_fields(const json::object& o, system_clock::time_point now, validation& v) {
  end_fields e;
  const auto* ends_at = o.if_contains("ends_at");
  const auto* minutes = o.if_contains("duration_minutes");
  const bool has_ends = ends_at && !ends_at->is_null();
  const bool has_minutes = minutes && !minutes->is_null();
  e.given = has_ends || has_minutes;
  if (has_ends && has_minutes) {
    v.errors.push_back("give 'ends_at' or 'duration_minutes', not both");
  } else if (has_ends) {
    if (!ends_at->is_string()) {
      v.errors.push_back("'ends_at' must be an RFC 3339 time");
    } else if (auto t = parse_rfc3339(std::string_view(ends_at->as_string())); !t) {
      v.errors.push_back("'ends_at' must be an RFC 3339 time: " + t.error().detail);
    } else if (*t <= now + std::chrono::minutes(1)) {
      v.errors.push_back("'ends_at' must be at least a minute in the future");
    } else {
      e.at = *t;
    }
  } else if (has_minutes) {
    if (!minutes->is_int64() || minutes->as_int64() < 1) {
      v.errors.push_back("'duration_minutes' must be a whole number of minutes, at least 1");
    } else {
      e.at = now + std::chrono::minutes(std::min<std::int64_t>(minutes->as_int64(), 1LL << 32));
    }
  }
  return e;
}

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
                                                       std::int64_t token_id) {
  if (auto refused = refuse_media_type(ctx.req)) co_return std::move(*refused);
  auto parsed = parse_reservation_request(ctx.req.body(), providers_, system_clock::now());
  if (!parsed.v.ok()) co_return invalid(parsed.v);
  // The route is part of what the key stands for: a key of POST /instances is not one here.
  auto idem = idempotency_of(ctx.req, "POST /reservations\n" + ctx.req.body());
  if (!idem) co_return invalid_idempotency_key();
  auto creating =
      reservations_.create(parsed.req, token_id, parsed.section->max_reserved_instances, *idem);
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

asio::awaitable<net::response> api::get_reservation(net::request_context& ctx, std::int64_t) {
  const auto id = uuid::parse(ctx.param("id"));
  if (!id) co_return reservation_not_found(ctx.param("id"));
  auto reading = reservations_.get_json(id->str());
  auto body = co_await std::move(reading);
  if (!body) {
    if (body.error().is(errc::not_found)) co_return reservation_not_found(id->str());
    co_return net::problem_from_error(body.error());
  }
  co_return raw_json(http::status::ok, std::move(*body));
}

asio::awaitable<net::response> api::list_reservations(net::request_context& ctx, std::int64_t) {
  reservation_filter f;
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
      if (std::find(std::begin(reservation_states), std::end(reservation_states), value) ==
          std::end(reservation_states)) {
        v.errors.push_back(
            "'state' must be one of pending, active, cancelling, cancelled, expired, failed; "
            "not '" +
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
  auto listing = reservations_.list(std::move(f));
  auto page = co_await std::move(listing);
  if (!page) {
    if (page.error().is(errc::invalid_argument)) {
      v.errors.push_back(page.error().detail);
      co_return invalid(v);
    }
    co_return net::problem_from_error(page.error());
  }
  std::string body = "{\"reservations\":" + page->reservations_json + ",\"next\":";
  body += page->next ? "\"" + *page->next + "\"" : std::string("null");
  body += '}';
  co_return raw_json(http::status::ok, std::move(body));
}

asio::awaitable<net::response> api::cancel_reservation(net::request_context& ctx, std::int64_t) {
  const auto id = uuid::parse(ctx.param("id"));
  if (!id) co_return reservation_not_found(ctx.param("id"));
  auto cancelling = reservations_.cancel(id->str());
  auto body = co_await std::move(cancelling);
  if (!body) {
    if (body.error().is(errc::not_found)) co_return reservation_not_found(id->str());
    co_return net::problem_from_error(body.error());
  }
  log::info("reservation cancel requested",
            {{"request_id", ctx.request_id}, {"reservation_id", id->str()}});
  co_return raw_json(http::status::accepted, std::move(*body));
}

asio::awaitable<net::response> api::cancel_reservations(net::request_context& ctx, std::int64_t) {
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
  auto cancelling = reservations_.cancel_matching(std::move(tags), std::move(provider));
  auto moved = co_await std::move(cancelling);
  if (!moved) co_return net::problem_from_error(moved.error());
  log::info("reservations cancel requested by tag", {{"request_id", ctx.request_id}});
  co_return raw_json(http::status::accepted, "{\"reservations\":" + *moved + "}");
}

asio::awaitable<net::response> api::reservation_refused(instance_request req) {
  const std::string id = *req.reservation_id;
  auto asking = reservations_.refusal_for(id, req.provider, req.instance_type);
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
