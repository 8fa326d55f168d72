// One driver's WebSocket connection to the hub, from the handshake to the close: the token, the
// registration, then three loops on the connection's strand (reading, writing, heartbeats)
// until one of them ends. Everything the connection learns goes to the hub actor as messages;
// everything it sends comes from its bounded outbox.
#include "actors/api.hpp"
#include "actors/driver_hub.hpp"
#include "core/log.hpp"
#include "net/problem.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/buffers_to_string.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/json/serialize.hpp>

#include <charconv>

namespace cloudbrain {
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace websocket = beast::websocket;
namespace json = boost::json;
namespace dp = driver_protocol;

namespace {

// Plain TCP, or TLS on an HTTPS listener (wss://).
using websocket_stream = websocket::stream<net::connection_stream>;
constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

// What the three loops of one connection share; touched only on its strand.
struct connection_state {
  std::uint64_t session = 0;
  std::string driver;
  steady_clock::time_point last_heard = steady_clock::now();
  bool closing = false;  // a protocol error was sent: what else arrives is ignored
  std::uint64_t pings = 0;
  std::string end;  // why the connection ended, for the log
};

std::string describe(const beast::error_code& ec) {
  if (ec == websocket::error::closed) return "closed by the driver";
  if (ec == websocket::error::message_too_big) return "a message over the size limit (1009)";
  if (ec == websocket::error::bad_frame_payload) return "a text message that is not UTF-8";
  if (ec == asio::error::operation_aborted) return "cancelled";
  return ec.message();
}

std::string endpoint_text(net::connection_stream& s) {
  beast::error_code ec;
  const auto ep = s.tcp().socket().remote_endpoint(ec);
  if (ec) return "unknown";
  return ep.address().to_string() + ":" + std::to_string(ep.port());
}

// One message within `dl`, as text; timed_out when none came.
asio::awaitable<std::pair<beast::error_code, std::string>> read_within(websocket_stream& ws,
                                                                       deadline dl) {
  using namespace asio::experimental::awaitable_operators;
  beast::flat_buffer buffer;
  asio::steady_timer timer(co_await asio::this_coro::executor, dl);
  auto outcome = co_await (ws.async_read(buffer, use_tuple) || timer.async_wait(use_tuple));
  if (outcome.index() == 1) co_return std::pair{beast::error_code(asio::error::timed_out), ""};
  auto [ec, n] = std::get<0>(outcome);
  if (ec) co_return std::pair{ec, std::string()};
  if (!ws.got_text()) co_return std::pair{beast::error_code(websocket::error::bad_opcode), ""};
  co_return std::pair{beast::error_code{}, beast::buffers_to_string(buffer.data())};
}

// Sends `message` and closes with `code`: the end of a connection that never registered.
asio::awaitable<void> say_and_close(websocket_stream& ws, const json::object& message,
                                    websocket::close_code code, std::string_view reason) {
  const std::string text = json::serialize(message);
  auto [ec, n] = co_await ws.async_write(asio::buffer(text), use_tuple);
  if (!ec) {
    co_await ws.async_close(websocket::close_reason(code, reason), use_tuple);
  }
}

void protocol_error(driver_outbox& outbox, connection_state& st, const std::string& reason) {
  log::warn("driver protocol error",
            {{"session", st.session}, {"driver", st.driver}, {"error", reason}});
  st.closing = true;
  const bool queued = outbox.try_send(
      boost::system::error_code{},
      driver_outgoing{
          json::serialize(dp::protocol_error_message(reason)),
          websocket::close_reason(websocket::close_code::protocol_error, "protocol error")});
  if (!queued) outbox.close();
}

asio::awaitable<void> read_loop(driver_hub& hub, websocket_stream& ws, driver_outbox& outbox,
                                connection_state& st) {
  beast::flat_buffer buffer;
  for (;;) {
    buffer.clear();
    auto [ec, n] = co_await ws.async_read(buffer, use_tuple);
    if (ec) {
      if (st.end.empty()) st.end = describe(ec);
      co_return;
    }
    st.last_heard = steady_clock::now();
    if (st.closing) continue;
    if (!ws.got_text()) {
      protocol_error(outbox, st, "messages are JSON text; a binary message is not part of it");
      continue;
    }
    auto m = dp::parse_message(beast::buffers_to_string(buffer.data()), dp::sender::driver);
    if (!m) {
      protocol_error(outbox, st, m.error().reason);
      continue;
    }
    if (m->type == "ping") {
      const std::string id(m->fields.at("id").as_string());
      if (!outbox.try_send(boost::system::error_code{},
                           driver_outgoing{json::serialize(dp::pong_message(id)), {}})) {
        st.end = "its outgoing queue is full (the driver reads too slowly)";
        co_return;
      }
      continue;
    }
    if (m->type == "pong") continue;
    if (m->type == "register") {
      protocol_error(outbox, st, "register comes once, first; this connection is registered");
      continue;
    }
    if (!hub.tell(hub_incoming{st.session, std::move(*m)})) {
      st.end = "the hub is overloaded";
      co_return;
    }
  }
}

asio::awaitable<void> write_loop(websocket_stream& ws, driver_outbox& outbox,
                                 connection_state& st) {
  for (;;) {
    auto [ec, out] = co_await outbox.async_receive(use_tuple);
    if (ec) {
      // The hub gave the connection up (its outgoing queue overflowed, or it was dropped).
      if (st.end.empty()) st.end = "dropped by the hub";
      co_await ws.async_close(
          websocket::close_reason(websocket::close_code::try_again_later, "dropped"), use_tuple);
      co_return;
    }
    if (!out.text.empty()) {
      auto [write_ec, n] = co_await ws.async_write(asio::buffer(out.text), use_tuple);
      if (write_ec) {
        if (st.end.empty()) st.end = "writing failed: " + write_ec.message();
        co_return;
      }
    }
    if (out.close) {
      if (st.end.empty()) {
        st.end =
            "closed by the hub: " + std::string(out.close->reason.data(), out.close->reason.size());
      }
      co_await ws.async_close(*out.close, use_tuple);
      co_return;
    }
  }
}

asio::awaitable<void> heartbeat_loop(driver_outbox& outbox, connection_state& st,
                                     std::chrono::milliseconds every,
                                     std::chrono::milliseconds silence) {
  asio::steady_timer timer(co_await asio::this_coro::executor);
  for (;;) {
    timer.expires_after(every);
    auto [ec] = co_await timer.async_wait(use_tuple);
    if (ec) co_return;
    const auto quiet = steady_clock::now() - st.last_heard;
    if (quiet > silence) {
      st.end =
          "silent for " +
          std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(quiet).count()) +
          " ms (heartbeat timeout)";
      co_return;
    }
    const std::string id = "hb-" + std::to_string(++st.pings);
    if (!outbox.try_send(boost::system::error_code{},
                         driver_outgoing{json::serialize(dp::ping_message(id)), {}})) {
      st.end = "its outgoing queue is full (the driver reads too slowly)";
      co_return;
    }
  }
}

}  // namespace

