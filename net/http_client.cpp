#include "net/http_client.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/url/parse.hpp>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <charconv>
#include <list>
#include <map>
#include <optional>

namespace cloudbrain::net {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using boost::system::error_code;

result<parsed_url> parse_url(std::string_view text) {
  auto parsed = boost::urls::parse_absolute_uri(text);
  if (!parsed) return fail(errc::invalid_argument, "not an absolute URL");
  const auto& u = *parsed;
  parsed_url out;
  out.scheme = u.scheme();
  std::transform(out.scheme.begin(), out.scheme.end(), out.scheme.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (out.scheme != "http" && out.scheme != "https") {
    return fail(errc::invalid_argument, "URL scheme must be http or https");
  }
  if (!u.has_authority() || u.encoded_host().empty()) {
    return fail(errc::invalid_argument, "URL has no host");
  }
  if (u.has_userinfo()) return fail(errc::invalid_argument, "URL must not carry credentials");
  if (u.host_type() == boost::urls::host_type::ipv6) {
    out.host = u.host_ipv6_address().to_string();
  } else {
    out.host = u.host_address();
  }
  if (u.has_port()) {
    // port_number() wraps values over 65535, so parse the text.
    const std::string_view port = u.port();
    unsigned long value = 0;
    const auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
    if (ec != std::errc{} || end != port.data() + port.size() || value == 0 || value > 65535) {
      return fail(errc::invalid_argument, "URL port must be 1-65535");
    }
    out.port = static_cast<std::uint16_t>(value);
  } else {
    out.port = out.tls() ? 443 : 80;
  }
  out.target = u.encoded_path();
  if (out.target.empty()) out.target = "/";
  if (u.has_query()) {
    out.target += '?';
    out.target += u.encoded_query();
  }
  return out;
}

std::string host_header(const parsed_url& url) {
  const bool default_port = url.port == (url.tls() ? 443 : 80);
  const bool ipv6 = url.host.find(':') != std::string::npos;
  std::string host = ipv6 ? "[" + url.host + "]" : url.host;
  if (!default_port) host += ":" + std::to_string(url.port);
  return host;
}

namespace detail {

// One pooled connection: plain TCP or TLS over TCP, and its read buffer.
struct client_connection {
  std::optional<beast::tcp_stream> plain;
  std::optional<ssl::stream<beast::tcp_stream>> secure;
  beast::flat_buffer buffer;
  steady_clock::time_point idle_since{};

  beast::tcp_stream& tcp() { return plain ? *plain : secure->next_layer(); }
  void close() {
    error_code ignored;
    tcp().socket().shutdown(tcp::socket::shutdown_both, ignored);
    tcp().close();
  }
};

struct client_host_pool {
  std::list<std::unique_ptr<client_connection>> idle;  // most recently used at the back
  std::size_t open = 0;                                // idle + in use + being opened
  std::list<asio::steady_timer*> waiters;              // requests waiting for a free slot
};

struct client_state {
  asio::any_io_executor executor;
  asio::strand<asio::any_io_executor> strand;
  client_config config;
  ssl::context tls{ssl::context::tls_client};
  std::optional<error> tls_setup_error;
  std::map<std::string, client_host_pool> pools;  // touched only on `strand`

  std::atomic<std::uint64_t> requests{0};
  std::atomic<std::uint64_t> connections_opened{0};
  std::atomic<std::uint64_t> reused{0};
  std::atomic<std::uint64_t> errors{0};
  std::atomic<std::uint64_t> timeouts{0};

  client_state(asio::any_io_executor ex, client_config cfg)
      : executor(std::move(ex)), strand(asio::make_strand(executor)), config(std::move(cfg)) {
    error_code ec;
    tls.set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                        ssl::context::no_sslv3 | ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1,
                    ec);
    if (config.verify_tls) {
      tls.set_verify_mode(ssl::verify_peer, ec);
      if (config.ca_file.empty()) {
        tls.set_default_verify_paths(ec);
      } else {
        tls.load_verify_file(config.ca_file, ec);
      }
      if (ec) tls_setup_error = fail(errc::bad_config, "cannot load the TLS trust store");
    } else {
      tls.set_verify_mode(ssl::verify_none, ec);
    }
  }

  void wake_waiters(client_host_pool& pool) {
    // Waking all is simpler than handing off a slot; each re-checks the count.
    for (auto* t : pool.waiters) t->cancel();
  }

  // On the strand: an idle connection to reuse, or nullptr with a slot reserved for a new one.
  asio::awaitable<result<std::unique_ptr<client_connection>>> acquire(std::string key,
                                                                      deadline dl) {
    auto& pool = pools[key];
    for (;;) {
      const auto now = steady_clock::now();
      while (!pool.idle.empty()) {
        auto conn = std::move(pool.idle.back());
        pool.idle.pop_back();
        if (now - conn->idle_since < config.idle_timeout) co_return std::move(conn);
        conn->close();
        --pool.open;
      }
      if (pool.open < config.max_connections_per_host) {
        ++pool.open;
        co_return std::unique_ptr<client_connection>{};
      }
      if (now >= dl) co_return fail(errc::timeout, "no free connection to " + key);
      asio::steady_timer timer(strand);
      timer.expires_at(dl);
      auto it = pool.waiters.insert(pool.waiters.end(), &timer);
      auto wait = timer.async_wait(asio::as_tuple(asio::use_awaitable));
      auto [ec] = co_await std::move(wait);
      pool.waiters.erase(it);
      if (!ec) co_return fail(errc::timeout, "no free connection to " + key);
    }
  }

  // On the strand: gives a connection back (nullptr: the slot only).
  void release(const std::string& key, std::unique_ptr<client_connection> conn) {
    auto& pool = pools[key];
    if (conn && pool.idle.size() < config.max_idle_per_host) {
      conn->idle_since = steady_clock::now();
      pool.idle.push_back(std::move(conn));
    } else {
      if (conn) conn->close();
      --pool.open;
    }
    wake_waiters(pool);
  }

  void release_later(const std::shared_ptr<client_state>& self, std::string key,
                     std::unique_ptr<client_connection> conn) {
    asio::post(strand, [self, key = std::move(key), conn = std::move(conn)]() mutable {
      self->release(key, std::move(conn));
    });
  }
};

}  // namespace detail

namespace {

using detail::client_connection;
using detail::client_state;

bool is_verify_failure(const error_code& ec) {
  return ec.category() == asio::error::get_ssl_category() &&
         ERR_GET_REASON(static_cast<unsigned long>(ec.value())) == SSL_R_CERTIFICATE_VERIFY_FAILED;
}

// Resolves, connects and (for https) handshakes, all within `dl`.
asio::awaitable<result<std::unique_ptr<client_connection>>> open_connection(client_state& s,
                                                                            const parsed_url& url,
                                                                            deadline dl) {
  using namespace asio::experimental::awaitable_operators;
  const auto connect_dl = std::min(dl, after(s.config.connect_timeout));

  tcp::resolver resolver(s.executor);
  asio::steady_timer timer(s.executor);
  timer.expires_at(connect_dl);
  auto resolve = resolver.async_resolve(url.host, std::to_string(url.port),
                                        asio::as_tuple(asio::use_awaitable));
  auto expire = timer.async_wait(asio::as_tuple(asio::use_awaitable));
  auto raced = co_await (std::move(resolve) || std::move(expire));
  if (raced.index() == 1) {
    ++s.timeouts;
    co_return fail(errc::timeout, "resolving " + url.host + " timed out");
  }
  auto [rec, endpoints] = std::get<0>(std::move(raced));
  if (rec)
    co_return fail(errc::cloud_transient, "cannot resolve " + url.host + ": " + rec.message());

  auto conn = std::make_unique<client_connection>();
  if (url.tls()) {
    conn->secure.emplace(s.executor, s.tls);
  } else {
    conn->plain.emplace(s.executor);
  }
  conn->tcp().expires_at(connect_dl);
  auto connect = conn->tcp().async_connect(endpoints, asio::as_tuple(asio::use_awaitable));
  auto [cec, ep] = co_await std::move(connect);
  if (cec) {
    if (cec == beast::error::timeout && steady_clock::now() >= dl) {
      ++s.timeouts;
      co_return fail(errc::timeout, "connecting to " + url.host + " timed out");
    }
    if (cec == asio::error::operation_aborted) {
      co_return fail(errc::cancelled, "connecting to " + url.host + " cancelled");
    }
    if (cec == beast::error::timeout) {
      co_return fail(errc::cloud_transient, "connecting to " + url.host + " took longer than " +
                                                std::to_string(s.config.connect_timeout.count()) +
                                                " ms");
    }
    co_return fail(errc::cloud_transient,
                   "connecting to " + url.host + " failed: " + cec.message());
  }
  if (url.tls()) {
    auto* ssl_handle = conn->secure->native_handle();
    error_code ignored;
    asio::ip::make_address(url.host, ignored);
    const bool is_address = !ignored;
    // SNI carries names only (RFC 6066); an IP literal is checked against the cert's IP SANs.
    if (!is_address && SSL_set_tlsext_host_name(ssl_handle, url.host.c_str()) != 1) {
      co_return fail(errc::internal, "cannot set TLS SNI for " + url.host);
    }
    if (s.config.verify_tls) {
      conn->secure->set_verify_callback(ssl::host_name_verification(url.host));
    }
    auto handshake = conn->secure->async_handshake(ssl::stream_base::client,
                                                   asio::as_tuple(asio::use_awaitable));
    auto [hec] = co_await std::move(handshake);
    if (hec) {
      if (is_verify_failure(hec)) {
        co_return fail(errc::cloud_permanent,
                       "TLS certificate verification failed for " + url.host);
      }
      if (hec == beast::error::timeout) {
        ++s.timeouts;
        co_return fail(errc::timeout, "TLS handshake with " + url.host + " timed out");
      }
      co_return fail(errc::cloud_transient,
                     "TLS handshake with " + url.host + " failed: " + hec.message());
    }
  }
  ++s.connections_opened;
  co_return std::move(conn);
}

// A reserved slot in a host's pool, and the connection in it once there is one.
struct slot_lease {
  std::shared_ptr<client_state> s;
  std::string key;
  std::unique_ptr<client_connection> conn;
  bool held = true;

