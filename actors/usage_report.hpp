#pragma once

#include "core/config.hpp"
#include "core/error.hpp"
#include "core/pg/pool.hpp"
#include "core/time.hpp"

#include <boost/asio/awaitable.hpp>
#include <boost/json/object.hpp>

#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

// What ran, what was reserved, what that left unused and what it cost over a period, from the
// history in PostgreSQL (instance_events, reservation_events). GET /usage and `cloudbrain usage`
// both ask it, and print its answer as JSON, CSV (RFC 4180) or a table.
//
// Over [from, to), where `to` is at most now:
//   - an instance runs from its first `running` event to its first `terminated` or `errored`
//     event after that (or on, while it has none);
//   - a reservation holds `count` instances from its first `active` event to its first
//     `cancelled`, `expired` or `failed` event after that;
//   - a reservation's unused instance-hours are those it held minus the hours instances ran
//     inside it (any instance, whatever the filter), never below zero;
//   - the estimated cost is the hours instances ran outside a reservation at their type's price
//     (standard-price-per-hour, premium-price-per-hour) plus the instance-hours reservations
//     held at reserved-price-per-hour (the type's price when unset: what clouds charge for
//     reserved capacity without a commitment); instances inside a reservation cost nothing more.
//     A group with hours at a provider without the price they need has no cost (null).
// Every figure is exact decimal arithmetic in PostgreSQL, rounded once, at the end, to six
// decimals (3.6 ms of an hour).
namespace cloudbrain {

struct usage_query {
  system_clock::time_point from{};
  system_clock::time_point to{};
  boost::json::object tags;             // only instances and reservations with these tags
  std::optional<std::string> provider;  // only this provider's
  // only what this token created (a client token's scope, verified_token::owner()); none: all
  std::optional<std::int64_t> owner;
  // What a group is: "provider", "instance_type" and "tag.KEY", in the order asked for.
  std::vector<std::string> group_by;
};

// What GET /usage's query string (or the command line) said, or every way it was wrong.
struct usage_query_problems {
  std::vector<std::string> errors;
  std::string code = "invalid_request";  // unknown_parameter when one was not known
};
// `params` are the query's pairs in order; `now` fills in the defaults (to = now, from = 24
// hours before to, group_by = provider,instance_type).
[[nodiscard]] usage_query parse_usage_query(
    const std::vector<std::pair<std::string, std::string>>& params, system_clock::time_point now,
    usage_query_problems& problems);

struct provider_prices {
  std::string standard;  // decimal text; empty: not set
  std::string premium;
  std::string reserved;
};
struct usage_prices {
  std::string currency;  // empty: no prices configured
  std::map<std::string, provider_prices> by_provider;
};
[[nodiscard]] usage_prices prices_of(const std::string& currency,
                                     const std::vector<const provider_section*>& sections);

// One group's figures, numbers as PostgreSQL wrote them ("1.5", "0", "12.345678").
struct usage_figures {
  std::int64_t instances = 0;     // instances that ran in the period
  std::int64_t reservations = 0;  // reservations that held capacity in the period
  std::string instance_hours = "0";
  std::string reserved_instance_hours = "0";
  std::string reserved_unused_instance_hours = "0";
  std::optional<std::string> estimated_cost;  // none: a price is missing
};
struct usage_group {
  std::vector<std::optional<std::string>> key;  // by group_by; none: the item has no such tag
  usage_figures figures;
};
struct usage_report {
  system_clock::time_point from{};
  system_clock::time_point to{};
  system_clock::time_point as_of{};  // the end of what was counted: to, or now if earlier
  std::vector<std::string> group_by;
  std::string currency;
  std::vector<usage_group> groups;  // ordered by key
  usage_figures total;
};

// At most this many groups; more is invalid_argument (narrow the filter or the grouping).
inline constexpr std::size_t max_usage_groups = 10'000;

[[nodiscard]] boost::asio::awaitable<result<usage_report>> compute_usage(pg::pool& pool,
                                                                         usage_query q,
                                                                         usage_prices prices);

// The report as the API's JSON, as CSV (a header line, then one line per group, CRLF ends), and
// as the terminal's table (a title line, a header, the groups, then the total).
[[nodiscard]] std::string usage_json(const usage_report& r);
[[nodiscard]] std::string usage_csv(const usage_report& r);
[[nodiscard]] std::string usage_table(const usage_report& r);

// One CSV field as RFC 4180 writes it: quoted when it holds a comma, a quote, CR or LF.
[[nodiscard]] std::string csv_field(std::string_view s);

}  // namespace cloudbrain