void driver_hub::install(net::router& r) {
  r.add_upgrade(
      "/drivers/connect",
      [this](net::request_context& ctx, net::connection_stream stream) {
        return serve_connection(ctx, std::move(stream));
      },
      "drivers.connect", [this](net::request_context& ctx) { return gate(ctx); });
}

asio::awaitable<std::optional<net::response>> driver_hub::gate(net::request_context& ctx) {
  auto checking = check_token(auth_, ctx.req);
  auto checked = co_await std::move(checking);
  if (auto* refused = std::get_if<net::response>(&checked)) co_return std::move(*refused);
  const auto token = std::get<verified_token>(checked);
  if (token.role != token_role::driver) {
    co_return role_not_allowed(token.role,
                               "may not connect a driver; make a driver token with `cloudbrain "
                               "token create --role driver`");
  }
  if (closing_) co_return net::problem_from_error(error(errc::shutting_down));
  if (connecting_->load() >= cfg_.max_connections) {
    auto res = net::problem(net::http::status::service_unavailable, "overloaded",
                            "Service overloaded", "The hub has too many driver connections.");
    res.set(net::http::field::retry_after, "5");
    co_return res;
  }
  co_return std::nullopt;
}

asio::awaitable<void> driver_hub::serve_connection(net::request_context& ctx,
                                                   net::connection_stream stream) {
  // Shared with the counter, not a reference into the hub: a connection still suspended when
  // the process stops is destroyed with the io_context, after the hub.
  connecting_->fetch_add(1);
  struct count_down {
    std::shared_ptr<std::atomic<std::size_t>> n;
    ~count_down() { n->fetch_sub(1); }
  } counted{connecting_};
  const std::string remote = endpoint_text(stream);
  // The gate checked the token; this reads it again (from memory) for its id.
  auto checking = check_token(auth_, ctx.req);
  auto checked = co_await std::move(checking);
  const auto* token = std::get_if<verified_token>(&checked);
  if (token == nullptr || token->role != token_role::driver) co_return;
  const std::int64_t token_id = token->id;

  websocket_stream ws(std::move(stream));
  ws.read_message_max(cfg_.max_message_bytes);
  websocket::permessage_deflate no_compression;
  no_compression.server_enable = false;
  no_compression.client_enable = false;
  ws.set_option(no_compression);
  // Handshakes (opening and closing) within handshake_timeout; idleness is the heartbeats'.
  ws.set_option(websocket::stream_base::timeout{cfg_.handshake_timeout,
                                                websocket::stream_base::none(), false});
  ws.set_option(websocket::stream_base::decorator(
      [request_id = ctx.request_id](websocket::response_type& res) {
        res.set(net::http::field::server, "cloudbrain");
        res.set("X-Request-ID", request_id);
      }));
  if (auto [ec] = co_await ws.async_accept(ctx.req, use_tuple); ec) {
    log::warn("driver handshake failed", {{"remote", remote}, {"error", ec.message()}});
    co_return;
  }
  ws.text(true);

  // The first message registers, within the handshake timeout.
  auto [read_ec, text] = co_await read_within(ws, after(cfg_.handshake_timeout));
  if (read_ec) {
    log::warn(
        "driver connection closed before it registered",
        {{"remote", remote},
         {"error", read_ec == asio::error::timed_out ? std::string("no register message in time")
                                                     : describe(read_ec)}});
    if (read_ec == asio::error::timed_out || read_ec == websocket::error::bad_opcode) {
      const char* why = read_ec == asio::error::timed_out
                            ? "no register message within the handshake timeout"
                            : "messages are JSON text; a binary message is not part of it";
      co_await say_and_close(ws, dp::protocol_error_message(why),
                             websocket::close_code::protocol_error, "protocol error");
    }
    co_return;
  }
  auto first = dp::parse_message(text, dp::sender::driver);
  if (!first || first->type != "register") {
    const std::string why = !first ? first.error().reason : "the first message must be register";
    log::warn("driver protocol error before registering", {{"remote", remote}, {"error", why}});
    co_await say_and_close(ws, dp::protocol_error_message(why),
                           websocket::close_code::protocol_error, "protocol error");
    co_return;
  }
  auto registration = dp::registration_from(first->fields);
  if (!registration) {
    log::warn("driver registration refused",
              {{"remote", remote}, {"reason", registration.error().reason}});
    co_await say_and_close(
        ws, dp::to_json(dp::refusal{"invalid_registration", registration.error().reason}),
        websocket::close_code::policy_error, "registration refused");
    co_return;
  }

  auto ex = co_await asio::this_coro::executor;
  auto outbox = std::make_shared<driver_outbox>(
      ex, static_cast<std::size_t>(registration->max_in_flight) + 64);
  auto asking = ask<driver_registration>(
      *this,
      [&](reply_to<driver_registration> r) {
        return hub_message{hub_register{*registration, outbox, remote, token_id, std::move(r)}};
      },
      after(cfg_.handshake_timeout));
  auto answer = co_await std::move(asking);
  if (!answer) {
    log::warn("driver registration not answered", {{"remote", remote},
                                                   {"driver", registration->driver},
                                                   {"error", answer.error().message()}});
    co_await say_and_close(ws, dp::to_json(dp::refusal{"overloaded", "try again later"}),
                           websocket::close_code::try_again_later, "hub busy");
    co_return;
  }
  if (auto* refused = std::get_if<dp::refusal>(&*answer)) {
    log::warn("driver registration refused", {{"remote", remote},
                                              {"driver", registration->driver},
                                              {"reason", refused->reason},
                                              {"detail", refused->message}});
    co_await say_and_close(ws, dp::to_json(*refused), websocket::close_code::policy_error,
                           "registration refused");
    co_return;
  }
  const auto& accepted = std::get<dp::acceptance>(*answer);
  connection_state st;
  st.driver = registration->driver;
  std::string_view number = accepted.session;
  number.remove_prefix(2);  // "s-"
  std::from_chars(number.data(), number.data() + number.size(), st.session);

  const std::string hello = json::serialize(dp::to_json(accepted));
  if (auto [ec, n] = co_await ws.async_write(asio::buffer(hello), use_tuple); ec) {
    st.end = "writing failed: " + ec.message();
  } else {
    using namespace asio::experimental::awaitable_operators;
    co_await (read_loop(*this, ws, *outbox, st) || write_loop(ws, *outbox, st) ||
              heartbeat_loop(*outbox, st, accepted.heartbeat_interval, accepted.heartbeat_timeout));
  }
  // Past the mailbox: the hub must hear of every closed connection, to send its operations
  // elsewhere.
  asio::post(strand(), [this, closed = hub_closed{st.session, st.end.empty() ? "closed" : st.end}] {
    try {
      on_closed(closed);
    } catch (const std::exception& e) {
      log::error("forgetting a driver connection failed", {{"error", e.what()}});
    }
  });
  beast::error_code ignored;
  beast::get_lowest_layer(ws).socket().close(ignored);
}

}  // namespace cloudbrain
