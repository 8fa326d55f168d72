// Reading requests: bodies, headers and query strings checked against API.md, without I/O, so
// that they can be tested and fuzzed on their own.
#include "actors/requests.hpp"

#include "core/encoding.hpp"
#include "core/token.hpp"
#include "core/uuid.hpp"
#include "net/problem.hpp"

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <algorithm>
#include <charconv>

namespace cloudbrain {
namespace json = boost::json;
namespace http = net::http;

namespace {

constexpr std::size_t max_tags = 32;

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

std::optional<json::value> parse_json_body(std::string_view body, validation& v) {
  json::parse_options options;
  options.max_depth = max_json_depth;
  boost::system::error_code ec;
  json::value doc = json::parse(body, ec, {}, options);
  if (!ec) return doc;
  v.code = "malformed_json";
  if (ec == json::error::too_deep) {
    v.errors.push_back("the body is nested deeper than " + std::to_string(max_json_depth) +
                       " levels");
  } else {
    v.errors.push_back("the body is not valid JSON: " + ec.message());
  }
  return std::nullopt;
}

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
                                                               const section_lookup& providers) {
  instance_request req;
  validation v;
  auto parsed = parse_json_body(body, v);
  if (!parsed) return {req, v};
  json::value doc = std::move(*parsed);
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
    section = providers(*provider);
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

std::string describe_duration(std::chrono::milliseconds d) {
  using namespace std::chrono;
  const auto minutes_total = duration_cast<minutes>(d).count();
  if (minutes_total % (60 * 24) == 0) return std::to_string(minutes_total / (60 * 24)) + "d";
  if (minutes_total % 60 == 0) return std::to_string(minutes_total / 60) + "h";
  return std::to_string(minutes_total) + "m";
}

capacity_fields parse_capacity_fields(const json::object& o, const section_lookup& providers,
                                      std::string_view where, validation& v) {
  capacity_fields c;
  const std::string at(where);
  const auto* provider = o.if_contains("provider");
  if (!provider || provider->is_null()) {
    v.errors.push_back(at + "'provider' is required");
  } else if (!provider->is_string()) {
    v.errors.push_back(at + "'provider' must be a string");
  } else {
    c.section = providers(std::string_view(provider->as_string()));
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
    // A century bounds what a clock can add without overflow; every cap is far below it.
    constexpr std::int64_t century_minutes = 36525LL * 24 * 60;  // 100 years of 365.25 days
    if (!minutes->is_int64() || minutes->as_int64() < 1) {
      v.errors.push_back("'duration_minutes' must be a whole number of minutes, at least 1");
    } else if (minutes->as_int64() > century_minutes) {
      v.errors.push_back("'duration_minutes' must be at most " + std::to_string(century_minutes) +
                         " (a hundred years)");
    } else {
      e.at = now + std::chrono::minutes(minutes->as_int64());
    }
  }
  return e;
}

parsed_reservation parse_reservation_request(std::string_view body, const section_lookup& providers,
                                             system_clock::time_point now) {
  parsed_reservation p;
  auto& v = p.v;
  auto& req = p.req;
  auto parsed = parse_json_body(body, v);
  if (!parsed) return p;
  json::value doc = std::move(*parsed);
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

parsed_set parse_set_request(std::string_view body, const section_lookup& providers,
                             system_clock::time_point now) {
  parsed_set p;
  auto& v = p.v;
  auto& req = p.req;
  auto parsed = parse_json_body(body, v);
  if (!parsed) return p;
  json::value doc = std::move(*parsed);
  if (!doc.is_object()) {
    v.errors.push_back("the body must be a JSON object");
    return p;
  }
  const auto& o = doc.as_object();
  static constexpr std::string_view known[] = {"placements", "ends_at", "duration_minutes", "tags",
                                               "on_partial"};
  static constexpr std::string_view known_in_placement[] = {"provider", "instance_type", "count",
                                                            "zones"};
  for (const auto& [k, val] : o) {
    if (std::find(std::begin(known), std::end(known), std::string_view(k)) == std::end(known)) {
      v.code = "unknown_field";
      v.errors.push_back("unknown field '" + std::string(k) + "'");
    }
  }

  std::map<std::string, std::int64_t> asked;  // instances per provider, all placements together
  const auto* placements = o.if_contains("placements");
  if (!placements || placements->is_null()) {
    v.errors.push_back("'placements' is required");
  } else if (!placements->is_array() || placements->as_array().empty()) {
    v.errors.push_back("'placements' must be a non-empty array of placements");
  } else if (placements->as_array().size() > max_placements) {
    v.errors.push_back("'placements' may hold at most " + std::to_string(max_placements) +
                       " placements");
  } else {
    const auto& list = placements->as_array();
    for (std::size_t i = 0; i < list.size(); ++i) {
      const std::string where = "placements[" + std::to_string(i) + "]: ";
      if (!list[i].is_object()) {
        v.errors.push_back(where + "a placement must be an object");
        continue;
      }
      const auto& po = list[i].as_object();
      for (const auto& [k, val] : po) {
        if (std::find(std::begin(known_in_placement), std::end(known_in_placement),
                      std::string_view(k)) == std::end(known_in_placement)) {
          v.code = "unknown_field";
          v.errors.push_back(where + "unknown field '" + std::string(k) + "'");
        }
      }
      auto c = parse_capacity_fields(po, providers, where, v);
      p.over_cap = p.over_cap || c.over_cap;
      if (c.section) {
        p.sections[c.section->name] = c.section;
        asked[c.section->name] += c.count;
      }
      req.placements.push_back(placement{std::move(c.provider), std::move(c.instance_type), c.count,
                                         std::move(c.zones)});
    }
  }
  // The cost cap counts the placements on a provider together.
  for (const auto& [name, n] : asked) {
    const auto* section = p.sections.at(name);
    if (static_cast<std::uint64_t>(n) > section->max_reserved_instances) {
      p.over_cap = true;
      v.errors.push_back("the placements on provider '" + name + "' ask for " + std::to_string(n) +
                         " reserved instances together, over its cap of " +
                         std::to_string(section->max_reserved_instances) +
                         " (max-reserved-instances)");
    }
  }

  if (const auto* on_partial = o.if_contains("on_partial"); on_partial && !on_partial->is_null()) {
    if (!on_partial->is_string() ||
        (on_partial->as_string() != "cancel_all" && on_partial->as_string() != "keep")) {
      v.errors.push_back("'on_partial' must be 'cancel_all' or 'keep'");
    } else {
      req.on_partial = std::string(on_partial->as_string());
    }
  }

  auto end = parse_end_fields(o, now, v);
  if (!end.given && !p.sections.empty()) {
    auto longest = std::chrono::milliseconds(default_reservation_duration);
    for (const auto& [name, section] : p.sections) {
      longest = std::min(longest, section->max_reservation_duration);
    }
    end.at = now + longest;
  }
  if (end.at) {
    bool fits = true;
    for (const auto& [name, section] : p.sections) {
      if (*end.at - now > section->max_reservation_duration) {
        fits = false;
        p.over_cap = true;
        v.errors.push_back("the set would last longer than provider '" + name + "''s cap of " +
                           describe_duration(section->max_reservation_duration) +
                           " (max-reservation-duration)");
      }
    }
    if (fits) req.ends_at = *end.at;
  }

  parse_tags(o, v, req.tags);
  if (p.over_cap && !v.errors.empty() && v.code == "invalid_request") {
    v.code = "reservation_cap_exceeded";
  }
  return p;
}

}  // namespace cloudbrain
