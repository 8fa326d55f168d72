#include "providers/driver_sdk/driver_sdk.hpp"

#include "core/backoff.hpp"
#include "core/log.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/experimental/channel.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/buffers_to_string.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/url/parse.hpp>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <sstream>

namespace cloudbrain::driver_sdk {
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace websocket = beast::websocket;
namespace json = boost::json;
namespace dp = driver_protocol;
using steady_clock = std::chrono::steady_clock;

namespace {

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);
using socket_stream = websocket::stream<beast::tcp_stream>;
using outbox_channel = asio::experimental::channel<void(boost::system::error_code, std::string)>;

failure not_declared(std::string_view what) {
  return failure{error_kind::invalid, "this driver does not offer " + std::string(what), {}};
}

struct ws_url {
  std::string host;
  std::string port;
  std::string target;
};

std::optional<ws_url> parse_url(std::string_view text, std::string& error) {
  auto u = boost::urls::parse_uri(text);
  if (!u) {
    error = "--url is not a URL";
    return std::nullopt;
  }
  if (u->scheme() != "ws") {
    error =
        "--url must be ws://HOST:PORT/drivers/connect (wss:// is not supported: reach the "
        "hub over a private network or a TLS tunnel)";
    return std::nullopt;
  }
  ws_url out;
  out.host = u->host();
  out.port = u->has_port() ? std::string(u->port()) : "80";
  out.target = u->encoded_path().empty() ? "/" : std::string(u->encoded_path());
  if (out.host.empty()) {
    error = "--url has no host";
    return std::nullopt;
  }
  return out;
}

// A one-shot event that any number of coroutines of one strand wait for.
class event {
 public:
  explicit event(asio::any_io_executor ex) : timer_(ex, steady_clock::time_point::max()) {}
  void set() {
    set_ = true;
    timer_.cancel();
  }
  // True once set; false when `dl` came first.
  asio::awaitable<bool> wait_until(steady_clock::time_point dl) {
    using namespace asio::experimental::awaitable_operators;
    while (!set_) {
      if (steady_clock::now() >= dl) co_return false;
      asio::steady_timer limit(co_await asio::this_coro::executor, dl);
      co_await (timer_.async_wait(use_tuple) || limit.async_wait(use_tuple));
    }
    co_return true;
  }

 private:
  asio::steady_timer timer_;
  bool set_ = false;
};

// A get_config or get_secret in progress; the operations that need it wait on `done`.
struct settings_fetch {
  explicit settings_fetch(asio::any_io_executor ex) : done(std::move(ex)) {}
  std::string key;  // type + provider
  event done;
  std::optional<dp::settings_answer> answer;
  failure problem{error_kind::transient, "the connection was lost", {}};
};

struct provider_settings {
  std::string config_version;
  std::string secret_version;
  json::object config;
  json::object secret;
  bool has_config = false;
  bool has_secret = false;
};

// One connection to the hub, shared with the operations it started (which may outlive it).
struct session {
  session(asio::any_io_executor ex, std::size_t outbox_size) : ws(ex), outbox(ex, outbox_size) {}
  socket_stream ws;
  outbox_channel outbox;
  bool open = true;
  dp::acceptance accepted;
  steady_clock::time_point last_heard = steady_clock::now();
  std::map<std::string, std::shared_ptr<settings_fetch>> by_id;
  std::map<std::string, std::shared_ptr<settings_fetch>> by_key;
  std::uint64_t next_request = 1;
  std::string end;

  bool send(const json::object& m) {
    return open && outbox.try_send(boost::system::error_code{}, json::serialize(m));
  }
};

class client {
 public:
  client(driver& d, options o) : driver_(d), opts_(std::move(o)), rng_(std::random_device{}()) {}

  asio::awaitable<void> serve();

 private:
  // Connects, registers and serves until the connection ends; true when it registered.
  asio::awaitable<bool> connect_once(const ws_url& url);
  asio::awaitable<void> read_loop(std::shared_ptr<session> s);
  asio::awaitable<void> write_loop(std::shared_ptr<session> s);
  asio::awaitable<void> heartbeat_loop(std::shared_ptr<session> s);
  asio::awaitable<void> operate(std::shared_ptr<session> s, json::object fields);
  asio::awaitable<json::object> call_driver(const dp::operation_request& op,
                                            const call_context& ctx);
  asio::awaitable<outcome<dp::settings_answer>> fetch(std::shared_ptr<session> s, std::string type,
                                                      std::string provider,
                                                      steady_clock::time_point dl);
  asio::awaitable<outcome<void>> ensure_settings(std::shared_ptr<session> s,
                                                 const dp::operation_request& op,
                                                 steady_clock::time_point dl);
  void settle(session& s, const dp::message& m);

