#include "net/http_client.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>

#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace cloudbrain::net {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace ssl = asio::ssl;
namespace fs = std::filesystem;
using tcp = asio::ip::tcp;
using namespace std::chrono_literals;

// A self-signed certificate (its own CA) written by the openssl command into a temp dir.
struct test_cert {
  fs::path cert;
  fs::path key;
};

test_cert make_cert(const fs::path& dir, const std::string& name, const std::string& san) {
  test_cert out{dir / (name + ".crt"), dir / (name + ".key")};
  const std::string cmd = "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=" + name +
                          " -addext subjectAltName=" + san + " -keyout " + out.key.string() +
                          " -out " + out.cert.string() + " >/dev/null 2>&1";
  if (std::system(cmd.c_str()) != 0) throw std::runtime_error("openssl req failed");
  return out;
}

// A Beast server on 127.0.0.1:0 with its own thread. Paths: /echo answers "METHOD:body";
// /big answers 4000 bytes; /slow answers after 50 ms; /hang never answers.
class test_server {
 public:
  explicit test_server(const test_cert* cert = nullptr, bool close_after_response = false)
      : close_after_response_(close_after_response) {
    if (cert) {
      tls_.emplace(ssl::context::tls_server);
      tls_->use_certificate_chain_file(cert->cert.string());
      tls_->use_private_key_file(cert->key.string(), ssl::context::pem);
    }
    acceptor_.open(tcp::v4());
    acceptor_.set_option(tcp::acceptor::reuse_address(true));
    acceptor_.bind(tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    acceptor_.listen();
    asio::co_spawn(ioc_, accept_loop(), asio::detached);
    thread_ = std::thread([this] { ioc_.run(); });
  }
  ~test_server() {
    ioc_.stop();
    thread_.join();
  }

  [[nodiscard]] std::uint16_t port() const { return acceptor_.local_endpoint().port(); }
  std::atomic<int> accepted{0};
  std::atomic<int> active{0};
  std::atomic<int> max_active{0};

 private:
  asio::awaitable<void> accept_loop() {
    for (;;) {
      auto accepting = acceptor_.async_accept(asio::as_tuple(asio::use_awaitable));
      auto [ec, socket] = co_await std::move(accepting);
      if (ec) co_return;
      ++accepted;
      const int now = ++active;
      int seen = max_active.load();
      while (now > seen && !max_active.compare_exchange_weak(seen, now)) {
      }
      asio::co_spawn(ioc_, session(std::move(socket)), asio::detached);
    }
  }

  asio::awaitable<void> session(tcp::socket socket) {
    if (tls_) {
      ssl::stream<beast::tcp_stream> stream(beast::tcp_stream(std::move(socket)), *tls_);
      auto hs =
          stream.async_handshake(ssl::stream_base::server, asio::as_tuple(asio::use_awaitable));
      auto [ec] = co_await std::move(hs);
      if (!ec) {
        auto serving = serve(stream);
        co_await std::move(serving);
      }
    } else {
      beast::tcp_stream stream(std::move(socket));
      auto serving = serve(stream);
      co_await std::move(serving);
      error_code ignored;
      stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
    }
    --active;
  }

  using error_code = boost::system::error_code;

  template <class Stream>
  asio::awaitable<void> serve(Stream& stream) {
    beast::flat_buffer buffer;
    for (;;) {
      http::request<http::string_body> req;
      auto reading = http::async_read(stream, buffer, req, asio::as_tuple(asio::use_awaitable));
      auto [rec, n] = co_await std::move(reading);
      if (rec) co_return;
      http::response<http::string_body> res{http::status::ok, req.version()};
      const std::string target(req.target());
      if (target == "/hang" || target == "/slow") {
        asio::steady_timer timer(ioc_);
        timer.expires_after(target == "/hang" ? 30s : 50ms);
        auto waiting = timer.async_wait(asio::as_tuple(asio::use_awaitable));
        co_await std::move(waiting);
      }
      if (target == "/big") {
        res.body() = std::string(4000, 'x');
      } else {
        res.body() = std::string(req.method_string()) + ":" + req.body();
      }
      res.set("X-Seen-Agent", req[http::field::user_agent]);
      res.keep_alive(true);
      res.prepare_payload();
      auto writing = http::async_write(stream, res, asio::as_tuple(asio::use_awaitable));
      auto [wec, w] = co_await std::move(writing);
      if (wec || close_after_response_) co_return;
    }
  }

  asio::io_context ioc_;
  tcp::acceptor acceptor_{ioc_};
  std::optional<ssl::context> tls_;
  bool close_after_response_;
  std::thread thread_;
};

// Runs one send on a fresh run of `ioc`.
result<client_response> run_send(asio::io_context& ioc, http_client& client, client_request req,
                                 deadline dl) {
  auto fut = asio::co_spawn(ioc, client.send(std::move(req), dl), asio::use_future);
  ioc.restart();
  ioc.run();
  return fut.get();
}

client_request get(std::string url) { return {http::verb::get, std::move(url), {}, {}}; }

std::string base(const test_server& s, const char* scheme = "http",
                 const char* host = "127.0.0.1") {
  return std::string(scheme) + "://" + host + ":" + std::to_string(s.port());
}

class http_client_test : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = fs::temp_directory_path() / ("cloudbrain-hc-" + std::to_string(::getpid()));
    fs::create_directories(dir_);
    both_ = make_cert(dir_, "both", "IP:127.0.0.1,DNS:localhost");
    name_only_ = make_cert(dir_, "localhost", "DNS:localhost");
  }
  static void TearDownTestSuite() { fs::remove_all(dir_); }

  static inline fs::path dir_;
  static inline test_cert both_;
  static inline test_cert name_only_;
  asio::io_context ioc_;
};

