#pragma once

#include "actors/authenticator.hpp"
#include "actors/health.hpp"
#include "core/actor.hpp"
#include "net/router.hpp"
#include "providers/driver_link.hpp"
#include "providers/driver_protocol/protocol.hpp"

#include <boost/asio/experimental/concurrent_channel.hpp>
#include <boost/beast/websocket/rfc6455.hpp>
#include <boost/json/object.hpp>

#include <atomic>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <variant>
#include <vector>

namespace cloudbrain {

struct driver_hub_config {
  // How often each side pings; a connection silent for three of these is dropped.
  std::chrono::milliseconds heartbeat_interval{10'000};
  // The WebSocket handshake, then the register message, must each come within this.
  std::chrono::milliseconds handshake_timeout{10'000};
  std::size_t max_message_bytes = driver_protocol::max_message_bytes;
  std::size_t max_connections = 256;
  // Operations waiting for a connection, per provider.
  std::size_t max_queued = 4096;
};

// A message on its way to one driver connection; `close`: close the connection after it.
struct driver_outgoing {
  std::string text;
  std::optional<boost::beast::websocket::close_reason> close;
};
using driver_outbox =
    boost::asio::experimental::concurrent_channel<void(boost::system::error_code, driver_outgoing)>;

class driver_hub;

// remote_port for one attached provider: what its external driver sees of the connections.
class driver_hub_port final : public providers::remote_port {
 public:
  driver_hub_port(driver_hub& hub, std::string provider)
      : hub_(hub), provider_(std::move(provider)) {}

  boost::asio::awaitable<result<boost::json::object>> call(boost::json::object operation,
                                                           deadline dl) override;
  [[nodiscard]] std::size_t capacity() const override { return capacity_.load(); }
  [[nodiscard]] std::size_t connections() const override { return connections_.load(); }
  [[nodiscard]] bool declares(std::string_view capability) const override;
  void on_capacity_change(std::function<void()> wake) override;
  void detach() override;

  // On the hub's strand, whenever the connections serving the provider change.
  void update(std::size_t capacity, std::size_t connections, unsigned capabilities);

 private:
  driver_hub& hub_;
  const std::string provider_;
  std::atomic<std::size_t> capacity_{0};
  std::atomic<std::size_t> connections_{0};
  std::atomic<unsigned> capabilities_{0};  // bit (1 << capability) for each declared one
  std::mutex wake_mutex_;
  std::function<void()> wake_;
};

// What the hub answers a registration with.
using driver_registration = std::variant<driver_protocol::acceptance, driver_protocol::refusal>;

struct hub_attach {
  std::shared_ptr<driver_hub_port> port;
  providers::remote_provider provider;
};
struct hub_detach {
  std::string provider;
  const driver_hub_port* port;
};
struct hub_call {
  std::string provider;
  boost::json::object operation;
  deadline dl;
  reply_to<boost::json::object> reply;
};
struct hub_register {
  driver_protocol::registration registration;
  std::shared_ptr<driver_outbox> outbox;
  std::string remote;
  std::int64_t token_id = 0;
  reply_to<driver_registration> reply;
};
// A result, error, get_config or get_secret from a registered connection.
struct hub_incoming {
  std::uint64_t session = 0;
  driver_protocol::message message;
};
struct hub_closed {
  std::uint64_t session = 0;
  std::string why;
};
using hub_message =
    std::variant<hub_attach, hub_detach, hub_call, hub_register, hub_incoming, hub_closed>;

// The driver hub: out-of-tree drivers dial in at GET /drivers/connect (a WebSocket, with a
// token of the driver role) and register under a driver name; the hub then serves them the
// external providers whose `driver` is that name. It pushes the operations of those providers'
// drivers down the connections, at most each connection's max_in_flight at once, and hands the
// answers back; it answers the drivers' get_config / get_secret for their own providers only.
// Operations wait in a bounded queue while no connection serves their provider, and those in
// flight on a connection that drops are sent again, same id and idempotency key, on the next.
// The protocol is docs/driver-protocol.md.
class driver_hub : public actor<driver_hub, hub_message>, public providers::driver_link {
 public:
  driver_hub(boost::asio::any_io_executor ex, authenticator& auth, health& status,
             driver_hub_config cfg);

  // providers::driver_link; from any thread.
  [[nodiscard]] std::shared_ptr<providers::remote_port> attach(
      providers::remote_provider p) override;

  // GET /drivers/connect.
  void install(net::router& r);
  void start();
  // Shutdown: refuses new registrations and closes every connection ("going away").
  void close_connections();

  void handle(hub_message&& m);
  void on_restart() {}

  [[nodiscard]] std::size_t connections() const { return sessions_count_.load(); }

  // For driver_hub_port.
  boost::asio::awaitable<result<boost::json::object>> call(std::string provider,
                                                           boost::json::object op, deadline dl);
  void detach(std::string provider, const driver_hub_port* port);

 private:
  struct provider_entry {
    providers::remote_provider info;
    std::string config_version;
    std::string secret_version;
    std::shared_ptr<driver_hub_port> port;
    std::deque<std::uint64_t> queue;  // operations waiting for a connection, oldest first
  };
  [[nodiscard]] static bool may_serve(const std::string& driver, std::int64_t token_id,
                                      const provider_entry& p);
  struct session_entry {
    std::uint64_t id = 0;
    std::string driver;
    int max_in_flight = 1;
    unsigned capabilities = 0;
    std::shared_ptr<driver_outbox> outbox;
    std::set<std::uint64_t> in_flight;
    std::string remote;
    std::int64_t token_id = 0;
    std::uint64_t sent = 0;
  };
  struct pending_operation {
    std::string provider;
    boost::json::object operation;
    driver_protocol::capability needs = driver_protocol::capability::instances;
    deadline dl;
    reply_to<boost::json::object> reply;
    std::uint64_t session = 0;  // 0: waiting in its provider's queue
    unsigned sends = 0;
  };

  // The WebSocket connection of one driver, from handshake to close (driver_session.cpp).
  boost::asio::awaitable<void> serve_connection(net::request_context& ctx,
                                                net::connection_stream stream);
  boost::asio::awaitable<std::optional<net::response>> gate(net::request_context& ctx);

  void on_attach(hub_attach&& a);
  void on_detach(const hub_detach& d);
  void on_call(hub_call&& c);
  void on_register(hub_register&& r);
  void on_incoming(hub_incoming&& in);
  void on_closed(const hub_closed& c);
  void answer_settings(session_entry& s, const driver_protocol::message& m);

  // Sends what it can of `provider`'s queue to its connections.
  void dispatch(const std::string& provider);
  void dispatch_all();
  // Drops a connection: its operations go back to their queues.
  void drop(std::uint64_t session, const std::string& why);
  bool send_to(session_entry& s, std::string text);
  void refresh(const std::string& driver);
  void refresh_provider(provider_entry& p);
  boost::asio::awaitable<void> sweep_loop();
  void sweep();

  authenticator& auth_;
  health& health_;
  const driver_hub_config cfg_;
  std::string version_salt_;
  std::map<std::string, provider_entry> providers_;
  std::map<std::uint64_t, session_entry> sessions_;
  std::map<std::uint64_t, pending_operation> operations_;
  std::uint64_t next_operation_ = 1;
  std::uint64_t next_session_ = 1;
  std::atomic<bool> closing_{false};
  std::atomic<std::size_t> sessions_count_{0};
  // WebSocket connections not yet closed.
  std::shared_ptr<std::atomic<std::size_t>> connecting_ =
      std::make_shared<std::atomic<std::size_t>>(0);
};

}  // namespace cloudbrain
