#include "net/server.hpp"

#include "live_server.hpp"
#include "net/problem.hpp"
#include "net/tls.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/json/parse.hpp>
#include <boost/system/system_error.hpp>

#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <mutex>
#include <set>
#include <thread>

#include <unistd.h>

namespace cloudbrain::net {
namespace {

using namespace testing;
namespace json = boost::json;
namespace websocket = boost::beast::websocket;
using steady_clock = std::chrono::steady_clock;

// What the test handlers and the metrics hook saw.
struct probe {
  std::atomic<int> slow_started{0};
  std::atomic<int> slow_cancelled{0};
  std::atomic<int> done_calls{0};
  std::mutex mutex;
  std::vector<std::pair<std::string, unsigned>> done;

  std::vector<std::pair<std::string, unsigned>> requests_done() {
    std::lock_guard lock(mutex);
    return done;
  }
};

std::string query_value(const request_context& ctx, std::string_view key, std::string fallback) {
  const auto it = ctx.query.find(key);
  return it == ctx.query.end() ? fallback : std::string((*it).value);
}

std::shared_ptr<router> test_routes(const std::shared_ptr<probe>& p) {
  auto r = std::make_shared<router>();
  r->add(
      http::verb::get, "/hello",
      [](request_context& ctx) -> asio::awaitable<response> {
        co_return json_response(http::status::ok,
                                json::object{{"hello", "world"}, {"request_id", ctx.request_id}});
      },
      "hello");
  r->add(
      http::verb::get, "/instances/:id",
      [](request_context& ctx) -> asio::awaitable<response> {
        co_return json_response(http::status::ok, json::object{{"id", ctx.param("id")},
                                                               {"path", ctx.path},
                                                               {"route", ctx.route},
                                                               {"q", query_value(ctx, "q", "")}});
      },
      "instances.get");
  r->add(
      http::verb::post, "/echo",
      [](request_context& ctx) -> asio::awaitable<response> {
        co_return json_response(http::status::ok, json::object{{"size", ctx.req.body().size()}});
      },
      "echo");
  r->add(
      http::verb::get, "/boom",
      [](request_context&) -> asio::awaitable<response> {
        throw std::runtime_error("handler bug with internal detail");
        co_return response{};
      },
      "boom");
  r->add(
      http::verb::get, "/slow",
      [p](request_context& ctx) -> asio::awaitable<response> {
        const int ms = std::stoi(query_value(ctx, "ms", "300"));
        ++p->slow_started;
        auto ex = co_await asio::this_coro::executor;
        asio::steady_timer timer(ex, std::chrono::milliseconds(ms));
        auto [ec] = co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
        if (ec) {
          ++p->slow_cancelled;
          throw boost::system::system_error(ec);
        }
        co_return json_response(http::status::ok, json::object{{"slept_ms", ms}});
      },
      "slow");
  r->add_upgrade(
      "/drivers/connect",
      [](request_context& ctx, connection_stream stream) -> asio::awaitable<void> {
        websocket::stream<connection_stream> ws(std::move(stream));
        co_await ws.async_accept(ctx.req, asio::use_awaitable);
        beast::flat_buffer buffer;
        co_await ws.async_read(buffer, asio::use_awaitable);
        ws.text(ws.got_text());
        co_await ws.async_write(buffer.data(), asio::use_awaitable);
        co_await ws.async_close(websocket::close_code::normal, asio::use_awaitable);
      },
      "drivers.connect");
  // The same echo behind a gate that wants X-Let-In.
  r->add_upgrade(
      "/gated",
      [](request_context& ctx, connection_stream stream) -> asio::awaitable<void> {
        websocket::stream<connection_stream> ws(std::move(stream));
        co_await ws.async_accept(ctx.req, asio::use_awaitable);
        co_await ws.async_close(websocket::close_code::normal, asio::use_awaitable);
      },
      "gated",
      [](request_context& ctx) -> asio::awaitable<std::optional<response>> {
        if (ctx.req.find("X-Let-In") != ctx.req.end()) co_return std::nullopt;
        co_return problem(http::status::unauthorized, "invalid_token", "Unauthorized", "no");
      });
  return r;
}

server_config test_config(const std::shared_ptr<probe>& p) {
  server_config cfg;
  cfg.on_request_done = [p](std::string_view method, std::string_view route, unsigned status,
                            std::chrono::nanoseconds) {
    {
      std::lock_guard lock(p->mutex);
      p->done.emplace_back(std::string(method) + " " + std::string(route), status);
    }
    ++p->done_calls;
  };
  return cfg;
}

json::object body_of(const response& res) { return json::parse(res.body()).as_object(); }

std::string text(const json::value& v) { return std::string(v.as_string()); }

bool is_generated_id(std::string_view id) {
  return id.size() == 32 && id.find_first_not_of("0123456789abcdef") == std::string_view::npos;
}

class server_test : public ::testing::Test {
 protected:
  std::shared_ptr<probe> probe_ = std::make_shared<probe>();