TEST(parse_url, splits_absolute_urls) {
  auto u = parse_url("https://compute.googleapis.com/compute/v1/projects/p?alt=json");
  ASSERT_TRUE(u);
  EXPECT_EQ(u->scheme, "https");
  EXPECT_EQ(u->host, "compute.googleapis.com");
  EXPECT_EQ(u->port, 443);
  EXPECT_EQ(u->target, "/compute/v1/projects/p?alt=json");
  EXPECT_TRUE(u->tls());

  u = parse_url("http://127.0.0.1:8080");
  ASSERT_TRUE(u);
  EXPECT_EQ(u->port, 8080);
  EXPECT_EQ(u->target, "/");
  EXPECT_FALSE(u->tls());

  u = parse_url("HTTP://[::1]/a%20b");
  ASSERT_TRUE(u);
  EXPECT_EQ(u->scheme, "http");
  EXPECT_EQ(u->host, "::1");
  EXPECT_EQ(u->port, 80);
  EXPECT_EQ(u->target, "/a%20b");
}

TEST(parse_url, rejects_what_cannot_be_sent) {
  for (const char* bad : {"", "/relative", "ftp://host/", "https://", "https://host:0/",
                          "https://host:99999/", "https://user:pw@host/", "not a url"}) {
    auto u = parse_url(bad);
    ASSERT_FALSE(u) << bad;
    EXPECT_TRUE(u.error().is(errc::invalid_argument)) << bad;
  }
}

TEST_F(http_client_test, get_and_post_round_trip) {
  test_server server;
  http_client client(ioc_.get_executor(), {});
  auto r = run_send(ioc_, client, get(base(server) + "/echo"), after(5s));
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(r->status, 200u);
  EXPECT_EQ(r->body, "GET:");
  EXPECT_EQ(r->headers["X-Seen-Agent"], "cloudbrain");

  client_request post{
      http::verb::post, base(server) + "/echo", {{"Content-Type", "text/plain"}}, "hello"};
  r = run_send(ioc_, client, std::move(post), after(5s));
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(r->body, "POST:hello");
}

