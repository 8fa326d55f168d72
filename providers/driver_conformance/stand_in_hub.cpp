#include "providers/driver_conformance/stand_in_hub.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/buffers_to_string.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/json/serialize.hpp>

#include <algorithm>

namespace cloudbrain::driver_conformance {
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace json = boost::json;
using tcp = asio::ip::tcp;

namespace {

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);
// The way back: an answer this much after its deadline is late.
constexpr auto grace = std::chrono::milliseconds(1000);

}  // namespace

stand_in_hub::stand_in_hub(asio::io_context& ioc, std::string token, provider_settings settings)
    : ioc_(ioc),
      token_(std::move(token)),
      settings_(std::move(settings)),
      acceptor_(ioc),
      wake_writer_(ioc, steady_clock::time_point::max()),
      wake_waiters_(ioc, steady_clock::time_point::max()) {}

void stand_in_hub::listen() {
  const tcp::endpoint here(asio::ip::make_address("127.0.0.1"), 0);
  acceptor_.open(here.protocol());
  acceptor_.set_option(asio::socket_base::reuse_address(true));
  acceptor_.bind(here);
  acceptor_.listen();
  port_ = acceptor_.local_endpoint().port();
}

asio::awaitable<stand_in_hub::accepted> stand_in_hub::accept(std::chrono::milliseconds wait) {
  using namespace asio::experimental::awaitable_operators;
  drop();
  silent_ = false;
  asio::steady_timer limit(ioc_, wait);
  auto got = co_await (acceptor_.async_accept(use_tuple) || limit.async_wait(use_tuple));
  if (got.index() == 1) co_return accepted{false, ""};
  auto [ec, socket] = std::get<0>(std::move(got));
  if (ec) co_return accepted{false, "accepting: " + ec.message()};

  beast::tcp_stream stream(std::move(socket));
  beast::flat_buffer buffer;
  http::request<http::string_body> req;
  stream.expires_after(std::chrono::seconds(10));
  if (auto [read_ec, n] = co_await http::async_read(stream, buffer, req, use_tuple); read_ec) {
    co_return accepted{false, "reading its upgrade request: " + read_ec.message()};
  }
  const auto refuse = [&](http::status status, std::string why) -> asio::awaitable<accepted> {
    http::response<http::string_body> res{status, 11};
    res.body() = why;
    res.prepare_payload();
    co_await http::async_write(stream, res, use_tuple);
    co_return accepted{false, std::move(why)};
  };
  if (req.target() != "/drivers/connect") {
    co_return co_await refuse(
        http::status::not_found,
        "it connects to " + std::string(req.target().substr(0, 100)) + ", not /drivers/connect");
  }
  if (!beast::websocket::is_upgrade(req)) {
    co_return co_await refuse(http::status::upgrade_required, "it does not ask for a WebSocket");
  }
  const auto auth = req.find(http::field::authorization);
  if (auth == req.end() || auth->value() != "token " + token_) {
    co_return co_await refuse(http::status::unauthorized,
                              "it does not present its token as 'Authorization: token ...'");
  }
  if (const auto ext = req.find("Sec-WebSocket-Extensions"); ext != req.end()) {
    // Offering permessage-deflate is allowed; the hub declines it, as this stand-in does.
    (void)ext;
  }
  auto ws = std::make_shared<websocket>(std::move(stream));
  beast::get_lowest_layer(*ws).expires_never();
  ws->read_message_max(dp::max_message_bytes);
  ws->set_option(beast::websocket::stream_base::timeout{
      std::chrono::seconds(10), beast::websocket::stream_base::none(), false});
  if (auto [accept_ec] = co_await ws->async_accept(req, use_tuple); accept_ec) {
    co_return accepted{false, "the WebSocket handshake failed: " + accept_ec.message()};
  }
  ws->text(true);
  ws_ = ws;
  open_ = true;
  co_return accepted{true, ""};
}

