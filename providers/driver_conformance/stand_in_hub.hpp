#pragma once

// The conformance kit's side of the protocol: a hub that accepts one driver connection at a
// time on a loopback port, answers its get_config, get_secret and ping on its own (and counts
// them), and lets the checks send operations and wait for their answers.

#include "providers/driver_protocol/protocol.hpp"

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/websocket/stream.hpp>
#include <boost/json/object.hpp>

#include <chrono>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace cloudbrain::driver_conformance {

namespace dp = driver_protocol;
using steady_clock = std::chrono::steady_clock;

// What the stand-in hands the driver for its one provider.
struct provider_settings {
  std::string name = "conformance";
  std::vector<std::string> zones;
  std::string config_version = "c1";
  std::string secret_version = "s1";
  boost::json::object config;
  boost::json::object secret;
};

// One message the driver sent that did not follow the protocol.
struct misstep {
  std::string what;
};

class stand_in_hub {
 public:
  stand_in_hub(boost::asio::io_context& ioc, std::string token, provider_settings settings);

  // Listens on 127.0.0.1 and a free port.
  void listen();
  [[nodiscard]] unsigned short port() const { return port_; }

  // Accepts the driver's next connection and its WebSocket handshake, within `wait`. An error
  // text when the handshake or its token was wrong; nothing when none came.
  struct accepted {
    bool ok = false;
    std::string error;
  };
  boost::asio::awaitable<accepted> accept(std::chrono::milliseconds wait);
  // The first message, which must register; answered `registered` when it does.
  boost::asio::awaitable<dp::parsed<dp::registration>> registration(std::chrono::milliseconds wait,
                                                                    const std::string& driver);

  // Sends an operation (id, versions and deadline added) and waits for its answer until
  // `wait`: the result or error message, or nothing.
  boost::asio::awaitable<std::optional<boost::json::object>> call(
      boost::json::object op, std::chrono::milliseconds deadline, std::chrono::milliseconds wait);
  // Sends without waiting; the id it used.
  std::string send_operation(boost::json::object op, std::chrono::milliseconds deadline);
  boost::asio::awaitable<std::optional<boost::json::object>> answer(const std::string& id,
                                                                    std::chrono::milliseconds wait);
  boost::asio::awaitable<bool> ping(std::chrono::milliseconds wait);

  // True once the connection is gone, waiting up to `wait`.
  boost::asio::awaitable<bool> closed_within(std::chrono::milliseconds wait);
  // Closes the connection at once, without a close handshake (a crash, from the driver's side).
  void drop();
  // Stops answering and pinging: the driver should find the hub silent and drop it.
  void fall_silent() { silent_ = true; }

  provider_settings& settings() { return settings_; }
  [[nodiscard]] std::size_t config_fetches() const { return config_fetches_; }
  [[nodiscard]] std::size_t secret_fetches() const { return secret_fetches_; }
  [[nodiscard]] std::size_t pings_received() const { return pings_received_; }
  [[nodiscard]] const std::vector<misstep>& missteps() const { return missteps_; }
  // Operations answered after their deadline (plus a grace for the way back), or never.
  [[nodiscard]] const std::vector<std::string>& late() const { return late_; }
  [[nodiscard]] bool connected() const { return ws_ != nullptr && open_; }

 private:
  using websocket = boost::beast::websocket::stream<boost::beast::tcp_stream>;

  boost::asio::awaitable<void> read_loop(std::shared_ptr<websocket> ws);
  boost::asio::awaitable<void> write_loop(std::shared_ptr<websocket> ws);
  void send(const boost::json::object& m);
  void note(std::string what) { missteps_.push_back(misstep{std::move(what)}); }

  boost::asio::io_context& ioc_;
  std::string token_;
  provider_settings settings_;
  boost::asio::ip::tcp::acceptor acceptor_;
  unsigned short port_ = 0;
  std::shared_ptr<websocket> ws_;
  bool open_ = false;
  bool silent_ = false;
  std::deque<std::string> outgoing_;
  boost::asio::steady_timer wake_writer_;
  boost::asio::steady_timer wake_waiters_;  // cancelled whenever something arrives
  std::map<std::string, boost::json::object> answers_;
  struct sent_operation {
    steady_clock::time_point at;
    std::chrono::milliseconds deadline;
    std::string type;
  };
  std::map<std::string, sent_operation> sent_;
  std::uint64_t next_id_ = 1;
  std::size_t config_fetches_ = 0;
  std::size_t secret_fetches_ = 0;
  std::size_t pings_received_ = 0;
  std::vector<std::string> pongs_;
  std::vector<misstep> missteps_;
  std::vector<std::string> late_;
};

}  // namespace cloudbrain::driver_conformance
