#include "net/server.hpp"

#include "net/connection_stream.hpp"

#include "core/log.hpp"
#include "net/problem.hpp"
#include "net/request_id.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/websocket/rfc6455.hpp>
#include <boost/url/parse.hpp>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <ctime>
#include <limits>
#include <map>
#include <optional>
#include <unordered_map>

#include <openssl/err.h>
#include <openssl/ssl.h>

namespace cloudbrain::net {

namespace asio = boost::asio;
namespace beast = boost::beast;
using tcp = asio::ip::tcp;
using steady_clock = std::chrono::steady_clock;

namespace detail {
namespace {

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

// After a response that closes the connection, read and drop what the client still sends for a
// while: closing a socket with unread data makes the kernel send RST, which can destroy the
// response before the client has read it (a 413 sent before the body arrived, say).
constexpr auto linger_timeout = std::chrono::seconds(2);
constexpr std::size_t linger_bytes = std::size_t{1024} * 1024;
constexpr std::size_t read_size = std::size_t{8} * 1024;
constexpr auto reject_write_timeout = std::chrono::seconds(5);
// Connections over the limit are answered by small coroutines of their own; past this many at
// once they are closed without an answer.
constexpr std::size_t max_rejecting = 256;
constexpr std::size_t max_logged_path = 512;

std::string to_string(const tcp::endpoint& ep) {
  const auto addr = ep.address();
  std::string out = addr.is_v6() ? "[" + addr.to_string() + "]" : addr.to_string();
  out += ':';
  out += std::to_string(ep.port());
  return out;
}

// IMF-fixdate (RFC 9110 section 5.6.7), rendered at most once a second per thread.
std::string_view http_date() {
  static constexpr std::array<const char*, 7> days{"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
  static constexpr std::array<const char*, 12> months{"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                                      "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  thread_local std::time_t rendered = -1;
  thread_local std::array<char, 32> text{};
  thread_local std::size_t size = 0;
  const std::time_t now = std::time(nullptr);
  if (now != rendered) {
    std::tm tm{};
    gmtime_r(&now, &tm);
    const int n = std::snprintf(text.data(), text.size(), "%s, %02d %s %04d %02d:%02d:%02d GMT",
                                days[static_cast<std::size_t>(tm.tm_wday)], tm.tm_mday,
                                months[static_cast<std::size_t>(tm.tm_mon)], tm.tm_year + 1900,
                                tm.tm_hour, tm.tm_min, tm.tm_sec);
    size = n > 0 ? static_cast<std::size_t>(n) : 0;
    rendered = now;
  }
  return {text.data(), size};
}

template <class Fields>
std::string request_id_for(const Fields& fields, request_id_generator& ids) {
  const auto it = fields.find("X-Request-ID");
  if (it != fields.end() && is_sane_request_id(it->value())) return std::string(it->value());
  return ids.next();
}

// The headers every response gets, and whether the connection stays open after it.
void finish(response& res, unsigned version, std::string_view request_id, bool keep_alive) {
  res.version(version);
  res.set(http::field::server, "cloudbrain");
  res.set(http::field::date, http_date());
  res.set("X-Request-ID", request_id);
  res.keep_alive(keep_alive);
}

std::string_view path_of(std::string_view target) {
  target = target.substr(0, target.find('?'));
  return target.substr(0, max_logged_path);
}

std::size_t count_fields(const request& head, http::field f) {
  const auto [first, last] = head.equal_range(f);
  return static_cast<std::size_t>(std::distance(first, last));
}

response bad_request(std::string detail) {
  return problem(http::status::bad_request, "bad_request", "Bad request", std::move(detail));
}

}  // namespace

enum class phase {
  busy,      // reading a request, running its handler or writing its response
  idle,      // waiting for the first byte of the next request
  upgraded,  // the stream belongs to an upgrade handler
  done,
};

struct server_connection {
  server_connection(std::uint64_t connection_id, tcp::socket socket, asio::ip::address from,
                    std::shared_ptr<asio::ssl::context> tls_context)
      : id(connection_id),
        address(std::move(from)),
        executor(socket.get_executor()),
        tls(std::move(tls_context)),
        stream(beast::tcp_stream(std::move(socket))) {}

  // Called on `executor` by shutdown: an idle connection has no request to finish.
  void close_if_idle() {
    if (state == phase::idle) stream.tcp().cancel();
  }

  // Called on `executor` at the shutdown deadline.
  void close_now() {
    if (state == phase::done) return;
    cancel.emit(asio::cancellation_type::terminal);
    if (state != phase::upgraded) {
      beast::error_code ec;
      stream.tcp().socket().shutdown(tcp::socket::shutdown_both, ec);
      stream.tcp().close();
    }
  }

  const std::uint64_t id;
  const asio::ip::address address;       // the client's, for the per-address cap
  const asio::any_io_executor executor;  // this connection's strand
  // The TLS context it was accepted with (HTTPS), kept for the connection's life; or null.
  const std::shared_ptr<asio::ssl::context> tls;
  // Touched only on `executor`. `stream` is moved out once the connection is upgraded.
  connection_stream stream;
  asio::cancellation_signal cancel;  // cancels what the connection's coroutine awaits
  phase state = phase::busy;
};

struct server_state {
  server_state(asio::io_context& io, server_config cfg, std::shared_ptr<const router> r)
      : ioc(io),
        config(std::move(cfg)),
        routes(std::move(r)),
        strand(asio::make_strand(io)),
        acceptor(strand) {}

  asio::io_context& ioc;
  const server_config config;
  const std::shared_ptr<const router> routes;
  const asio::strand<asio::io_context::executor_type> strand;

  // On `strand`:
  tcp::acceptor acceptor;
  std::unordered_map<std::uint64_t, std::shared_ptr<server_connection>> connections;
  std::map<asio::ip::address, std::size_t> per_address;  // open connections by client address
  std::vector<asio::steady_timer*> drain_waiters;  // shutdown() calls waiting for the last one
  std::uint64_t next_connection_id = 0;

  // Set before accepting starts, read-only afterwards.
  bool started = false;
  tcp::endpoint local;

  std::atomic<std::size_t> active{0};
  std::atomic<std::size_t> rejecting{0};
  std::atomic<bool> draining{false};
  std::atomic<std::int64_t> last_reject_log{0};

  // On `strand`, once a connection's coroutine is gone.
  void forget(std::uint64_t id) {
    if (const auto it = connections.find(id); it != connections.end()) {
      if (auto n = per_address.find(it->second->address); n != per_address.end()) {
        if (--n->second == 0) per_address.erase(n);
      }
      connections.erase(it);
    }
    active.store(connections.size(), std::memory_order_relaxed);
    if (connections.empty()) {
      for (auto* t : drain_waiters) t->cancel();
    }
  }
};

namespace {

// One log line and one metrics call per response. Never headers or bodies: they carry tokens.
struct access_record {
  std::string_view request_id;
  std::string_view method;
  std::string_view path;
  std::string_view route;
  unsigned status = 0;
  steady_clock::time_point started;
  std::string_view remote;
};

void record(const server_config& cfg, const access_record& r) {
  const auto took = steady_clock::now() - r.started;
  const double ms = std::chrono::duration<double, std::milli>(took).count();
  log::info("request", {{"request_id", r.request_id},
                        {"method", r.method},
                        {"path", r.path},
                        {"route", r.route},
                        {"status", r.status},
                        {"duration_ms", ms},
                        {"remote", r.remote}});
  if (cfg.on_request_done) {
    // The method as sent may be anything; a label takes only the standard ones.
    const http::verb verb = http::string_to_verb(r.method);
    const std::string_view method = verb == http::verb::unknown ? "other" : http::to_string(verb);
    cfg.on_request_done(method, r.route, r.status,
                        std::chrono::duration_cast<std::chrono::nanoseconds>(took));
  }
}

// Shuts down the sending side, waits a little for the client to finish, then closes.
asio::awaitable<void> linger_close(beast::tcp_stream& stream) {
  beast::error_code ec;
  stream.socket().shutdown(tcp::socket::shutdown_send, ec);
  if (!ec) {
    stream.expires_after(linger_timeout);
    std::array<char, 4096> sink;
    std::size_t total = 0;
    while (total < linger_bytes) {
      auto [read_ec, n] = co_await stream.async_read_some(asio::buffer(sink), use_tuple);
      if (read_ec) break;
      total += n;
    }
  }
  stream.close();
}

// The answer to a request that could not be read, if anyone is there to read it.
std::optional<response> reply_to_read_error(const beast::error_code& ec, const server_config& cfg) {
  if (ec == http::error::header_limit) {
    return problem(http::status::request_header_fields_too_large, "headers_too_large",
                   "Request header fields too large",
                   "The request's header exceeds " + std::to_string(cfg.header_limit) + " bytes.");
  }
  if (ec == http::error::body_limit) {
    return problem(http::status::payload_too_large, "payload_too_large", "Payload too large",
                   "The request body exceeds " + std::to_string(cfg.body_limit) + " bytes.");
  }
  // The client went away, or a timeout closed the socket: there is nobody to answer.
  if (ec == http::error::end_of_stream || ec == http::error::partial_message) return std::nullopt;
  if (ec.category() == http::make_error_code(http::error::bad_method).category()) {
    return problem(http::status::bad_request, "bad_request", "Bad request",
                   "The request is not valid HTTP/1.1: " + ec.message() + ".");
  }
  return std::nullopt;
}

response internal_error() {
  return problem(http::status::internal_server_error, "internal_error", "Internal server error",
                 "The server failed to handle the request.");
}

// Runs a handler; whatever it throws becomes a 500 and a log line, never a dead server.
asio::awaitable<response> invoke(const handler& h, request_context& ctx) {
  std::exception_ptr failure;
  try {
    co_return co_await h(ctx);
  } catch (...) {
    failure = std::current_exception();
  }
  const bool cancelled =
      (co_await asio::this_coro::cancellation_state).cancelled() != asio::cancellation_type::none;
  std::string what = "unknown exception";
  try {
    std::rethrow_exception(failure);
  } catch (const std::exception& e) {
    what = e.what();
  } catch (...) {
  }
  if (cancelled) {
    log::info("request cancelled by shutdown",
              {{"request_id", ctx.request_id}, {"route", ctx.route}, {"error", what}});
  } else {
    log::error("handler failed",
               {{"request_id", ctx.request_id}, {"route", ctx.route}, {"error", what}});
  }
  co_return internal_error();
}

// An upgrade route's gate; one that throws refuses the request with a 500.
asio::awaitable<std::optional<response>> invoke_gate(const upgrade_gate& gate,
                                                     request_context& ctx) {
  try {
    co_return co_await gate(ctx);
  } catch (const std::exception& e) {
    log::error("upgrade gate failed",
               {{"request_id", ctx.request_id}, {"route", ctx.route}, {"error", e.what()}});
  }
  co_return internal_error();
}

asio::awaitable<void> run_upgrade(server_connection& c, const upgrade_handler& h,
                                  request_context& ctx) {
  c.state = phase::upgraded;
  connection_stream stream = std::move(c.stream);
  stream.tcp().expires_never();
  try {
    co_await h(ctx, std::move(stream));
  } catch (const std::exception& e) {
    log::error("upgrade handler failed",
               {{"request_id", ctx.request_id}, {"route", ctx.route}, {"error", e.what()}});
  } catch (...) {
    log::error("upgrade handler failed",
               {{"request_id", ctx.request_id}, {"route", ctx.route}, {"error", "unknown"}});
  }
}

// Reads a request header into `parser`, starting with what `buffer` holds. Beast's own
// header_limit only bounds what one parse call sees (fields already parsed are consumed), so a
// header trickling in over many reads would never reach it; this counts the whole header.
asio::awaitable<beast::error_code> read_header(connection_stream& stream,
                                               beast::flat_buffer& buffer,
                                               http::request_parser<http::string_body>& parser,
                                               std::size_t limit) {
  std::size_t parsed = 0;
  for (;;) {
    if (buffer.size() > 0) {
      beast::error_code ec;
      const std::size_t n = parser.put(buffer.data(), ec);
      buffer.consume(n);
      parsed += n;
      if (parsed > limit) co_return http::error::header_limit;
      if (ec && ec != http::error::need_more) co_return ec;
      if (parser.is_header_done()) co_return beast::error_code{};
    }
    const std::size_t room = std::min(read_size, buffer.max_size() - buffer.size());
    if (parsed + buffer.size() >= limit || room == 0) co_return http::error::header_limit;
    auto [ec, n] = co_await stream.async_read_some(buffer.prepare(room), use_tuple);
    // TLS's end without close_notify is the same end of the stream.
    if (ec == asio::error::eof || ec == asio::ssl::error::stream_truncated) {
      co_return parsed + buffer.size() + n == 0 ? http::error::end_of_stream
                                                : http::error::partial_message;
    }
    if (ec) co_return ec;
    buffer.commit(n);
  }
}

// Reads, handles and answers one request whose first bytes are in `buffer`. Returns whether the
// connection stays open for another.
asio::awaitable<bool> serve_request(server_state& s, server_connection& c,
                                    beast::flat_buffer& buffer, request_id_generator& ids,
                                    const tcp::endpoint& remote, std::string_view remote_text) {
  const server_config& cfg = s.config;
  const auto started = steady_clock::now();

  http::request_parser<http::string_body> parser;
  parser.header_limit(static_cast<std::uint32_t>(
      std::min<std::size_t>(cfg.header_limit, std::numeric_limits<std::uint32_t>::max())));
  parser.body_limit(cfg.body_limit);

  // The head has a deadline of its own (a client trickling it in holds a connection for that
  // long at most); header and body together have read_timeout.
  c.stream.tcp().expires_after(std::min(cfg.head_timeout, cfg.read_timeout));
  beast::error_code ec = co_await read_header(c.stream, buffer, parser, cfg.header_limit);
  if (!ec) c.stream.tcp().expires_at(started + cfg.read_timeout);
  if (!ec) {
    if (std::optional<response> refused = check_request_head(parser.get())) {
      // Its body cannot be delimited safely: answer and close, reading nothing more.
      const auto& head = parser.get();
      const std::string request_id = request_id_for(head, ids);
      finish(*refused, 11, request_id, false);
      refused->prepare_payload();
      c.stream.tcp().expires_after(cfg.write_timeout);
      std::tie(ec, std::ignore) = co_await http::async_write(c.stream, *refused, use_tuple);
      record(cfg, {request_id, head.method_string(), path_of(head.target()), "invalid",
                   refused->result_int(), started, remote_text});
      if (!ec) co_await linger_close(c.stream.tcp());
      co_return false;
    }
  }
  if (!ec && !parser.is_done()) {
    if (beast::iequals(parser.get()[http::field::expect], "100-continue")) {
      http::response<http::empty_body> go_on{http::status::continue_, parser.get().version()};
      std::tie(ec, std::ignore) = co_await http::async_write(c.stream, go_on, use_tuple);
    }
    if (!ec) {
      std::tie(ec, std::ignore) = co_await http::async_read(c.stream, buffer, parser, use_tuple);
    }
  }

  if (ec) {
    std::optional<response> reply = reply_to_read_error(ec, cfg);
    if (!reply) co_return false;
    const auto& partial = parser.get();
    const std::string request_id = request_id_for(partial, ids);
    finish(*reply, 11, request_id, false);
    c.stream.tcp().expires_after(cfg.write_timeout);
    std::tie(ec, std::ignore) = co_await http::async_write(c.stream, *reply, use_tuple);
    record(cfg, {request_id, partial.method_string(), path_of(partial.target()), "invalid",
                 reply->result_int(), started, remote_text});
    if (!ec) co_await linger_close(c.stream.tcp());
    co_return false;
  }

  const request req = parser.release();
  request_context ctx{req, request_id_for(req, ids), remote, {}, {}, {}, {}, false};
  std::string_view route = "unmatched";
  std::string decoded_path;
  response res;

  const auto url = boost::urls::parse_origin_form(req.target());
  if (!url) {
    // A path that cannot be decoded names no resource: 404, as for a malformed id (API.md).
    route = "invalid";
    res = problem(http::status::not_found, "not_found", "Not found",
                  "There is no resource at this path.");
  } else {
    decoded_path = url->path();
    ctx.path = decoded_path;
    ctx.query = url->params();
    router::match_result m = s.routes->match(req.method(), url->encoded_path());
    if (m.status == http::status::not_found) {
      res = problem(http::status::not_found, "not_found", "Not found",
                    "There is no resource at this path.");
    } else if (m.status == http::status::method_not_allowed) {
      res = problem(http::status::method_not_allowed, "method_not_allowed", "Method not allowed",
                    "This resource supports " + m.allow + ".");
      res.set(http::field::allow, m.allow);
    } else {
      route = m.route;
      ctx.route = m.route;
      ctx.params = std::move(m.params);
      std::optional<response> refused;
      if (m.gate != nullptr) refused = co_await invoke_gate(*m.gate, ctx);
      if (refused) {
        res = std::move(*refused);
      } else if (m.upgrade != nullptr && beast::websocket::is_upgrade(req)) {
        record(cfg, {ctx.request_id, req.method_string(), path_of(req.target()), route, 101,
                     started, remote_text});
        co_await run_upgrade(c, *m.upgrade, ctx);
        co_return false;
      } else if (m.upgrade != nullptr) {
        res = problem(http::status::upgrade_required, "upgrade_required", "Upgrade required",
                      "This resource only speaks WebSocket.");
        res.set(http::field::upgrade, "websocket");
      } else {
        res = co_await invoke(*m.handler, ctx);
      }
    }
  }

  res.version(req.version());
  const bool keep_alive =
      req.keep_alive() && res.keep_alive() && !s.draining.load(std::memory_order_relaxed);
  finish(res, req.version(), ctx.request_id, keep_alive);
  res.prepare_payload();
  if (req.method() == http::verb::head) {
    res.body().clear();  // Content-Length stays: it is what a GET would have sent
  }

  c.stream.tcp().expires_after(cfg.write_timeout);
  std::tie(ec, std::ignore) = co_await http::async_write(c.stream, res, use_tuple);
  record(cfg, {ctx.request_id, req.method_string(), path_of(req.target()), route, res.result_int(),
               started, remote_text});
  if (ec) co_return false;
  if (!keep_alive) {
    co_await linger_close(c.stream.tcp());
    co_return false;
  }
  co_return true;
}

// HTTPS: the TLS handshake, within the head timeout. Plain HTTP sent to this listener (OpenSSL
// recognises a request line where a handshake should be) gets a plain 400 saying so; anything
// else that fails just ends the connection. Whether the connection goes on.
asio::awaitable<bool> start_tls(server_state& s, server_connection& c, request_id_generator& ids,
                                std::string_view remote_text) {
  const server_config& cfg = s.config;
  const auto started = steady_clock::now();
  c.stream.tcp().expires_after(std::min(cfg.head_timeout, cfg.read_timeout));
  c.stream.start_tls(*c.tls);
  auto [ec] = co_await c.stream.tls()->async_handshake(asio::ssl::stream_base::server, use_tuple);
  if (!ec) co_return true;
  const bool plain_http =
      ec.category() == asio::error::get_ssl_category() &&
      ERR_GET_REASON(static_cast<unsigned long>(ec.value())) == SSL_R_HTTP_REQUEST;
  if (!plain_http) {
    log::debug("tls handshake failed", {{"remote", remote_text}, {"error", ec.message()}});
    co_return false;
  }
  const std::string request_id = ids.next();
  response res = problem(http::status::bad_request, "https_required", "HTTPS required",
                         "This port speaks HTTPS (TLS 1.2 or 1.3): send the request to "
                         "https:// instead of http://.");
  finish(res, 11, request_id, false);
  auto& tcp = c.stream.tcp();
  tcp.expires_after(cfg.write_timeout);
  std::tie(ec, std::ignore) = co_await http::async_write(tcp, res, use_tuple);
  record(cfg, {request_id, "", "", "invalid", res.result_int(), started, remote_text});
  if (!ec) co_await linger_close(tcp);
  co_return false;
}

// One connection: requests one after another, on the connection's strand.
asio::awaitable<void> serve(std::shared_ptr<server_state> s, std::shared_ptr<server_connection> c) {
  // Errors arrive as error codes; a cancellation at the shutdown deadline must not turn every
  // later wait into an exception (handlers still get operation_aborted for what they awaited).
  co_await asio::this_coro::throw_if_cancelled(false);
  const server_config& cfg = s->config;
  beast::error_code ec;
  const tcp::endpoint remote = c->stream.tcp().socket().remote_endpoint(ec);
  const std::string remote_text = to_string(remote);
  request_id_generator ids;
  if (c->tls && !co_await start_tls(*s, *c, ids, remote_text)) co_return;
  // Bounded, so that nothing the parser has not consumed yet (a chunk header, say) can grow
  // without limit.
  beast::flat_buffer buffer(cfg.header_limit + std::size_t{64} * 1024);
  bool first = true;

  for (bool open = true; open;) {
    if (buffer.size() == 0) {
      if (s->draining.load(std::memory_order_relaxed)) break;
      // A new connection gets the head timeout for its first byte, a kept-alive one the idle
      // timeout between requests.
      c->state = phase::idle;
      c->stream.tcp().expires_after(first ? std::min(cfg.head_timeout, cfg.read_timeout)
                                          : cfg.idle_timeout);
      auto [read_ec, n] = co_await c->stream.async_read_some(buffer.prepare(read_size), use_tuple);
      c->state = phase::busy;
      if (read_ec) break;  // closed, timed out, or closed by shutdown while idle
      buffer.commit(n);
    }
    first = false;
    open = co_await serve_request(*s, *c, buffer, ids, remote, remote_text);
  }
  if (c->state != phase::upgraded) {
    c->stream.tcp().socket().shutdown(tcp::socket::shutdown_send, ec);
    c->stream.tcp().close();
  }
}

// Over max_connections or while draining: answer 503 without reading the request, then close.
asio::awaitable<void> reject(std::shared_ptr<server_state> s, tcp::socket socket,
                             bool shutting_down, bool address_full) {
  const auto started = steady_clock::now();
  beast::error_code ec;
  const std::string remote_text = to_string(socket.remote_endpoint(ec));
  connection_stream stream(beast::tcp_stream(std::move(socket)));
  const auto deadline =
      std::min<std::chrono::milliseconds>(s->config.write_timeout, reject_write_timeout);
  // On an HTTPS listener the answer, too, goes through TLS.
  const auto tls = s->config.tls_context ? s->config.tls_context() : nullptr;
  if (tls) {
    stream.tcp().expires_after(deadline);
    stream.start_tls(*tls);
    auto [handshake] =
        co_await stream.tls()->async_handshake(asio::ssl::stream_base::server, use_tuple);
    if (handshake) co_return;
  }
  request_id_generator ids;
  const std::string request_id = ids.next();
  response res =
      shutting_down
          ? problem_from_error(error(errc::shutting_down))
          : problem(http::status::service_unavailable, "overloaded", "Service overloaded",
                    address_full ? "Too many connections from this address; close some, or "
                                   "reuse them (keep-alive), and try again."
                                 : "The server has too many connections; try again later.");
  if (!shutting_down) res.set(http::field::retry_after, "1");
  finish(res, 11, request_id, false);
  stream.tcp().expires_after(deadline);
  std::tie(ec, std::ignore) = co_await http::async_write(stream, res, use_tuple);
  record(s->config, {request_id, "", "", "rejected", res.result_int(), started, remote_text});
  if (!ec) co_await linger_close(stream.tcp());
}

void log_rejection(server_state& s, const asio::ip::address* address_full) {
  // At most one line every ten seconds: a flood of connections must not become a flood of logs.
  const auto now =
      std::chrono::duration_cast<std::chrono::seconds>(steady_clock::now().time_since_epoch())
          .count();
  auto last = s.last_reject_log.load(std::memory_order_relaxed);
  if (now - last >= 10 && s.last_reject_log.compare_exchange_strong(last, now)) {
    if (address_full) {
      log::warn("connection limit of a client address reached; rejecting its connections",
                {{"address", address_full->to_string()},
                 {"max_connections_per_address", s.config.max_connections_per_address}});
    } else {
      log::warn("connection limit reached; rejecting connections",
                {{"max_connections", s.config.max_connections}});
    }
  }
}

// On the server's strand: serve the new connection, or turn it away.
void admit(const std::shared_ptr<server_state>& s, tcp::socket socket) {
  const bool shutting_down = s->draining.load(std::memory_order_relaxed);
  beast::error_code ec;
  const asio::ip::address from = socket.remote_endpoint(ec).address();
  const std::size_t cap = s->config.max_connections_per_address;
  const bool address_full = cap > 0 && s->per_address[from] >= cap;
  if (shutting_down || address_full || s->connections.size() >= s->config.max_connections) {
    if (s->per_address[from] == 0) s->per_address.erase(from);
    if (!shutting_down) log_rejection(*s, address_full ? &from : nullptr);
    if (s->rejecting.fetch_add(1, std::memory_order_relaxed) >= max_rejecting) {
      s->rejecting.fetch_sub(1, std::memory_order_relaxed);
      return;  // the socket closes as it goes out of scope
    }
    auto ex = socket.get_executor();
    asio::co_spawn(ex, reject(s, std::move(socket), shutting_down, address_full),
                   [s](const std::exception_ptr& e) {
                     s->rejecting.fetch_sub(1, std::memory_order_relaxed);
                     if (e) log::error("rejecting a connection failed");
                   });
    return;
  }

  auto c = std::make_shared<server_connection>(
      s->next_connection_id++, std::move(socket), from,
      s->config.tls_context ? s->config.tls_context() : nullptr);
  ++s->per_address[from];
  s->connections.emplace(c->id, c);
  s->active.store(s->connections.size(), std::memory_order_relaxed);
  asio::co_spawn(
      c->executor, serve(s, c),
      asio::bind_cancellation_slot(c->cancel.slot(), [s, c](const std::exception_ptr& e) {
        c->state = phase::done;
        if (e) {
          try {
            std::rethrow_exception(e);
          } catch (const std::exception& ex) {
            log::error("connection failed", {{"error", ex.what()}});
          } catch (...) {
            log::error("connection failed", {{"error", "unknown exception"}});
          }
        }
        // The coroutine's frame still refers to c->cancel until this handler returns;
        // posting through the connection's strand first keeps `c` alive until it has
        // unwound.
        asio::post(c->executor,
                   [s, c] { asio::post(s->strand, [s, id = c->id] { s->forget(id); }); });
      }));
}

asio::awaitable<void> accept_loop(std::shared_ptr<server_state> s) {
  asio::steady_timer backoff(s->strand);
  for (;;) {
    auto [ec, socket] = co_await s->acceptor.async_accept(asio::make_strand(s->ioc), use_tuple);
    if (!ec) {
      admit(s, tcp::socket(std::move(socket)));
      continue;
    }
    if (!s->acceptor.is_open() || ec == asio::error::operation_aborted) co_return;
    // Typically EMFILE: wait for connections to close instead of spinning on accept.
    log::warn("accept failed", {{"error", ec.message()}});
    backoff.expires_after(std::chrono::milliseconds(50));
    co_await backoff.async_wait(use_tuple);
  }
}

// On the server's strand.
asio::awaitable<void> drain(std::shared_ptr<server_state> s, steady_clock::time_point deadline) {
  if (!s->draining.exchange(true)) {
    beast::error_code ec;
    s->acceptor.close(ec);
    log::info("http server draining", {{"connections", s->connections.size()}});
    for (const auto& [id, c] : s->connections) {
      asio::post(c->executor, [c = c] { c->close_if_idle(); });
    }
  }

  asio::steady_timer timer(s->strand);
  s->drain_waiters.push_back(&timer);
  struct unregister {
    server_state& s;
    asio::steady_timer* t;
    ~unregister() { std::erase(s.drain_waiters, t); }
  } guard{*s, &timer};

  while (!s->connections.empty() && steady_clock::now() < deadline) {
    timer.expires_at(deadline);
    co_await timer.async_wait(use_tuple);
  }
  if (!s->connections.empty()) {
    log::warn("closing connections at the shutdown deadline",
              {{"connections", s->connections.size()}});
    for (const auto& [id, c] : s->connections) {
      asio::post(c->executor, [c = c] { c->close_now(); });
    }
  } else {
    log::info("http server drained");
  }
}

}  // namespace
}  // namespace detail

server::server(asio::io_context& ioc, server_config config, std::shared_ptr<const router> routes)
    : state_(std::make_shared<detail::server_state>(ioc, std::move(config), std::move(routes))) {
  if (!state_->routes) throw std::invalid_argument("server needs a router");
}

server::~server() {
  if (state_->started && !state_->draining.load()) {
    asio::post(state_->strand, [s = state_] {
      beast::error_code ec;
      s->acceptor.close(ec);
    });
  }
}

result<void> server::start() {
  auto& s = *state_;
  if (s.started) return fail(errc::internal, "the HTTP server was started twice");
  const std::string where = detail::to_string(s.config.listen);
  beast::error_code ec;
  const auto failed = [&](std::string_view step) {
    beast::error_code ignored;
    s.acceptor.close(ignored);
    return fail(errc::bad_config,
                "cannot listen on " + where + ": " + std::string(step) + ": " + ec.message());
  };
  s.acceptor.open(s.config.listen.protocol(), ec);
  if (ec) return failed("open");
  s.acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  if (ec) return failed("setsockopt");
  s.acceptor.bind(s.config.listen, ec);
  if (ec) return failed("bind");
  s.acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return failed("listen");
  s.local = s.acceptor.local_endpoint(ec);
  if (ec) return failed("getsockname");
  s.started = true;

  asio::co_spawn(s.strand, detail::accept_loop(state_), [](const std::exception_ptr& e) {
    if (e) log::critical("the HTTP accept loop failed");
  });
  log::info("http server listening", {{"address", detail::to_string(s.local)}});
  return {};
}

asio::ip::tcp::endpoint server::local_endpoint() const { return state_->local; }

asio::awaitable<void> server::shutdown(steady_clock::time_point deadline) {
  auto s = state_;
  co_await asio::co_spawn(s->strand, detail::drain(s, deadline), asio::use_awaitable);
}

std::size_t server::active_connections() const {
  return state_->active.load(std::memory_order_relaxed);
}

bool server::draining() const { return state_->draining.load(std::memory_order_relaxed); }

std::optional<response> check_request_head(const request& head) {
  const std::size_t lengths = detail::count_fields(head, http::field::content_length);
  const std::size_t encodings = detail::count_fields(head, http::field::transfer_encoding);
  if (lengths > 0 && encodings > 0) {
    return detail::bad_request(
        "The request has both Content-Length and Transfer-Encoding; send one of them.");
  }
  if (lengths > 1) return detail::bad_request("The request has more than one Content-Length.");
  if (encodings > 1) {
    return detail::bad_request("The request has more than one Transfer-Encoding field.");
  }
  if (encodings == 1) {
    if (head.version() < 11) {
      return detail::bad_request("Transfer-Encoding is not allowed in an HTTP/1.0 request.");
    }
    std::string_view te = head[http::field::transfer_encoding];
    while (!te.empty() && (te.front() == ' ' || te.front() == '\t')) te.remove_prefix(1);
    while (!te.empty() && (te.back() == ' ' || te.back() == '\t')) te.remove_suffix(1);
    if (!beast::iequals(te, "chunked")) {
      return detail::bad_request("Transfer-Encoding must be exactly \"chunked\".");
    }
  }
  const std::size_t hosts = detail::count_fields(head, http::field::host);
  if (hosts > 1) return detail::bad_request("The request has more than one Host field.");
  if (hosts == 0 && head.version() >= 11) {
    return detail::bad_request("An HTTP/1.1 request needs a Host field.");
  }
  return std::nullopt;
}

}  // namespace cloudbrain::net