asio::awaitable<dp::parsed<dp::registration>> stand_in_hub::registration(
    std::chrono::milliseconds wait, const std::string& driver) {
  using namespace asio::experimental::awaitable_operators;
  auto ws = ws_;
  if (!ws) co_return dp::violation{"no connection"};
  beast::flat_buffer buffer;
  asio::steady_timer limit(ioc_, wait);
  auto got = co_await (ws->async_read(buffer, use_tuple) || limit.async_wait(use_tuple));
  if (got.index() == 1) co_return dp::violation{"no message within the handshake timeout"};
  if (auto [ec, n] = std::get<0>(got); ec) {
    co_return dp::violation{"the connection ended: " + ec.message()};
  }
  if (!ws->got_text()) co_return dp::violation{"the first message is not text"};
  auto m = dp::parse_message(beast::buffers_to_string(buffer.data()), dp::sender::driver);
  if (!m) co_return m.error();
  if (m->type != "register") co_return dp::violation{"the first message is " + m->type};
  auto reg = dp::registration_from(m->fields);
  if (!reg) co_return reg.error();
  if (reg->driver != driver) {
    co_return dp::violation{"it registers as '" + reg->driver + "', not '" + driver + "'"};
  }
  if (reg->protocol_version != dp::version) {
    co_return dp::violation{"it speaks protocol version " + std::to_string(reg->protocol_version)};
  }
  dp::acceptance a;
  a.session = "conformance";
  a.providers = {
      {settings_.name, settings_.zones, settings_.config_version, settings_.secret_version}};
  a.heartbeat_interval = std::chrono::milliseconds(1000);
  a.heartbeat_timeout = std::chrono::milliseconds(3000);
  const std::string hello = json::serialize(dp::to_json(a));
  if (auto [ec, n] = co_await ws->async_write(asio::buffer(hello), use_tuple); ec) {
    co_return dp::violation{"writing registered failed: " + ec.message()};
  }
  asio::co_spawn(ioc_, read_loop(ws), asio::detached);
  asio::co_spawn(ioc_, write_loop(ws), asio::detached);
  co_return std::move(*reg);
}

void stand_in_hub::send(const json::object& m) {
  outgoing_.push_back(json::serialize(m));
  wake_writer_.cancel();
}

asio::awaitable<void> stand_in_hub::write_loop(std::shared_ptr<websocket> ws) {
  while (ws == ws_ && open_) {
    if (outgoing_.empty()) {
      co_await wake_writer_.async_wait(use_tuple);
      continue;
    }
    const std::string text = std::move(outgoing_.front());
    outgoing_.pop_front();
    if (auto [ec, n] = co_await ws->async_write(asio::buffer(text), use_tuple); ec) co_return;
  }
}

asio::awaitable<void> stand_in_hub::read_loop(std::shared_ptr<websocket> ws) {
  beast::flat_buffer buffer;
  for (;;) {
    buffer.clear();
    auto [ec, n] = co_await ws->async_read(buffer, use_tuple);
    if (ec) {
      if (ws == ws_) open_ = false;
      wake_waiters_.cancel();
      wake_writer_.cancel();
      co_return;
    }
    if (ws != ws_ || silent_) continue;
    if (!ws->got_text()) {
      note("it sent a binary message");
      continue;
    }
    auto m = dp::parse_message(beast::buffers_to_string(buffer.data()), dp::sender::driver);
    if (!m) {
      note("it sent a malformed message: " + m.error().reason);
      continue;
    }
    const std::string id =
        m->fields.contains("id") ? std::string(m->fields.at("id").as_string()) : "";
    if (m->type == "register") {
      note("it sent register again on a registered connection");
    } else if (m->type == "get_config" || m->type == "get_secret") {
      const bool secret = m->type == "get_secret";
      ++(secret ? secret_fetches_ : config_fetches_);
      const std::string provider(m->fields.at("provider").as_string());
      if (provider != settings_.name) {
        note("it asked for provider '" + provider.substr(0, 64) + "', which it does not serve");
        send(dp::error_message(id, dp::failure{dp::error_kind::not_found, "no such provider", {}}));
      } else {
        const dp::settings_answer a{id, provider,
                                    secret ? settings_.secret_version : settings_.config_version,
                                    secret ? settings_.secret : settings_.config};
        send(dp::settings_message(secret ? "secret" : "config", a));
      }
    } else if (m->type == "ping") {
      ++pings_received_;
      send(dp::pong_message(id));
    } else if (m->type == "pong") {
      pongs_.push_back(id);
    } else {  // result or error
      const auto sent = sent_.find(id);
      if (sent == sent_.end()) {
        note("it answered an operation that was never sent (" + id.substr(0, 64) + ")");
        continue;
      }
      if (answers_.contains(id)) note("it answered " + id + " twice");
      const auto took = steady_clock::now() - sent->second.at;
      if (took > sent->second.deadline + grace) {
        late_.push_back(
            sent->second.type + " " + id + " answered after " +
            std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(took).count()) +
            " ms, its deadline " + std::to_string(sent->second.deadline.count()) + " ms");
      }
      if (m->type == "error" && !dp::failure_from(m->fields.at("error"))) {
        note("its error for " + id +
             " is malformed: " + dp::failure_from(m->fields.at("error")).error().reason);
      }
      answers_[id] = std::move(m->fields);
    }
    wake_waiters_.cancel();
  }
}