  std::unique_ptr<live_server> start(server_config cfg = {}, int threads = 1) {
    auto hook = test_config(probe_).on_request_done;
    cfg.on_request_done = hook;
    return std::make_unique<live_server>(test_routes(probe_), std::move(cfg), threads);
  }
};

TEST_F(server_test, keeps_a_connection_alive_across_requests) {
  auto srv = start();
  client c(srv->endpoint());
  ASSERT_TRUE(c.connected());
  const response first = c.get("/hello");
  const response second = c.get("/hello");
  for (const response* res : {&first, &second}) {
    EXPECT_EQ(res->result(), http::status::ok);
    EXPECT_EQ((*res)[http::field::content_type], "application/json");
    EXPECT_EQ((*res)[http::field::server], "cloudbrain");
    EXPECT_TRUE((*res)[http::field::date].ends_with(" GMT"));
    EXPECT_TRUE(res->keep_alive());
    EXPECT_EQ(body_of(*res).at("hello"), "world");
  }
  EXPECT_NE(first["X-Request-ID"], second["X-Request-ID"]);
  EXPECT_EQ(srv->get().active_connections(), 1u);
  EXPECT_FALSE(srv->get().draining());
}

TEST_F(server_test, http_1_0_closes_after_the_response) {
  auto srv = start();
  client c(srv->endpoint());
  request req = make_request(http::verb::get, "/hello");
  req.version(10);
  const response res = c.roundtrip(std::move(req));
  EXPECT_EQ(res.result(), http::status::ok);
  EXPECT_FALSE(res.keep_alive());
  EXPECT_TRUE(c.closed_by_server());
}

TEST_F(server_test, passes_captures_path_and_query_to_handlers) {
  auto srv = start();
  client c(srv->endpoint());
  const response res = c.get("/instances/a%20b?q=x%20y&other=1");
  ASSERT_EQ(res.result(), http::status::ok) << res.body();
  const json::object body = body_of(res);
  EXPECT_EQ(body.at("id"), "a b");
  EXPECT_EQ(body.at("path"), "/instances/a b");
  EXPECT_EQ(body.at("route"), "instances.get");
  EXPECT_EQ(body.at("q"), "x y");
}

TEST_F(server_test, answers_unknown_paths_and_methods_with_problems) {
  auto srv = start();
  client c(srv->endpoint());

  const response missing = c.get("/nope");
  EXPECT_EQ(missing.result(), http::status::not_found);
  EXPECT_EQ(missing[http::field::content_type], "application/problem+json");
  EXPECT_EQ(body_of(missing).at("code"), "not_found");

  const response wrong = c.roundtrip(make_request(http::verb::delete_, "/hello"));
  EXPECT_EQ(wrong.result(), http::status::method_not_allowed);
  EXPECT_EQ(wrong[http::field::allow], "GET, HEAD");
  EXPECT_EQ(body_of(wrong).at("code"), "method_not_allowed");

  // A target that is not valid percent-encoding is refused, not crashed on.
  const response bad = c.get("/instances/%zz");
  EXPECT_EQ(bad.result(), http::status::not_found);
  EXPECT_EQ(body_of(bad).at("code"), "not_found");

  // None of these closed the connection.
  EXPECT_EQ(c.get("/hello").result(), http::status::ok);
}

TEST_F(server_test, head_sends_the_get_headers_without_a_body) {
  auto srv = start();
  client c(srv->endpoint());
  const response get = c.get("/hello", {{"X-Request-ID", "same"}});
  request head_request = make_request(http::verb::head, "/hello");
  head_request.set("X-Request-ID", "same");
  const response head = c.roundtrip(std::move(head_request));
  EXPECT_EQ(head.result(), http::status::ok);
  EXPECT_TRUE(head.body().empty());
  EXPECT_EQ(head[http::field::content_length], get[http::field::content_length]);
  EXPECT_EQ(c.get("/hello").result(), http::status::ok);  // framing intact
}

TEST_F(server_test, refuses_a_body_over_the_limit_by_content_length) {
  server_config cfg;
  cfg.body_limit = 1024;
  auto srv = start(cfg);

  client ok(srv->endpoint());
  const response fine =
      ok.roundtrip(make_request(http::verb::post, "/echo", std::string(1024, 'a')));
  EXPECT_EQ(fine.result(), http::status::ok);
  EXPECT_EQ(body_of(fine).at("size"), 1024);

  client c(srv->endpoint());
  ASSERT_FALSE(c.send(make_request(http::verb::post, "/echo", std::string(64 * 1024, 'a'))));
  response res;
  ASSERT_FALSE(c.receive(res));
  EXPECT_EQ(res.result(), http::status::payload_too_large);
  EXPECT_EQ(res[http::field::content_type], "application/problem+json");
  EXPECT_EQ(body_of(res).at("code"), "payload_too_large");
  EXPECT_TRUE(is_generated_id(res["X-Request-ID"]));
  EXPECT_FALSE(res.keep_alive());
  EXPECT_TRUE(c.closed_by_server());
}

std::string chunked_post(std::size_t chunks, std::size_t chunk_size) {
  std::string raw =
      "POST /echo HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
      "Transfer-Encoding: chunked\r\n\r\n";
  char size_line[32];
  std::snprintf(size_line, sizeof size_line, "%zx\r\n", chunk_size);
  for (std::size_t i = 0; i < chunks; ++i) {
    raw += size_line;
    raw += std::string(chunk_size, 'b');
    raw += "\r\n";
  }
  raw += "0\r\n\r\n";
  return raw;
}

TEST_F(server_test, refuses_a_chunked_body_over_the_limit) {
  server_config cfg;
  cfg.body_limit = 1024;
  auto srv = start(cfg);

  client ok(srv->endpoint());
  ASSERT_FALSE(ok.send_raw(chunked_post(4, 256)));
  response fine;
  ASSERT_FALSE(ok.receive(fine));
  EXPECT_EQ(fine.result(), http::status::ok);
  EXPECT_EQ(body_of(fine).at("size"), 1024);

  client c(srv->endpoint());
  ASSERT_FALSE(c.send_raw(chunked_post(16, 512)));
  response res;
  ASSERT_FALSE(c.receive(res));
  EXPECT_EQ(res.result(), http::status::payload_too_large);
  EXPECT_EQ(body_of(res).at("code"), "payload_too_large");
  EXPECT_TRUE(c.closed_by_server());
}

TEST_F(server_test, refuses_headers_over_the_limit) {
  auto srv = start();  // default header_limit: 8 KiB

  client one(srv->endpoint());
  ASSERT_TRUE(one.connected());
  response res = one.get("/hello", {{"X-Filler", std::string(9 * 1024, 'h')}});
  EXPECT_EQ(res.result(), http::status::request_header_fields_too_large);
  EXPECT_EQ(res[http::field::content_type], "application/problem+json");
  EXPECT_EQ(body_of(res).at("code"), "headers_too_large");
  EXPECT_TRUE(one.closed_by_server());

  // Many small fields that arrive in several reads count as one header.
  client many(srv->endpoint());
  std::vector<std::pair<std::string, std::string>> headers;
  for (int i = 0; i < 90; ++i)
    headers.emplace_back("X-Filler-" + std::to_string(i), std::string(90, 'h'));
  res = many.get("/hello", headers);
  EXPECT_EQ(res.result(), http::status::request_header_fields_too_large);
  EXPECT_TRUE(many.closed_by_server());

  // The same in two writes, the second one completing the header.
  std::string raw = "GET /hello HTTP/1.1\r\nHost: localhost\r\n";
  for (const auto& [name, value] : headers) raw += name + ": " + value + "\r\n";
  raw += "\r\n";
  client split(srv->endpoint());
  ASSERT_FALSE(split.send_raw(std::string_view(raw).substr(0, 4000)));
  std::this_thread::sleep_for(50ms);
  ASSERT_FALSE(split.send_raw(std::string_view(raw).substr(4000)));
  ASSERT_FALSE(split.receive(res));
  EXPECT_EQ(res.result(), http::status::request_header_fields_too_large);
  EXPECT_TRUE(split.closed_by_server());
}

TEST_F(server_test, counts_a_header_that_trickles_in_as_a_whole) {
  auto srv = start();
  client c(srv->endpoint());
  ASSERT_FALSE(c.send_raw("GET /hello HTTP/1.1\r\nHost: localhost\r\n"));
  for (int i = 0; i < 100; ++i) {
    ASSERT_FALSE(
        c.send_raw("X-Filler-" + std::to_string(i) + ": " + std::string(90, 'h') + "\r\n"));
    std::this_thread::sleep_for(1ms);
  }
  ASSERT_FALSE(c.send_raw("\r\n"));
  response res;
  ASSERT_FALSE(c.receive(res));
  EXPECT_EQ(res.result(), http::status::request_header_fields_too_large);
  EXPECT_TRUE(c.closed_by_server());
}

TEST_F(server_test, answers_100_continue) {
  auto srv = start();
  client c(srv->endpoint());
  ASSERT_FALSE(
      c.send_raw("POST /echo HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                 "Content-Length: 13\r\nExpect: 100-continue\r\n\r\n"));
  unsigned interim = 0;
  ASSERT_FALSE(c.receive_interim(interim));
  EXPECT_EQ(interim, 100u);
  ASSERT_FALSE(c.send_raw(R"({"a":"bcdef"})"));
  response res;
  ASSERT_FALSE(c.receive(res));
  EXPECT_EQ(res.result(), http::status::ok);
  EXPECT_EQ(body_of(res).at("size"), 13);
}

TEST_F(server_test, answers_malformed_http_with_400_and_closes) {
  auto srv = start();
  client c(srv->endpoint());
  ASSERT_FALSE(c.send_raw("GET /hello HTTP/1.1\r\nHost localhost\r\n\r\n"));
  response res;
  ASSERT_FALSE(c.receive(res));
  EXPECT_EQ(res.result(), http::status::bad_request);
  EXPECT_EQ(body_of(res).at("code"), "bad_request");
  EXPECT_TRUE(c.closed_by_server());
}

TEST_F(server_test, echoes_a_sane_request_id) {
  auto srv = start();
  client c(srv->endpoint());
  const std::string id = "client-id_1.2:3";
  const response res = c.get("/hello", {{"X-Request-ID", id}});
  EXPECT_EQ(res["X-Request-ID"], id);
  EXPECT_EQ(text(body_of(res).at("request_id")), id);  // the handler sees the same id
  const std::string longest(128, 'x');
  EXPECT_EQ(c.get("/hello", {{"X-Request-ID", longest}})["X-Request-ID"], longest);
  // Error responses carry it too.
  EXPECT_EQ(c.get("/nope", {{"X-Request-ID", id}})["X-Request-ID"], id);
}

TEST_F(server_test, generates_a_request_id_when_none_is_sent) {
  auto srv = start();
  client c(srv->endpoint());
  const response res = c.get("/hello");
  EXPECT_TRUE(is_generated_id(res["X-Request-ID"])) << res["X-Request-ID"];
  EXPECT_EQ(text(body_of(res).at("request_id")), res["X-Request-ID"]);
}

TEST_F(server_test, replaces_an_insane_request_id) {
  auto srv = start();
  client c(srv->endpoint());
  for (const std::string& id :
       {std::string(129, 'x'), std::string("a b"), std::string("<x>"), std::string("\xc3\xa9")}) {
    const response res = c.get("/hello", {{"X-Request-ID", id}});
    EXPECT_EQ(res.result(), http::status::ok);
    EXPECT_TRUE(is_generated_id(res["X-Request-ID"])) << res["X-Request-ID"];
  }

  // Line breaks inside the value: folded or bare. Whatever the parser makes of them, the id that
  // comes back is a fresh one.
  for (const char* raw : {"GET /hello HTTP/1.1\r\nHost: x\r\nX-Request-ID: abc\r\n def\r\n\r\n",
                          "GET /hello HTTP/1.1\r\nHost: x\r\nX-Request-ID: abc\ndef\r\n\r\n"}) {
    client r(srv->endpoint());
    ASSERT_FALSE(r.send_raw(raw));
    response res;
    ASSERT_FALSE(r.receive(res));
    EXPECT_TRUE(res.result() == http::status::ok || res.result() == http::status::bad_request);
    EXPECT_TRUE(is_generated_id(res["X-Request-ID"])) << res["X-Request-ID"];
  }
}

TEST_F(server_test, turns_a_handler_exception_into_500_and_keeps_serving) {
  auto srv = start();
  client c(srv->endpoint());
  const response res = c.get("/boom", {{"X-Request-ID", "boom-1"}});
  EXPECT_EQ(res.result(), http::status::internal_server_error);
  EXPECT_EQ(res[http::field::content_type], "application/problem+json");
  EXPECT_EQ(res["X-Request-ID"], "boom-1");
  const json::object body = body_of(res);
  EXPECT_EQ(body.at("code"), "internal_error");
  EXPECT_EQ(res.body().find("internal detail"), std::string::npos);

  EXPECT_EQ(c.get("/hello").result(), http::status::ok);  // same connection
  client other(srv->endpoint());
  EXPECT_EQ(other.get("/hello").result(), http::status::ok);
}

TEST_F(server_test, turns_away_connections_over_the_limit) {
  server_config cfg;
  cfg.max_connections = 2;
  auto srv = start(cfg);
  auto first = std::make_unique<client>(srv->endpoint());
  client second(srv->endpoint());
  ASSERT_EQ(first->get("/hello").result(), http::status::ok);
  ASSERT_EQ(second.get("/hello").result(), http::status::ok);
  EXPECT_EQ(srv->get().active_connections(), 2u);

  client third(srv->endpoint());
  ASSERT_TRUE(third.connected());
  const response res = third.get("/hello");
  EXPECT_EQ(res.result(), http::status::service_unavailable);
  EXPECT_EQ(res[http::field::content_type], "application/problem+json");
  EXPECT_EQ(body_of(res).at("code"), "overloaded");
  EXPECT_EQ(res[http::field::retry_after], "1");
  EXPECT_TRUE(is_generated_id(res["X-Request-ID"]));
  EXPECT_FALSE(res.keep_alive());
  EXPECT_TRUE(third.closed_by_server());

  first.reset();
  ASSERT_TRUE(eventually([&] { return srv->get().active_connections() == 1; }));
  client fourth(srv->endpoint());
  EXPECT_EQ(fourth.get("/hello").result(), http::status::ok);
  EXPECT_EQ(second.get("/hello").result(), http::status::ok);
}

TEST_F(server_test, closes_idle_connections) {
  server_config cfg;
  cfg.idle_timeout = std::chrono::milliseconds(200);
  auto srv = start(cfg);
  client c(srv->endpoint());
  ASSERT_EQ(c.get("/hello").result(), http::status::ok);
  const auto before = steady_clock::now();
  EXPECT_TRUE(c.closed_by_server(3s));
  EXPECT_GE(steady_clock::now() - before, 150ms);
  EXPECT_TRUE(eventually([&] { return srv->get().active_connections() == 0; }));
}

TEST_F(server_test, closes_connections_that_send_too_slowly) {
  server_config cfg;
  cfg.read_timeout = std::chrono::milliseconds(300);
  auto srv = start(cfg);

  client silent(srv->endpoint());
  ASSERT_TRUE(silent.connected());
  client partial(srv->endpoint());
  ASSERT_FALSE(partial.send_raw("GET /hello HTTP/1.1\r\nHost: loc"));

  const auto before = steady_clock::now();
  EXPECT_TRUE(silent.closed_by_server(3s));
  EXPECT_TRUE(partial.closed_by_server(3s));
  EXPECT_GE(steady_clock::now() - before, 200ms);
  EXPECT_LT(steady_clock::now() - before, 2500ms);
}

TEST_F(server_test, shutdown_lets_requests_in_flight_finish) {
  auto srv = start();
  client idle(srv->endpoint());
  ASSERT_EQ(idle.get("/hello").result(), http::status::ok);
  client busy(srv->endpoint());
  ASSERT_FALSE(busy.send(make_request(http::verb::get, "/slow?ms=500")));
  ASSERT_TRUE(eventually([&] { return probe_->slow_started == 1; }));

  const auto began = steady_clock::now();
  auto done = srv->shutdown(steady_clock::now() + 10s);
  EXPECT_TRUE(idle.closed_by_server(2s));  // idle keep-alive connections go at once

  response res;
  ASSERT_FALSE(busy.receive(res));
  EXPECT_EQ(res.result(), http::status::ok);
  EXPECT_EQ(body_of(res).at("slept_ms"), 500);
  EXPECT_FALSE(res.keep_alive());  // Connection: close
  EXPECT_TRUE(busy.closed_by_server());
  busy.stream().close();  // as a client does after Connection: close

  ASSERT_EQ(done.wait_for(5s), std::future_status::ready);
  done.get();
  EXPECT_LT(steady_clock::now() - began, 5s);
  EXPECT_TRUE(srv->get().draining());
  EXPECT_EQ(srv->get().active_connections(), 0u);
  EXPECT_EQ(probe_->slow_cancelled, 0);

  client late(srv->endpoint(), 1s);
  EXPECT_FALSE(late.connected());
}

TEST_F(server_test, shutdown_closes_what_is_left_at_the_deadline) {
  auto srv = start();
  client busy(srv->endpoint());
  ASSERT_FALSE(busy.send(make_request(http::verb::get, "/slow?ms=30000")));
  ASSERT_TRUE(eventually([&] { return probe_->slow_started == 1; }));

  const auto began = steady_clock::now();
  auto done = srv->shutdown(steady_clock::now() + 300ms);
  ASSERT_EQ(done.wait_for(5s), std::future_status::ready);
  done.get();
  const auto took = steady_clock::now() - began;
  EXPECT_GE(took, 250ms);
  EXPECT_LT(took, 3s);

  response res;
  EXPECT_TRUE(busy.receive(res));  // closed without an answer
  EXPECT_TRUE(eventually([&] { return probe_->slow_cancelled == 1; }));
  EXPECT_TRUE(eventually([&] { return srv->get().active_connections() == 0; }));
}

TEST_F(server_test, shutdown_with_nothing_open_returns_at_once) {
  auto srv = start();
  const auto began = steady_clock::now();
  auto done = srv->shutdown(steady_clock::now() + 10s);
  ASSERT_EQ(done.wait_for(5s), std::future_status::ready);
  EXPECT_LT(steady_clock::now() - began, 1s);
  client late(srv->endpoint(), 1s);
  EXPECT_FALSE(late.connected());
}

TEST_F(server_test, serves_many_clients_with_two_threads) {
  auto srv = start({}, 2);
  constexpr int clients = 8;
  constexpr int requests = 25;
  std::mutex mutex;
  std::set<std::string> ids;
  std::atomic<int> ok{0};
  std::atomic<int> failed{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < clients; ++i) {
    threads.emplace_back([&, i] {
      client c(srv->endpoint());
      for (int j = 0; j < requests; ++j) {
        try {
          const std::string id = std::to_string(i) + "-" + std::to_string(j);
          if (j % 10 == 5) {
            const response res = c.get("/boom");
            if (res.result() == http::status::internal_server_error) ++ok;
            continue;
          }
          const response res = c.get("/instances/" + id);
          if (res.result() == http::status::ok && text(body_of(res).at("id")) == id) ++ok;
          std::lock_guard lock(mutex);
          ids.insert(std::string(res["X-Request-ID"]));
        } catch (const std::exception&) {
          ++failed;
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(failed, 0);
  EXPECT_EQ(ok, clients * requests);
  EXPECT_EQ(ids.size(), static_cast<std::size_t>(clients * (requests - 2)));
  EXPECT_TRUE(eventually([&] { return srv->get().active_connections() == 0; }));
}

TEST_F(server_test, reports_each_request_to_the_metrics_hook) {
  auto srv = start();
  client c(srv->endpoint());
  c.get("/hello");
  c.get("/nope");
  c.get("/boom");
  c.get("/instances/x");
  ASSERT_TRUE(eventually([&] { return probe_->done_calls == 4; }));
  const std::vector<std::pair<std::string, unsigned>> expected{
      {"GET hello", 200}, {"GET unmatched", 404}, {"GET boom", 500}, {"GET instances.get", 200}};
  EXPECT_EQ(probe_->requests_done(), expected);
}

TEST_F(server_test, logs_one_access_line_without_headers) {
  auto srv = start();
  client c(srv->endpoint());
  ::testing::internal::CaptureStdout();
  const response res = c.get("/hello?q=1", {{"Authorization", "token 1-0123456789abcdefsecret"},
                                            {"X-Request-ID", "log-line-1"}});
  const bool logged = eventually([&] { return probe_->done_calls == 1; });
  const std::string out = ::testing::internal::GetCapturedStdout();
  ASSERT_TRUE(logged);
  EXPECT_EQ(res.result(), http::status::ok);
  const auto start_of_line = out.rfind('\n', out.find("log-line-1"));
  const std::string line = out.substr(start_of_line == std::string::npos ? 0 : start_of_line + 1,
                                      out.find('\n', out.find("log-line-1")) - start_of_line);
  EXPECT_NE(line.find(R"("msg":"request")"), std::string::npos) << line;
  EXPECT_NE(line.find(R"("request_id":"log-line-1")"), std::string::npos) << line;
  EXPECT_NE(line.find(R"("method":"GET")"), std::string::npos) << line;
  EXPECT_NE(line.find(R"("path":"/hello")"), std::string::npos) << line;
  EXPECT_NE(line.find(R"("route":"hello")"), std::string::npos) << line;
  EXPECT_NE(line.find(R"("status":200)"), std::string::npos) << line;
  EXPECT_NE(line.find(R"("duration_ms":)"), std::string::npos) << line;
  EXPECT_NE(line.find(R"("remote":"127.0.0.1:)"), std::string::npos) << line;
  EXPECT_EQ(out.find("secret"), std::string::npos) << out;
}

TEST_F(server_test, hands_an_upgrade_over_to_its_route) {
  auto srv = start();
  asio::io_context ioc;
  std::string echoed;
  auto talk = [&]() -> asio::awaitable<void> {
    websocket::stream<beast::tcp_stream> ws(ioc);
    beast::get_lowest_layer(ws).expires_after(5s);
    co_await beast::get_lowest_layer(ws).async_connect(srv->endpoint(), asio::use_awaitable);
    co_await ws.async_handshake("localhost", "/drivers/connect", asio::use_awaitable);
    co_await ws.async_write(asio::buffer(std::string_view("ping")), asio::use_awaitable);
    beast::flat_buffer buffer;
    co_await ws.async_read(buffer, asio::use_awaitable);
    echoed = beast::buffers_to_string(buffer.data());
    auto [ec, n] = co_await ws.async_read(buffer, asio::as_tuple(asio::use_awaitable));
    EXPECT_EQ(ec, beast::error_code(websocket::error::closed));
  };
  auto result = asio::co_spawn(ioc, talk(), asio::use_future);
  ioc.run();
  ASSERT_NO_THROW(result.get());
  EXPECT_EQ(echoed, "ping");
  EXPECT_TRUE(eventually([&] { return srv->get().active_connections() == 0; }));

  // A plain GET on the upgrade route is told to upgrade.
  client c(srv->endpoint());
  const response res = c.get("/drivers/connect");
  EXPECT_EQ(res.result(), http::status::upgrade_required);
  EXPECT_EQ(res[http::field::upgrade], "websocket");
}

TEST_F(server_test, an_upgrade_gate_answers_before_the_handshake) {
  auto srv = start();
  // Refused by the gate: its answer, upgrade or not, logged and counted as itself.
  client c(srv->endpoint());
  const response plain = c.get("/gated");
  EXPECT_EQ(plain.result(), http::status::unauthorized);
  EXPECT_EQ(body_of(plain).at("code"), "invalid_token");
  EXPECT_FALSE(plain["X-Request-ID"].empty());
  client d(srv->endpoint());
  const response upgrade = d.get("/gated", {{"Connection", "Upgrade"},
                                            {"Upgrade", "websocket"},
                                            {"Sec-WebSocket-Version", "13"},
                                            {"Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="}});
  EXPECT_EQ(upgrade.result(), http::status::unauthorized);
  EXPECT_TRUE(eventually([&] {
    std::lock_guard lock(probe_->mutex);
    return std::count(probe_->done.begin(), probe_->done.end(),
                      std::pair<std::string, unsigned>{"GET gated", 401}) == 2;
  }));
  // Let through: a plain request is told to upgrade, a handshake is handed over.
  client e(srv->endpoint());
  EXPECT_EQ(e.get("/gated", {{"X-Let-In", "1"}}).result(), http::status::upgrade_required);
  asio::io_context ioc;
  auto talk = [&]() -> asio::awaitable<void> {
    websocket::stream<beast::tcp_stream> ws(ioc);
    beast::get_lowest_layer(ws).expires_after(5s);
    co_await beast::get_lowest_layer(ws).async_connect(srv->endpoint(), asio::use_awaitable);
    ws.set_option(websocket::stream_base::decorator(
        [](websocket::request_type& req) { req.set("X-Let-In", "1"); }));
    co_await ws.async_handshake("localhost", "/gated", asio::use_awaitable);
    beast::flat_buffer buffer;
    auto [ec, n] = co_await ws.async_read(buffer, asio::as_tuple(asio::use_awaitable));
    EXPECT_EQ(ec, beast::error_code(websocket::error::closed));
  };
  auto result = asio::co_spawn(ioc, talk(), asio::use_future);
  ioc.run();
  ASSERT_NO_THROW(result.get());
}

// A self-signed certificate for 127.0.0.1 and its key, made with the openssl tool.
struct test_certificate {
  std::string cert;
  std::string key;
};

test_certificate make_test_certificate() {
  const auto dir = std::filesystem::temp_directory_path() /
                   ("cloudbrain-tls-" + std::to_string(::getpid()) + "-" +
                    std::to_string(steady_clock::now().time_since_epoch().count()));
  std::filesystem::create_directories(dir);
  test_certificate t{(dir / "api.crt").string(), (dir / "api.key").string()};
  const std::string command =
      "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 "
      "-subj /CN=cloudbrain-test -addext subjectAltName=IP:127.0.0.1 -keyout " +
      t.key + " -out " + t.cert + " 2>/dev/null";
  if (std::system(command.c_str()) != 0) throw std::runtime_error("openssl req failed");
  return t;
}

TEST_F(server_test, speaks_https_and_websocket_over_tls_and_tells_plain_http_to_use_https) {
  const auto certificate = make_test_certificate();
  auto tls = load_server_tls_context(certificate.cert, certificate.key);
  ASSERT_TRUE(tls) << tls.error().message();
  server_config cfg;
  cfg.tls_context = [ctx = *tls] { return ctx; };
  auto srv = start(std::move(cfg));

  asio::io_context ioc;
  asio::ssl::context client_tls(asio::ssl::context::tls_client);
  client_tls.load_verify_file(certificate.cert);
  client_tls.set_verify_mode(asio::ssl::verify_peer);
  std::string hello;
  std::string echoed;
  auto talk = [&]() -> asio::awaitable<void> {
    asio::ssl::stream<beast::tcp_stream> https(ioc, client_tls);
    beast::get_lowest_layer(https).expires_after(5s);
    co_await beast::get_lowest_layer(https).async_connect(srv->endpoint(), asio::use_awaitable);
    co_await https.async_handshake(asio::ssl::stream_base::client, asio::use_awaitable);
    co_await http::async_write(https, make_request(http::verb::get, "/hello"), asio::use_awaitable);
    beast::flat_buffer buffer;
    response res;
    co_await http::async_read(https, buffer, res, asio::use_awaitable);
    hello = res.body();

    websocket::stream<asio::ssl::stream<beast::tcp_stream>> ws(ioc, client_tls);
    beast::get_lowest_layer(ws).expires_after(5s);
    co_await beast::get_lowest_layer(ws).async_connect(srv->endpoint(), asio::use_awaitable);
    co_await ws.next_layer().async_handshake(asio::ssl::stream_base::client, asio::use_awaitable);
    co_await ws.async_handshake("localhost", "/drivers/connect", asio::use_awaitable);
    co_await ws.async_write(asio::buffer(std::string_view("ping")), asio::use_awaitable);
    beast::flat_buffer frames;
    co_await ws.async_read(frames, asio::use_awaitable);
    echoed = beast::buffers_to_string(frames.data());
    auto [ec, n] = co_await ws.async_read(frames, asio::as_tuple(asio::use_awaitable));
    EXPECT_EQ(ec, beast::error_code(websocket::error::closed));
  };
  auto result = asio::co_spawn(ioc, talk(), asio::use_future);
  ioc.run();
  ASSERT_NO_THROW(result.get());
  EXPECT_NE(hello.find("world"), std::string::npos) << hello;
  EXPECT_EQ(echoed, "ping");

  client plain(srv->endpoint());
  const response res = plain.get("/hello");
  EXPECT_EQ(res.result(), http::status::bad_request);
  EXPECT_EQ(body_of(res).at("code"), "https_required");
  EXPECT_TRUE(plain.closed_by_server());
  std::filesystem::remove_all(std::filesystem::path(certificate.cert).parent_path());
}

TEST(server, start_fails_clearly_when_the_address_is_taken) {
  asio::io_context ioc;
  auto routes = std::make_shared<router>();
  server_config cfg;
  cfg.listen = tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0);
  server first(ioc, cfg, routes);
  ASSERT_TRUE(first.start());
  cfg.listen = first.local_endpoint();
  EXPECT_NE(cfg.listen.port(), 0);
  server second(ioc, cfg, routes);
  const auto started = second.start();
  ASSERT_FALSE(started);
  EXPECT_TRUE(started.error().is(errc::bad_config));
  EXPECT_NE(started.error().detail.find("127.0.0.1:" + std::to_string(cfg.listen.port())),
            std::string::npos)
      << started.error().detail;
  EXPECT_FALSE(first.start());  // twice is a bug, not a second listener
}

}  // namespace
}  // namespace cloudbrain::net