TEST_F(http_client_test, keep_alive_reuses_one_connection) {
  test_server server;
  http_client client(ioc_.get_executor(), {});
  for (int i = 0; i < 3; ++i) {
    auto r = run_send(ioc_, client, get(base(server) + "/echo"), after(5s));
    ASSERT_TRUE(r) << r.error().message();
  }
  EXPECT_EQ(client.stats().connections_opened, 1u);
  EXPECT_EQ(client.stats().reused, 2u);
  EXPECT_EQ(server.accepted.load(), 1);
}

TEST_F(http_client_test, retries_once_when_the_server_closed_an_idle_connection) {
  test_server server(nullptr, /*close_after_response=*/true);
  http_client client(ioc_.get_executor(), {});
  auto r = run_send(ioc_, client, get(base(server) + "/echo"), after(5s));
  ASSERT_TRUE(r) << r.error().message();
  std::this_thread::sleep_for(100ms);
  r = run_send(ioc_, client, get(base(server) + "/echo"), after(5s));
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(client.stats().connections_opened, 2u);
  EXPECT_EQ(client.stats().errors, 0u);
}

TEST_F(http_client_test, concurrent_requests_respect_the_connection_cap) {
  test_server server;
  client_config config;
  config.max_connections_per_host = 4;
  http_client client(ioc_.get_executor(), config);
  std::vector<std::future<result<client_response>>> futures;
  for (int i = 0; i < 20; ++i) {
    futures.push_back(asio::co_spawn(ioc_, client.send(get(base(server) + "/slow"), after(10s)),
                                     asio::use_future));
  }
  ioc_.run();
  for (auto& f : futures) {
    auto r = f.get();
    ASSERT_TRUE(r) << r.error().message();
  }
  EXPECT_LE(client.stats().connections_opened, 4u);
  EXPECT_LE(server.accepted.load(), 4);
  EXPECT_EQ(client.stats().requests, 20u);
}

TEST_F(http_client_test, callers_on_different_strands_and_threads_share_one_pool) {
  test_server server;
  client_config config;
  config.max_connections_per_host = 3;
  http_client client(ioc_.get_executor(), config);
  std::vector<std::future<result<client_response>>> futures;
  for (int i = 0; i < 30; ++i) {
    futures.push_back(asio::co_spawn(asio::make_strand(ioc_),
                                     client.send(get(base(server) + "/echo"), after(10s)),
                                     asio::use_future));
  }
  std::vector<std::thread> threads;
  for (int i = 0; i < 3; ++i) threads.emplace_back([this] { ioc_.run(); });
  for (auto& t : threads) t.join();
  for (auto& f : futures) {
    auto r = f.get();
    ASSERT_TRUE(r) << r.error().message();
    EXPECT_EQ(r->body, "GET:");
  }
  EXPECT_LE(client.stats().connections_opened, 3u);
  EXPECT_EQ(client.stats().requests, 30u);
}

TEST_F(http_client_test, a_server_that_never_answers_times_out_at_the_deadline) {
  test_server server;
  http_client client(ioc_.get_executor(), {});
  const auto start = std::chrono::steady_clock::now();
  auto r = run_send(ioc_, client, get(base(server) + "/hang"), after(300ms));
  const auto took = std::chrono::steady_clock::now() - start;
  ASSERT_FALSE(r);
  EXPECT_TRUE(r.error().is(errc::timeout)) << r.error().message();
  EXPECT_GE(took, 280ms);
  EXPECT_LT(took, 2s);
  EXPECT_EQ(client.stats().timeouts, 1u);
}