std::string stand_in_hub::send_operation(json::object op, std::chrono::milliseconds deadline) {
  const std::string id = "k-" + std::to_string(next_id_++);
  op["id"] = id;
  if (!op.contains("provider")) op["provider"] = settings_.name;
  op["deadline_ms"] = deadline.count();
  op["config_version"] = settings_.config_version;
  op["secret_version"] = settings_.secret_version;
  const auto* type = op.if_contains("type");
  sent_[id] = sent_operation{steady_clock::now(), deadline,
                             type && type->is_string() ? std::string(type->as_string()) : "?"};
  send(op);
  return id;
}

asio::awaitable<std::optional<json::object>> stand_in_hub::answer(const std::string& id,
                                                                  std::chrono::milliseconds wait) {
  using namespace asio::experimental::awaitable_operators;
  const auto until = steady_clock::now() + wait;
  for (;;) {
    if (auto it = answers_.find(id); it != answers_.end()) co_return it->second;
    if (!open_ || steady_clock::now() >= until) co_return std::nullopt;
    asio::steady_timer limit(ioc_, until);
    co_await (wake_waiters_.async_wait(use_tuple) || limit.async_wait(use_tuple));
  }
}

asio::awaitable<std::optional<json::object>> stand_in_hub::call(json::object op,
                                                                std::chrono::milliseconds deadline,
                                                                std::chrono::milliseconds wait) {
  const std::string id = send_operation(std::move(op), deadline);
  co_return co_await answer(id, wait);
}

asio::awaitable<bool> stand_in_hub::ping(std::chrono::milliseconds wait) {
  using namespace asio::experimental::awaitable_operators;
  const std::string id = "kp-" + std::to_string(next_id_++);
  send(dp::ping_message(id));
  const auto until = steady_clock::now() + wait;
  for (;;) {
    if (std::find(pongs_.begin(), pongs_.end(), id) != pongs_.end()) co_return true;
    if (!open_ || steady_clock::now() >= until) co_return false;
    asio::steady_timer limit(ioc_, until);
    co_await (wake_waiters_.async_wait(use_tuple) || limit.async_wait(use_tuple));
  }
}

asio::awaitable<bool> stand_in_hub::closed_within(std::chrono::milliseconds wait) {
  using namespace asio::experimental::awaitable_operators;
  const auto until = steady_clock::now() + wait;
  while (open_) {
    if (steady_clock::now() >= until) co_return false;
    asio::steady_timer limit(ioc_, until);
    co_await (wake_waiters_.async_wait(use_tuple) || limit.async_wait(use_tuple));
  }
  co_return true;
}

void stand_in_hub::drop() {
  if (ws_) {
    beast::error_code ignored;
    beast::get_lowest_layer(*ws_).socket().shutdown(tcp::socket::shutdown_both, ignored);
    beast::get_lowest_layer(*ws_).socket().close(ignored);
  }
  ws_.reset();
  open_ = false;
  outgoing_.clear();
  sent_.clear();  // what was in flight is the driver's to forget; checks send it again
  wake_writer_.cancel();
  wake_waiters_.cancel();
}

}  // namespace cloudbrain::driver_conformance