  slot_lease(std::shared_ptr<client_state> state, std::string k)
      : s(std::move(state)), key(std::move(k)) {}
  slot_lease(const slot_lease&) = delete;
  slot_lease& operator=(const slot_lease&) = delete;
  ~slot_lease() {
    if (held) give_back(false);
  }

  void give_back(bool keep) {
    held = false;
    if (conn && !keep) conn->close();
    s->release_later(s, key, keep ? std::move(conn) : nullptr);
  }
};

struct exchange_outcome {
  error_code ec;
  bool got_some = false;  // any byte of a response arrived: the request must not be repeated
  bool keep_alive = false;
  client_response response;
};

template <class Stream>
asio::awaitable<exchange_outcome> exchange(Stream& stream, client_connection& conn,
                                           const http::request<http::string_body>& req,
                                           std::size_t body_limit) {
  exchange_outcome out;
  auto write = http::async_write(stream, req, asio::as_tuple(asio::use_awaitable));
  auto [wec, written] = co_await std::move(write);
  if (wec) {
    out.ec = wec;
    co_return out;
  }
  http::response_parser<http::string_body> parser;
  parser.header_limit(64 * 1024);
  parser.body_limit(body_limit);
  if (req.method() == http::verb::head) parser.skip(true);
  auto read = http::async_read(stream, conn.buffer, parser, asio::as_tuple(asio::use_awaitable));
  auto [rec, read_bytes] = co_await std::move(read);
  out.got_some = parser.got_some() || conn.buffer.size() > 0;
  if (rec) {
    out.ec = rec;
    co_return out;
  }
  auto msg = parser.release();
  out.keep_alive = msg.keep_alive() && !msg.need_eof();
  out.response.status = msg.result_int();
  out.response.body = std::move(msg.body());
  out.response.headers = std::move(static_cast<http::fields&>(msg.base()));
  co_return out;
}

}  // namespace

http_client::http_client(asio::any_io_executor executor, client_config config)
    : state_(std::make_shared<detail::client_state>(std::move(executor), std::move(config))) {}

http_client::~http_client() {
  // Idle connections are closed on the strand; requests in flight keep the state alive.
  asio::post(state_->strand, [s = state_] {
    for (auto& [key, pool] : s->pools) {
      for (auto& c : pool.idle) c->close();
      pool.open -= pool.idle.size();
      pool.idle.clear();
    }
  });
}

client_stats http_client::stats() const {
  return {state_->requests.load(), state_->connections_opened.load(), state_->reused.load(),
          state_->errors.load(), state_->timeouts.load()};
}

asio::awaitable<result<client_response>> http_client::send(client_request req, deadline dl) {
  auto s = state_;
  ++s->requests;
  auto url = parse_url(req.url);
  if (!url) {
    ++s->errors;
    co_return url.error();
  }
  if (url->tls() && s->tls_setup_error) {
    ++s->errors;
    co_return *s->tls_setup_error;
  }
  const std::string key = url->scheme + "://" + url->host + ":" + std::to_string(url->port);

  http::request<http::string_body> message{req.method, url->target, 11};
  message.set(http::field::host, host_header(*url));
  message.set(http::field::user_agent, s->config.user_agent);
  for (auto& [name, value] : req.headers) message.set(name, value);
  message.body() = std::move(req.body);
  if (!message.body().empty() || req.method == http::verb::post || req.method == http::verb::put ||
      req.method == http::verb::patch) {
    message.prepare_payload();
  }
  message.keep_alive(true);

  for (int attempt = 0;; ++attempt) {
    auto acquiring = asio::co_spawn(s->strand, s->acquire(key, dl), asio::use_awaitable);
    auto acquired = co_await std::move(acquiring);
    if (!acquired) {
      ++s->errors;
      if (acquired.error().is(errc::timeout)) ++s->timeouts;
      co_return acquired.error();
    }
    // From here the slot is ours; `held` gives it back even if this coroutine is destroyed
    // mid-request (cancelled by its caller).
    slot_lease held{s, key};
    auto& conn = held.conn;
    conn = std::move(*acquired);
    const bool reused = conn != nullptr;
    if (!conn) {
      auto opening = open_connection(*s, *url, dl);
      auto opened = co_await std::move(opening);
      if (!opened) {
        ++s->errors;
        co_return opened.error();
      }
      conn = std::move(*opened);
    } else {
      ++s->reused;
    }

    conn->tcp().expires_at(dl);
    exchange_outcome outcome;
    if (conn->secure) {
      auto op = exchange(*conn->secure, *conn, message, s->config.max_response_body);
      outcome = co_await std::move(op);
    } else {
      auto op = exchange(*conn->plain, *conn, message, s->config.max_response_body);
      outcome = co_await std::move(op);
    }

    if (!outcome.ec) {
      conn->tcp().expires_never();
      held.give_back(outcome.keep_alive);
      co_return std::move(outcome.response);
    }

    held.give_back(false);
    const bool timed_out = outcome.ec == beast::error::timeout || steady_clock::now() >= dl;
    if (outcome.ec == asio::error::operation_aborted && !timed_out) {
      ++s->errors;
      co_return fail(errc::cancelled, "request to " + url->host + " cancelled");
    }
    // A pooled connection the server had already closed: nothing of ours was processed.
    if (reused && attempt == 0 && !outcome.got_some && !timed_out) continue;

    ++s->errors;
    if (outcome.ec == http::error::body_limit) {
      co_return fail(errc::cloud_permanent, "response body from " + url->host + " exceeds " +
                                                std::to_string(s->config.max_response_body) +
                                                " bytes");
    }
    if (timed_out) {
      ++s->timeouts;
      co_return fail(errc::timeout, "request to " + url->host + " timed out");
    }
    if (outcome.got_some && outcome.ec != http::error::end_of_stream &&
        outcome.ec != asio::error::eof && outcome.ec != ssl::error::stream_truncated &&
        outcome.ec != asio::error::connection_reset) {
      co_return fail(errc::cloud_transient,
                     "malformed response from " + url->host + ": " + outcome.ec.message());
    }
    co_return fail(errc::cloud_transient, "connection to " + url->host +
                                              " lost before a response: " + outcome.ec.message());
  }
}

}  // namespace cloudbrain::net