  driver& driver_;
  options opts_;
  std::mt19937_64 rng_;
  std::map<std::string, provider_settings> settings_;
};

asio::awaitable<void> client::serve() {
  std::string error;
  const auto url = parse_url(opts_.url, error);
  if (!url) {
    log::error("cannot serve", {{"error", error}});
    co_return;
  }
  const backoff_policy policy{opts_.backoff_base, opts_.backoff_cap, std::chrono::milliseconds(50)};
  unsigned failures = 0;
  for (;;) {
    auto connecting = connect_once(*url);
    const bool registered = co_await std::move(connecting);
    failures = registered ? 0 : failures + 1;
    const auto wait = policy.delay(failures, rng_);
    log::info("reconnecting", {{"after_ms", static_cast<std::int64_t>(wait.count())}});
    asio::steady_timer timer(co_await asio::this_coro::executor, wait);
    auto [ec] = co_await timer.async_wait(use_tuple);
    if (ec) co_return;
  }
}

asio::awaitable<bool> client::connect_once(const ws_url& url) {
  using namespace asio::experimental::awaitable_operators;
  auto ex = co_await asio::this_coro::executor;
  auto s = std::make_shared<session>(ex, static_cast<std::size_t>(opts_.max_in_flight) + 64);
  auto& tcp = beast::get_lowest_layer(s->ws);

  asio::ip::tcp::resolver resolver(ex);
  asio::steady_timer limit(ex, opts_.connect_timeout);
  auto resolved = co_await (resolver.async_resolve(url.host, url.port, use_tuple) ||
                            limit.async_wait(use_tuple));
  if (resolved.index() == 1) {
    log::warn("cannot reach the hub", {{"error", "resolving the host timed out"}});
    co_return false;
  }
  auto [resolve_ec, endpoints] = std::get<0>(resolved);
  if (resolve_ec) {
    log::warn("cannot reach the hub", {{"error", resolve_ec.message()}});
    co_return false;
  }
  tcp.expires_after(opts_.connect_timeout);
  if (auto [ec, ep] = co_await tcp.async_connect(endpoints, use_tuple); ec) {
    log::warn("cannot reach the hub", {{"error", ec.message()}});
    co_return false;
  }
  tcp.expires_never();
  s->ws.read_message_max(dp::max_message_bytes);
  websocket::permessage_deflate no_compression;
  no_compression.client_enable = false;
  no_compression.server_enable = false;
  s->ws.set_option(no_compression);
  s->ws.set_option(websocket::stream_base::timeout{opts_.connect_timeout,
                                                   websocket::stream_base::none(), false});
  s->ws.set_option(websocket::stream_base::decorator([this](websocket::request_type& req) {
    req.set(beast::http::field::authorization, "token " + opts_.token);
    req.set(beast::http::field::user_agent, "cloudbrain-driver-sdk/" + opts_.driver);
  }));
  const std::string host = url.host + ":" + url.port;
  websocket::response_type refusal;
  if (auto [ec] = co_await s->ws.async_handshake(refusal, host, url.target, use_tuple); ec) {
    // A refused upgrade (401, 403, 503) comes back as an HTTP answer.
    log::warn("the hub refused the connection",
              {{"error", ec.message()}, {"status", refusal.result_int()}});
    co_return false;
  }
  s->ws.text(true);

  dp::registration reg;
  reg.driver = opts_.driver;
  reg.capabilities = driver_.capabilities();
  reg.max_in_flight = opts_.max_in_flight;
  const std::string hello = json::serialize(dp::to_json(reg));
  if (auto [ec, n] = co_await s->ws.async_write(asio::buffer(hello), use_tuple); ec) {
    log::warn("registering failed", {{"error", ec.message()}});
    co_return false;
  }
  beast::flat_buffer buffer;
  limit.expires_after(opts_.connect_timeout);
  auto answered = co_await (s->ws.async_read(buffer, use_tuple) || limit.async_wait(use_tuple));
  if (answered.index() == 1) {
    log::warn("the hub did not answer the registration in time");
    co_return false;
  }
  if (auto [ec, n] = std::get<0>(answered); ec) {
    log::warn("the hub closed the connection while registering", {{"error", ec.message()}});
    co_return false;
  }
  auto answer = dp::parse_message(beast::buffers_to_string(buffer.data()), dp::sender::hub);
  if (!answer) {
    log::warn("the hub's answer to register is malformed", {{"error", answer.error().reason}});
    co_return false;
  }
  if (answer->type == "refused") {
    auto why = dp::refusal_from(answer->fields);
    log::error("the hub refused the registration",
               {{"reason", why ? why->reason : "?"}, {"detail", why ? why->message : ""}});
    co_await s->ws.async_close(websocket::close_code::normal, use_tuple);
    co_return false;
  }
  if (answer->type != "registered") {
    log::warn("the hub answered register with something else", {{"type", answer->type}});
    co_return false;
  }
  auto accepted = dp::acceptance_from(answer->fields);
  if (!accepted) {
    log::warn("the hub's registered message is malformed", {{"error", accepted.error().reason}});
    co_return false;
  }
  s->accepted = std::move(*accepted);
  std::string served;
  for (const auto& p : s->accepted.providers) served += (served.empty() ? "" : " ") + p.name;
  log::info("registered", {{"driver", opts_.driver},
                           {"session", s->accepted.session},
                           {"providers", served},
                           {"max_in_flight", opts_.max_in_flight}});
  s->last_heard = steady_clock::now();

  co_await (read_loop(s) || write_loop(s) || heartbeat_loop(s));

  s->open = false;
  s->outbox.close();
  for (auto& [id, f] : s->by_id) f->done.set();  // their problem says: connection lost
  s->by_id.clear();
  s->by_key.clear();
  log::warn("disconnected from the hub", {{"reason", s->end.empty() ? "closed" : s->end}});
  beast::error_code ignored;
  tcp.socket().close(ignored);
  co_return true;
}

asio::awaitable<void> client::read_loop(std::shared_ptr<session> s) {
  beast::flat_buffer buffer;
  auto ex = co_await asio::this_coro::executor;
  for (;;) {
    buffer.clear();
    auto [ec, n] = co_await s->ws.async_read(buffer, use_tuple);
    if (ec) {
      if (s->end.empty()) {
        s->end = ec == websocket::error::closed
                     ? "closed by the hub: " +
                           std::string(s->ws.reason().reason.data(), s->ws.reason().reason.size())
                     : ec.message();
      }
      co_return;
    }
    s->last_heard = steady_clock::now();
    const std::string text = beast::buffers_to_string(buffer.data());
    auto m = dp::parse_message(text, dp::sender::hub);
    if (!m) {
      // An operation this SDK cannot read (a newer hub's, or malformed) is answered at once
      // rather than left to its deadline.
      boost::system::error_code jec;
      const auto doc = json::parse(text, jec);
      const json::object* o = !jec && doc.is_object() ? &doc.as_object() : nullptr;
      const json::value* id = o ? o->if_contains("id") : nullptr;
      if (id && id->is_string() && dp::valid_id(id->as_string()) && o->contains("deadline_ms")) {
        (void)s->send(dp::error_message(
            id->as_string(), failure{error_kind::invalid,
                                     "this driver cannot read the operation: " + m.error().reason,
                                     {}}));
      } else {
        log::warn("ignoring a message from the hub", {{"error", m.error().reason}});
      }
      continue;
    }
    const auto& type = m->type;
    if (dp::parse_operation(type)) {
      asio::co_spawn(ex, operate(s, std::move(m->fields)), asio::detached);
    } else if (type == "config" || type == "secret" || type == "error") {
      settle(*s, *m);
    } else if (type == "ping") {
      if (!s->send(dp::pong_message(m->fields.at("id").as_string()))) {
        s->end = "the outgoing queue is full";
        co_return;
      }
    } else if (type == "protocol_error") {
      log::error("the hub reports a protocol error",
                 {{"error", std::string(m->fields.at("message").as_string())}});
    } else if (type == "registered" || type == "refused") {
      s->end = "the hub sent " + type + " again";
      co_return;
    }
  }
}

asio::awaitable<void> client::write_loop(std::shared_ptr<session> s) {
  for (;;) {
    auto [ec, text] = co_await s->outbox.async_receive(use_tuple);
    if (ec) co_return;
    auto [write_ec, n] = co_await s->ws.async_write(asio::buffer(text), use_tuple);
    if (write_ec) {
      if (s->end.empty()) s->end = "writing failed: " + write_ec.message();
      co_return;
    }
  }
}

asio::awaitable<void> client::heartbeat_loop(std::shared_ptr<session> s) {
  asio::steady_timer timer(co_await asio::this_coro::executor);
  std::uint64_t pings = 0;
  for (;;) {
    timer.expires_after(s->accepted.heartbeat_interval);
    auto [ec] = co_await timer.async_wait(use_tuple);
    if (ec) co_return;
    if (steady_clock::now() - s->last_heard > s->accepted.heartbeat_timeout) {
      s->end = "the hub was silent past the heartbeat timeout";
      co_return;
    }
    if (!s->send(dp::ping_message("hb-" + std::to_string(++pings)))) {
      s->end = "the outgoing queue is full";
      co_return;
    }
  }
}

void client::settle(session& s, const dp::message& m) {
  const std::string id(m.fields.at("id").as_string());
  auto it = s.by_id.find(id);
  if (it == s.by_id.end()) return;  // nobody waits for it any more
  auto f = it->second;
  s.by_id.erase(it);
  s.by_key.erase(f->key);
  if (m.type == "error") {
    auto problem = dp::failure_from(m.fields.at("error"));
    f->problem =
        problem ? *problem : failure{error_kind::transient, "the hub's error is malformed", {}};
  } else {
    auto answer = dp::settings_answer_from(m.fields);
    if (answer) {
      f->answer = std::move(*answer);
    } else {
      f->problem = failure{error_kind::transient, "the hub's answer is malformed", {}};
    }
  }
  f->done.set();
}

asio::awaitable<outcome<dp::settings_answer>> client::fetch(std::shared_ptr<session> s,
                                                            std::string type, std::string provider,
                                                            steady_clock::time_point dl) {
  const std::string key = type + "\n" + provider;
  std::shared_ptr<settings_fetch> f;
  if (auto it = s->by_key.find(key); it != s->by_key.end()) {
    f = it->second;  // one question per provider and kind, whoever needs the answer
  } else {
    f = std::make_shared<settings_fetch>(co_await asio::this_coro::executor);
    f->key = key;
    const std::string id = "cfg-" + std::to_string(s->next_request++);
    if (!s->send(dp::settings_request(type, id, provider))) co_return f->problem;
    s->by_id.emplace(id, f);
    s->by_key.emplace(key, f);
  }
  auto waiting = f->done.wait_until(dl);
  if (!co_await std::move(waiting)) {
    co_return failure{error_kind::transient, "no answer to " + type + " before the deadline", {}};
  }
  if (!f->answer) co_return f->problem;
  co_return *f->answer;
}

asio::awaitable<outcome<void>> client::ensure_settings(std::shared_ptr<session> s,
                                                       const dp::operation_request& op,
                                                       steady_clock::time_point dl) {
  auto& held = settings_[op.provider];
  if (!held.has_config || held.config_version != op.config_version) {
    auto fetching = fetch(s, "get_config", op.provider, dl);
    auto got = co_await std::move(fetching);
    if (!got) co_return got.error();
    auto& now_held = settings_[op.provider];
    now_held.config = std::move(got->values);
    now_held.config_version = std::move(got->version);
    now_held.has_config = true;
  }
  if (!settings_[op.provider].has_secret ||
      settings_[op.provider].secret_version != op.secret_version) {
    auto fetching = fetch(s, "get_secret", op.provider, dl);
    auto got = co_await std::move(fetching);
    if (!got) co_return got.error();
    auto& now_held = settings_[op.provider];
    now_held.secret = std::move(got->values);
    now_held.secret_version = std::move(got->version);
    now_held.has_secret = true;
  }
  co_return outcome<void>{};
}

asio::awaitable<void> client::operate(std::shared_ptr<session> s, json::object fields) {
  using namespace asio::experimental::awaitable_operators;
  auto op = dp::operation_from(fields);
  if (!op) {
    const auto* id = fields.if_contains("id");
    if (id && id->is_string()) {
      (void)s->send(
          dp::error_message(id->as_string(), failure{error_kind::invalid, op.error().reason, {}}));
    }
    co_return;
  }
  const auto dl = steady_clock::now() + op->deadline;
  if (op->deadline <= std::chrono::milliseconds::zero()) {
    // Not started at all: a retry with the same idempotency key may still do it.
    (void)s->send(dp::error_message(
        op->id, failure{error_kind::transient, "the deadline had passed when it arrived", {}}));
    co_return;
  }
  const auto caps = driver_.capabilities();
  if (std::find(caps.begin(), caps.end(), dp::needed_for(op->op)) == caps.end()) {
    (void)s->send(dp::error_message(op->id, not_declared(dp::to_string(op->op))));
    co_return;
  }
  auto preparing = ensure_settings(s, *op, dl);
  if (auto ready = co_await std::move(preparing); !ready) {
    (void)s->send(dp::error_message(op->id, ready.error()));
    co_return;
  }
  // Copies: a later operation may fetch newer versions while this one runs.
  const json::object config = settings_[op->provider].config;
  const json::object secret = settings_[op->provider].secret;
  const call_context ctx{op->provider, config, secret, op->idempotency_key, dl};
  asio::steady_timer limit(co_await asio::this_coro::executor, dl);
  auto outcome_or_deadline = co_await (call_driver(*op, ctx) || limit.async_wait(use_tuple));
  if (outcome_or_deadline.index() == 1) {
    (void)s->send(dp::error_message(
        op->id,
        failure{error_kind::transient, "the operation did not finish within its deadline", {}}));
    co_return;
  }
  if (!s->send(std::get<0>(outcome_or_deadline))) {
    log::warn("an answer was lost with its connection; the hub sends the operation again",
              {{"id", op->id}, {"operation", dp::to_string(op->op)}});
  }
}

template <class T, class ToMessage>
json::object answer_of(const std::string& id, const outcome<T>& r, ToMessage to_message) {
  if (!r) return dp::error_message(id, r.error());
  return to_message(id, *r);
}

asio::awaitable<json::object> client::call_driver(const dp::operation_request& op,
                                                  const call_context& ctx) {
  switch (op.op) {
    case dp::operation::create: {
      auto r = co_await driver_.create(ctx, std::get<machine_spec>(op.args));
      co_return answer_of(op.id, r, dp::machine_result);
    }
    case dp::operation::get: {
      auto r = co_await driver_.get(ctx, std::get<machine_ref>(op.args));
      co_return answer_of(op.id, r, dp::machine_result);
    }
    case dp::operation::destroy: {
      auto r = co_await driver_.destroy(ctx, std::get<machine_ref>(op.args));
      if (!r) co_return dp::error_message(op.id, r.error());
      co_return dp::result_message(op.id, {});
    }
    case dp::operation::list: {
      auto r = co_await driver_.list(ctx, std::get<page_request>(op.args));
      co_return answer_of(op.id, r, dp::machines_result);
    }
    case dp::operation::reserve: {
      auto r = co_await driver_.reserve(ctx, std::get<reservation_spec>(op.args));
      co_return answer_of(op.id, r, dp::reservation_result);
    }
    case dp::operation::get_reservation: {
      auto r = co_await driver_.get_reservation(ctx, std::get<reservation_ref>(op.args));
      co_return answer_of(op.id, r, dp::reservation_result);
    }
    case dp::operation::release: {
      auto r = co_await driver_.release(ctx, std::get<reservation_ref>(op.args));
      if (!r) co_return dp::error_message(op.id, r.error());
      co_return dp::result_message(op.id, {});
    }
    case dp::operation::list_reservations: {
      auto r = co_await driver_.list_reservations(ctx, std::get<page_request>(op.args));
      co_return answer_of(op.id, r, dp::reservations_result);
    }
  }
  co_return dp::error_message(op.id, not_declared("this operation"));
}

}  // namespace

