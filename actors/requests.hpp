#pragma once

// Reading requests: bodies, headers and query strings checked against API.md. No I/O: tested
// and fuzzed on their own (tests/fuzz).

#include "actors/idempotency.hpp"
#include "actors/instance_store.hpp"
#include "actors/list_query.hpp"
#include "actors/reservation_set_store.hpp"
#include "actors/reservation_store.hpp"
#include "actors/validation.hpp"
#include "core/config.hpp"
#include "core/time.hpp"
#include "net/http.hpp"

#include <boost/json/object.hpp>
#include <boost/json/value.hpp>

#include <chrono>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace cloudbrain {

// Responses shared by the API's handlers.
[[nodiscard]] net::response raw_json(net::http::status status, std::string body);
[[nodiscard]] net::response invalid(const validation& v);
// application/json or application/*+json, with any parameters.
[[nodiscard]] bool is_json_content_type(std::string_view content_type);
// 415 for a body whose Content-Type is given and is not JSON; nothing for JSON or no type at
// all (read as JSON, API.md). Every handler that reads a body asks this first.
[[nodiscard]] std::optional<net::response> refuse_media_type(const net::request& req);

// No request body needs more than a few levels; this many is refused as too deep.
inline constexpr std::size_t max_json_depth = 16;

// A request body as JSON, or why it is not (malformed_json, naming the problem) in `v`.
[[nodiscard]] std::optional<boost::json::value> parse_json_body(std::string_view body,
                                                                validation& v);

// Reads a request body's optional "tags" object into `out`, with every problem in `v`.
void parse_tags(const boost::json::object& body, validation& v, boost::json::object& out);

// The provider section a request names, or nullptr: the registry's in the service, a fixed set
// in tests and fuzzers.
using section_lookup = std::function<const provider_section*(std::string_view name)>;

// Checks a POST /instances body against API.md and the providers served.
[[nodiscard]] std::pair<instance_request, validation> parse_instance_request(
    std::string_view body, const section_lookup& providers);

// Without ends_at or duration_minutes a reservation lasts this long (or the provider's cap).
inline constexpr std::chrono::hours default_reservation_duration{24};

// What a reservation request, or one placement of a reservation set, asks of a provider:
// provider, instance_type, count and zones. Every problem goes to `v`, prefixed with `where`
// ("placements[1]: "); a count over the provider's max-reserved-instances sets over_cap.
struct capacity_fields {
  std::string provider;
  std::string instance_type = "standard";
  int count = 0;
  std::vector<std::string> zones;
  const provider_section* section = nullptr;  // null: the provider is unknown
  bool over_cap = false;
};
[[nodiscard]] capacity_fields parse_capacity_fields(const boost::json::object& o,
                                                    const section_lookup& providers,
                                                    std::string_view where, validation& v);

// ends_at or duration_minutes: the end they give (nothing when neither is given, or when the
// one given is wrong: its problem is in `v`).
struct end_fields {
  std::optional<system_clock::time_point> at;
  bool given = false;
};
[[nodiscard]] end_fields parse_end_fields(const boost::json::object& o,
                                          system_clock::time_point now, validation& v);
// "7d", "36h", "90m": a cost guard's duration as the configuration would write it.
[[nodiscard]] std::string describe_duration(std::chrono::milliseconds d);

// A POST /reservations body, checked against API.md, the providers served and their cost guards.
struct parsed_reservation {
  reservation_request req;
  validation v;
  const provider_section* section = nullptr;
  bool over_cap = false;  // the request asks for more than a cost guard allows
};
[[nodiscard]] parsed_reservation parse_reservation_request(std::string_view body,
                                                           const section_lookup& providers,
                                                           system_clock::time_point now);

// Placements in one set: enough for every region of every cloud a run may want.
inline constexpr std::size_t max_placements = 20;

// A POST /reservation-sets body, checked like a reservation's for each placement, with the cost
// caps counting a provider's placements together.
struct parsed_set {
  reservation_set_request req;
  validation v;
  std::map<std::string, const provider_section*> sections;  // by provider name
  bool over_cap = false;  // the request asks for more than a cost guard allows
};
[[nodiscard]] parsed_set parse_set_request(std::string_view body, const section_lookup& providers,
                                           system_clock::time_point now);

// A POST's Idempotency-Key with the SHA-256 of `identity` (what makes two requests the same):
// none without the header; invalid_argument when it is not 1 to 255 characters.
[[nodiscard]] result<std::optional<idempotent_request>> idempotency_of(const net::request& req,
                                                                       std::string_view identity);
// 422 invalid_idempotency_key.
[[nodiscard]] net::response invalid_idempotency_key();

// The token presented by `Authorization: token X` or Basic with user "token", if any.
[[nodiscard]] std::optional<std::string> presented_token(const net::request& req);

}  // namespace cloudbrain
