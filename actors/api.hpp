#pragma once

#include "actors/authenticator.hpp"
#include "actors/health.hpp"
#include "actors/instance_store.hpp"
#include "actors/provider_actor.hpp"
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

// Checks a POST /instances body against API.md and the configured providers.
[[nodiscard]] std::pair<instance_request, validation> parse_instance_request(
    std::string_view body, const service_config& cfg);

// The token presented by `Authorization: token X` or Basic with user "token", if any.
[[nodiscard]] std::optional<std::string> presented_token(const net::request& req);

// The HTTP API of API.md: the routes and their handlers. Handlers run on their connection's
// strand and talk to the actors and the store; nothing here blocks.
class api {
 public:
  api(const service_config& cfg, instance_store& store, authenticator& auth, health& h,
      std::map<std::string, provider_actor*> providers);

  void install(net::router& r);

 private:
  using handler_fn = boost::asio::awaitable<net::response> (api::*)(net::request_context&,
                                                                    std::int64_t token_id);
  [[nodiscard]] net::handler authenticated(handler_fn fn);

  boost::asio::awaitable<net::response> create_instance(net::request_context& ctx, std::int64_t);
  boost::asio::awaitable<net::response> get_instance(net::request_context& ctx, std::int64_t);
  boost::asio::awaitable<net::response> list_instances(net::request_context& ctx, std::int64_t);
  boost::asio::awaitable<net::response> delete_instance(net::request_context& ctx, std::int64_t);
  boost::asio::awaitable<net::response> list_providers(net::request_context& ctx, std::int64_t);
  boost::asio::awaitable<net::response> livez(net::request_context& ctx);
  boost::asio::awaitable<net::response> readyz(net::request_context& ctx);

  [[nodiscard]] std::string location_of(const net::request_context& ctx,
                                        const std::string& id) const;

  const service_config& cfg_;
  instance_store& store_;
  authenticator& auth_;
  health& health_;
  std::map<std::string, provider_actor*> providers_;
};

}  // namespace cloudbrain