asio::awaitable<outcome<reservation>> driver::reserve(const call_context&,
                                                      const reservation_spec&) {
  co_return not_declared("reservations");
}

asio::awaitable<outcome<reservation>> driver::get_reservation(const call_context&,
                                                              const reservation_ref&) {
  co_return not_declared("reservations");
}

asio::awaitable<outcome<void>> driver::release(const call_context&, const reservation_ref&) {
  co_return not_declared("reservations");
}

asio::awaitable<outcome<page<reservation>>> driver::list_reservations(const call_context&,
                                                                      const page_request&) {
  co_return not_declared("reservations");
}

std::string usage() {
  return R"(    --url URL
        The hub: ws://HOST:PORT/drivers/connect.
    --token-file FILE
        A file holding a token of the driver role (cloudbrain token create --role driver).
    --driver NAME
        The name to register with: the `driver` of the [provider.NAME] sections to serve.
    --max-in-flight N
        Operations at once, 1 to 1024 (16).
    --log-level LEVEL
        trace, debug, info, warn or error (info).
)";
}

command_line parse_command_line(int argc, char** argv) {
  command_line out;
  std::string token_file;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    const auto value = [&](std::string_view flag) -> std::optional<std::string> {
      if (arg == flag) {
        if (i + 1 >= argc) {
          out.error = std::string(flag) + " needs a value";
          return std::nullopt;
        }
        return std::string(argv[++i]);
      }
      const std::string prefix = std::string(flag) + "=";
      if (arg.rfind(prefix, 0) == 0) return arg.substr(prefix.size());
      return std::nullopt;
    };
    if (arg == "--help" || arg == "-h") {
      out.help = true;
    } else if (auto v = value("--url")) {
      out.opts.url = *v;
    } else if (auto v = value("--token-file")) {
      token_file = *v;
    } else if (auto v = value("--driver")) {
      out.opts.driver = *v;
    } else if (auto v = value("--max-in-flight")) {
      int n = 0;
      const auto [end, ec] = std::from_chars(v->data(), v->data() + v->size(), n);
      if (ec != std::errc{} || end != v->data() + v->size() || n < 1 ||
          n > dp::max_in_flight_limit) {
        out.error = "--max-in-flight must be a number from 1 to 1024";
      }
      out.opts.max_in_flight = n;
    } else if (auto v = value("--log-level")) {
      bool ok = false;
      (void)log::parse_level(*v, &ok);
      if (!ok) out.error = "--log-level must be trace, debug, info, warn or error";
      out.log_level = *v;
    } else {
      if (!out.error.empty()) break;
      out.rest.push_back(arg);
    }
    if (!out.error.empty()) break;
  }
  if (out.help || !out.error.empty()) return out;
  if (out.opts.url.empty()) {
    out.error = "--url is required";
  } else if (std::string e; !parse_url(out.opts.url, e)) {
    out.error = e;
  } else if (out.opts.driver.empty() || !dp::valid_driver_name(out.opts.driver)) {
    out.error = "--driver is required: 1 to 63 characters of a-z, 0-9, '-', '_' and '.'";
  } else if (token_file.empty()) {
    out.error = "--token-file is required";
  } else {
    std::ifstream in(token_file);
    std::stringstream text;
    text << in.rdbuf();
    std::string token = text.str();
    while (!token.empty() && std::isspace(static_cast<unsigned char>(token.back())))
      token.pop_back();
    while (!token.empty() && std::isspace(static_cast<unsigned char>(token.front())))
      token.erase(token.begin());
    if (!in || token.empty()) {
      out.error = "cannot read a token from " + token_file;
    } else {
      out.opts.token = std::move(token);
    }
  }
  return out;
}

asio::awaitable<void> serve(driver& d, options opts) {
  client c(d, std::move(opts));
  co_await c.serve();
}

int run(asio::io_context& ioc, driver& d, options opts) {
  asio::signal_set signals(ioc, SIGTERM, SIGINT);
  signals.async_wait([&ioc](const boost::system::error_code& ec, int sig) {
    if (ec) return;
    log::info("stopping", {{"signal", sig}});
    ioc.stop();
  });
  asio::co_spawn(ioc, serve(d, std::move(opts)), [](std::exception_ptr e) {
    if (!e) return;
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& ex) {
      log::critical("the driver failed", {{"error", ex.what()}});
    }
  });
  ioc.run();
  return 0;
}

}  // namespace cloudbrain::driver_sdk
