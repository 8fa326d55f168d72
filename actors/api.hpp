#pragma once

#include "actors/audit_log.hpp"
#include "actors/authenticator.hpp"
#include "actors/cluster_store.hpp"
#include "actors/health.hpp"
#include "actors/instance_store.hpp"
#include "actors/provider_actor.hpp"
#include "actors/provider_registry.hpp"
#include "actors/requests.hpp"
#include "actors/reservation_set_store.hpp"
#include "actors/reservation_store.hpp"
#include "core/config.hpp"
#include "core/token_rate_limiter.hpp"
#include "net/router.hpp"

#include <functional>
#include <map>
#include <variant>

namespace cloudbrain {

// What GET /usage answers with, by its Accept header (RFC 9110 content negotiation): JSON
// unless CSV is preferred; none when the header allows neither.
enum class usage_format { json, csv, none };
[[nodiscard]] usage_format usage_format_for(std::string_view accept);

// The request's token, checked: the token, or the answer to give instead (401 for a missing or
// bad token, 503 when tokens cannot be checked now).
using token_check = std::variant<verified_token, net::response>;
[[nodiscard]] boost::asio::awaitable<token_check> check_token(authenticator& auth,
                                                              const net::request& req);
// 403 role_not_allowed: a good token whose role may not use this resource.
[[nodiscard]] net::response role_not_allowed(token_role role, std::string_view what);
// 429 rate_limited with Retry-After: the token has used its token-rate-limit for now.
[[nodiscard]] net::response rate_limited(std::chrono::seconds retry_after);

// The HTTP API of API.md: the routes and their handlers. Handlers run on their connection's
// strand and talk to the actors and the store; nothing here blocks.
class api {
 public:
  // `limiter`: token-rate-limit (it admits everything while no limit is set).
  api(const service_config& cfg, instance_store& store, reservation_store& reservations,
      audit_log& audit, reservation_set_store& sets, authenticator& auth, health& h,
      const provider_registry& providers, token_rate_limiter& limiter);

  void install(net::router& r);
  // Only /livez and /readyz (install() includes them).
  void install_operations(net::router& r);
  // The admin listener's routes: /livez, /readyz and GET /nodes (after set_cluster()).
  void install_admin(net::router& r);
  // The cluster this node belongs to (GET /nodes, the leaders in GET /providers); before
  // install() and install_admin().
  void set_cluster(cluster_store& cluster, std::string node_name);

 private:
  // The handler gets the request's token, checked: its id, role and scope.
  using handler_fn = boost::asio::awaitable<net::response> (api::*)(net::request_context&,
                                                                    const verified_token& token);
  // The handler behind a token, within the token's rate limit; a POST or DELETE it answers is
  // recorded in the audit trail before the answer goes out.
  // `needed`: client routes take client and admin tokens; admin routes only admin tokens; a
  // driver token is refused on every route.
  [[nodiscard]] net::handler authenticated(handler_fn fn, token_role needed = token_role::client);
  // Who made the request, and how: an audit record without its status and outcome, its target
  // the path (what a create acted on is its new resource instead).
  [[nodiscard]] static audit_event audit_origin(const net::request_context& ctx,
                                                std::int64_t token_id);
  boost::asio::awaitable<void> audit(const net::request_context& ctx, std::int64_t token_id,
                                     const net::response& res);
  // The sections of the providers served now (a reload may add some).
  [[nodiscard]] section_lookup sections() const {
    return [this](std::string_view name) { return providers_.section(name); };
  }

  boost::asio::awaitable<net::response> create_instance(net::request_context& ctx,
                                                        const verified_token&);
  boost::asio::awaitable<net::response> get_instance(net::request_context& ctx,
                                                     const verified_token&);
  boost::asio::awaitable<net::response> list_instances(net::request_context& ctx,
                                                       const verified_token&);
  boost::asio::awaitable<net::response> delete_instance(net::request_context& ctx,
                                                        const verified_token&);
  boost::asio::awaitable<net::response> list_providers(net::request_context& ctx,
                                                       const verified_token&);
  // GET /tokens and DELETE /tokens/:id, for admin tokens (api_tokens.cpp).
  void install_tokens(net::router& r);
  boost::asio::awaitable<net::response> list_tokens(net::request_context& ctx,
                                                    const verified_token&);
  boost::asio::awaitable<net::response> revoke_token(net::request_context& ctx,
                                                     const verified_token&);
  // The cluster (api_cluster.cpp).
  boost::asio::awaitable<net::response> list_nodes(net::request_context& ctx,
                                                   const verified_token&);
  // Adds who leads each provider's reconciler and janitor to GET /providers' entries.
  boost::asio::awaitable<void> add_leaders(boost::json::array& providers);
  // GET /audit: the audit trail, for admin tokens.
  boost::asio::awaitable<net::response> read_audit(net::request_context& ctx,
                                                   const verified_token&);
  // Capacity reservations (api_reservations.cpp).
  void install_reservations(net::router& r);
  boost::asio::awaitable<net::response> create_reservation(net::request_context& ctx,
                                                           const verified_token&);
  boost::asio::awaitable<net::response> get_reservation(net::request_context& ctx,
                                                        const verified_token&);
  boost::asio::awaitable<net::response> list_reservations(net::request_context& ctx,
                                                          const verified_token&);
  boost::asio::awaitable<net::response> cancel_reservation(net::request_context& ctx,
                                                           const verified_token&);
  boost::asio::awaitable<net::response> cancel_reservations(net::request_context& ctx,
                                                            const verified_token&);
  // Reservation sets (api_reservation_sets.cpp).
  void install_reservation_sets(net::router& r);
  boost::asio::awaitable<net::response> create_reservation_set(net::request_context& ctx,
                                                               const verified_token&);
  boost::asio::awaitable<net::response> get_reservation_set(net::request_context& ctx,
                                                            const verified_token&);
  boost::asio::awaitable<net::response> list_reservation_sets(net::request_context& ctx,
                                                              const verified_token&);
  boost::asio::awaitable<net::response> cancel_reservation_set(net::request_context& ctx,
                                                               const verified_token&);
  // Usage and cost (api_usage.cpp).
  void install_usage(net::router& r);
  boost::asio::awaitable<net::response> get_usage(net::request_context& ctx, const verified_token&);
  // Why POST /instances could not launch into its reservation, as a problem response.
  boost::asio::awaitable<net::response> reservation_refused(instance_request req,
                                                            std::optional<std::int64_t> owner);

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
  audit_log& audit_;
  authenticator& auth_;
  health& health_;
  const provider_registry& providers_;  // SIGHUP may add to it
  token_rate_limiter& limiter_;
  cluster_store* cluster_ = nullptr;
  std::string node_name_;
};

}  // namespace cloudbrain
