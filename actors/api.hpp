#pragma once

#include "actors/authenticator.hpp"
#include "actors/cluster_store.hpp"
#include "actors/health.hpp"
#include "actors/instance_store.hpp"
#include "actors/provider_actor.hpp"
#include "actors/provider_registry.hpp"
#include "actors/reservation_set_store.hpp"
#include "actors/reservation_store.hpp"
#include "core/config.hpp"
#include "net/router.hpp"

#include <map>

namespace cloudbrain {

// What a request body said, or every way in which it was wrong.
struct validation {
  std::vector<std::string> errors;
  std::string code = "invalid_request";
  [[nodiscard]] bool ok() const { return errors.empty(); }
};

// Shared by the API's handlers.
[[nodiscard]] net::response raw_json(net::http::status status, std::string body);
[[nodiscard]] net::response invalid(const validation& v);
// application/json or application/*+json, with any parameters.
[[nodiscard]] bool is_json_content_type(std::string_view content_type);
// 415 for a body whose Content-Type is given and is not JSON; nothing for JSON or no type at
// all (read as JSON, API.md). Every handler that reads a body asks this first.
[[nodiscard]] std::optional<net::response> refuse_media_type(const net::request& req);

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
                                                    const provider_registry& providers,
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

// Reads a request body's optional "tags" object into `out`, with every problem in `v`.
void parse_tags(const boost::json::object& body, validation& v, boost::json::object& out);

// Checks a POST /instances body against API.md and the providers served.
[[nodiscard]] std::pair<instance_request, validation> parse_instance_request(
    std::string_view body, const provider_registry& providers);

// A POST's Idempotency-Key with the SHA-256 of `identity` (what makes two requests the same):
// none without the header; invalid_argument when it is not 1 to 255 characters.
[[nodiscard]] result<std::optional<idempotent_request>> idempotency_of(const net::request& req,
                                                                       std::string_view identity);
// 422 invalid_idempotency_key.
[[nodiscard]] net::response invalid_idempotency_key();

// What GET /usage answers with, by its Accept header (RFC 9110 content negotiation): JSON
// unless CSV is preferred; none when the header allows neither.
enum class usage_format { json, csv, none };
[[nodiscard]] usage_format usage_format_for(std::string_view accept);

// The token presented by `Authorization: token X` or Basic with user "token", if any.
[[nodiscard]] std::optional<std::string> presented_token(const net::request& req);

// The HTTP API of API.md: the routes and their handlers. Handlers run on their connection's
// strand and talk to the actors and the store; nothing here blocks.
class api {
 public:
  api(const service_config& cfg, instance_store& store, reservation_store& reservations,
      reservation_set_store& sets, authenticator& auth, health& h,
      const provider_registry& providers);

  void install(net::router& r);
  // Only /livez and /readyz (install() includes them).
  void install_operations(net::router& r);
  // The admin listener's routes: /livez, /readyz and GET /nodes (after set_cluster()).
  void install_admin(net::router& r);
  // The cluster this node belongs to (GET /nodes, the leaders in GET /providers); before
  // install() and install_admin().
  void set_cluster(cluster_store& cluster, std::string node_name);

 private:
  using handler_fn = boost::asio::awaitable<net::response> (api::*)(net::request_context&,
                                                                    std::int64_t token_id);
  [[nodiscard]] net::handler authenticated(handler_fn fn);

  boost::asio::awaitable<net::response> create_instance(net::request_context& ctx, std::int64_t);
  boost::asio::awaitable<net::response> get_instance(net::request_context& ctx, std::int64_t);
  boost::asio::awaitable<net::response> list_instances(net::request_context& ctx, std::int64_t);
  boost::asio::awaitable<net::response> delete_instance(net::request_context& ctx, std::int64_t);
  boost::asio::awaitable<net::response> list_providers(net::request_context& ctx, std::int64_t);
  // The cluster (api_cluster.cpp).
  boost::asio::awaitable<net::response> list_nodes(net::request_context& ctx, std::int64_t);
  // Adds who leads each provider's reconciler and janitor to GET /providers' entries.
  boost::asio::awaitable<void> add_leaders(boost::json::array& providers);
  // Capacity reservations (api_reservations.cpp).
  void install_reservations(net::router& r);
  boost::asio::awaitable<net::response> create_reservation(net::request_context& ctx, std::int64_t);
  boost::asio::awaitable<net::response> get_reservation(net::request_context& ctx, std::int64_t);
  boost::asio::awaitable<net::response> list_reservations(net::request_context& ctx, std::int64_t);
  boost::asio::awaitable<net::response> cancel_reservation(net::request_context& ctx, std::int64_t);
  boost::asio::awaitable<net::response> cancel_reservations(net::request_context& ctx,
                                                            std::int64_t);
  // Reservation sets (api_reservation_sets.cpp).
  void install_reservation_sets(net::router& r);
  boost::asio::awaitable<net::response> create_reservation_set(net::request_context& ctx,
                                                               std::int64_t);
  boost::asio::awaitable<net::response> get_reservation_set(net::request_context& ctx,
                                                            std::int64_t);
  boost::asio::awaitable<net::response> list_reservation_sets(net::request_context& ctx,
                                                              std::int64_t);
  boost::asio::awaitable<net::response> cancel_reservation_set(net::request_context& ctx,
                                                               std::int64_t);
  // Usage and cost (api_usage.cpp).
  void install_usage(net::router& r);
  boost::asio::awaitable<net::response> get_usage(net::request_context& ctx, std::int64_t);
  // Why POST /instances could not launch into its reservation, as a problem response.
  boost::asio::awaitable<net::response> reservation_refused(instance_request req);

  boost::asio::awaitable<net::response> livez(net::request_context& ctx);
  boost::asio::awaitable<net::response> readyz(net::request_context& ctx);

  [[nodiscard]] std::string location_of(const net::request_context& ctx,
                                        const std::string& id) const;
  // base-url, or http:// and the request's Host, without a trailing slash: for Location.
  [[nodiscard]] std::string base_url_of(const net::request_context& ctx) const;

  const service_config& cfg_;
  instance_store& store_;
  reservation_store& reservations_;
  reservation_set_store& sets_;
  authenticator& auth_;
  health& health_;
  const provider_registry& providers_;  // SIGHUP may add to it
  cluster_store* cluster_ = nullptr;
  std::string node_name_;
};

}  // namespace cloudbrain