TEST_F(http_client_test, a_cancelled_request_gives_its_connection_slot_back) {
  test_server server;
  client_config config;
  config.max_connections_per_host = 1;
  http_client client(ioc_.get_executor(), config);
  auto race = [&]() -> asio::awaitable<bool> {
    using namespace asio::experimental::awaitable_operators;
    asio::steady_timer timer(co_await asio::this_coro::executor, 100ms);
    auto sending = client.send(get(base(server) + "/hang"), after(10s));
    auto waiting = timer.async_wait(asio::use_awaitable);
    auto winner = co_await (std::move(sending) || std::move(waiting));
    co_return winner.index() == 1;
  };
  auto raced = asio::co_spawn(ioc_, race(), asio::use_future);
  ioc_.run();
  ASSERT_TRUE(raced.get());
  auto r = run_send(ioc_, client, get(base(server) + "/echo"), after(2s));
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(client.stats().connections_opened, 2u);
}

TEST_F(http_client_test, a_refused_port_is_transient_and_fast) {
  std::uint16_t port = 0;
  {
    asio::io_context tmp;
    tcp::acceptor a(tmp, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    port = a.local_endpoint().port();
  }
  http_client client(ioc_.get_executor(), {});
  const auto start = std::chrono::steady_clock::now();
  auto r = run_send(ioc_, client, get("http://127.0.0.1:" + std::to_string(port) + "/"), after(5s));
  ASSERT_FALSE(r);
  EXPECT_TRUE(r.error().is(errc::cloud_transient)) << r.error().message();
  EXPECT_LT(std::chrono::steady_clock::now() - start, 1s);
}

TEST_F(http_client_test, tls_with_the_test_ca_works) {
  test_server server(&both_);
  client_config config;
  config.ca_file = both_.cert.string();
  http_client client(ioc_.get_executor(), config);
  for (int i = 0; i < 2; ++i) {
    auto r = run_send(ioc_, client, get(base(server, "https") + "/echo"), after(5s));
    ASSERT_TRUE(r) << r.error().message();
    EXPECT_EQ(r->body, "GET:");
  }
  EXPECT_EQ(client.stats().connections_opened, 1u);
}

TEST_F(http_client_test, tls_against_the_system_store_fails_verification) {
  test_server server(&both_);
  http_client client(ioc_.get_executor(), {});
  auto r = run_send(ioc_, client, get(base(server, "https") + "/echo"), after(5s));
  ASSERT_FALSE(r);
  EXPECT_TRUE(r.error().is(errc::cloud_permanent)) << r.error().message();
  EXPECT_EQ(r.error().detail, "TLS certificate verification failed for 127.0.0.1");
}

TEST_F(http_client_test, tls_without_verification_works) {
  test_server server(&both_);
  client_config config;
  config.verify_tls = false;
  http_client client(ioc_.get_executor(), config);
  auto r = run_send(ioc_, client, get(base(server, "https") + "/echo"), after(5s));
  ASSERT_TRUE(r) << r.error().message();
}

TEST_F(http_client_test, tls_hostname_mismatch_fails) {
  test_server server(&name_only_);
  client_config config;
  config.ca_file = name_only_.cert.string();
  http_client client(ioc_.get_executor(), config);
  auto r = run_send(ioc_, client, get(base(server, "https") + "/echo"), after(5s));
  ASSERT_FALSE(r);
  EXPECT_TRUE(r.error().is(errc::cloud_permanent)) << r.error().message();
  EXPECT_EQ(r.error().detail, "TLS certificate verification failed for 127.0.0.1");

  // The same certificate is good for the name it was made for.
  r = run_send(ioc_, client, get(base(server, "https", "localhost") + "/echo"), after(5s));
  ASSERT_TRUE(r) << r.error().message();
}

TEST_F(http_client_test, a_body_over_the_limit_is_an_error) {
  test_server server;
  client_config config;
  config.max_response_body = 1000;
  http_client client(ioc_.get_executor(), config);
  auto r = run_send(ioc_, client, get(base(server) + "/big"), after(5s));
  ASSERT_FALSE(r);
  EXPECT_TRUE(r.error().is(errc::cloud_permanent)) << r.error().message();
}

}  // namespace
}  // namespace cloudbrain::net
