#pragma once

// A server on 127.0.0.1:0 run by its own threads, and a blocking Beast client with a deadline on
// every call, for tests that talk HTTP over real sockets.

#include "net/router.hpp"
#include "net/server.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <chrono>
#include <functional>
#include <future>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace cloudbrain::net::testing {

namespace asio = boost::asio;
namespace beast = boost::beast;
using tcp = asio::ip::tcp;
using namespace std::chrono_literals;

// Polls `done` until it holds or `timeout` passes; returns its last value.
inline bool eventually(const std::function<bool()>& done, std::chrono::milliseconds timeout = 5s) {
  const auto until = std::chrono::steady_clock::now() + timeout;
  while (!done()) {
    if (std::chrono::steady_clock::now() > until) return false;
    std::this_thread::sleep_for(5ms);
  }
  return true;
}

class live_server {
 public:
  live_server(std::shared_ptr<router> routes, server_config config = {}, int threads = 1)
      : work_(asio::make_work_guard(ioc_)) {
    config.listen = tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0);
    server_ = std::make_unique<server>(ioc_, std::move(config), std::move(routes));
    auto started = server_->start();
    if (!started) throw std::runtime_error(started.error().message());
    for (int i = 0; i < threads; ++i) threads_.emplace_back([this] { ioc_.run(); });
  }

  ~live_server() {
    work_.reset();
    ioc_.stop();
    for (auto& t : threads_) t.join();
    server_.reset();
  }

  live_server(const live_server&) = delete;
  live_server& operator=(const live_server&) = delete;

  [[nodiscard]] tcp::endpoint endpoint() const { return server_->local_endpoint(); }
  [[nodiscard]] server& get() { return *server_; }
  [[nodiscard]] asio::io_context& ioc() { return ioc_; }

  // Runs server::shutdown on the server's io_context; the future completes with it.
  std::future<void> shutdown(std::chrono::steady_clock::time_point deadline) {
    return asio::co_spawn(ioc_, server_->shutdown(deadline), asio::use_future);
  }

 private:
  asio::io_context ioc_;
  asio::executor_work_guard<asio::io_context::executor_type> work_;
  std::unique_ptr<server> server_;
  std::vector<std::thread> threads_;
};

// One client connection. Every call runs its own io_context until the operation completes or
// the stream's deadline passes, so a misbehaving server fails a test instead of hanging it.
class client {
 public:
  explicit client(tcp::endpoint to, std::chrono::milliseconds timeout = 5s)
      : stream_(ioc_), timeout_(timeout) {
    stream_.expires_after(timeout_);
    beast::error_code result = asio::error::would_block;
    stream_.async_connect(to, [&](beast::error_code ec) { result = ec; });
    run();
    connect_error_ = result;
  }

  [[nodiscard]] beast::error_code connect_error() const { return connect_error_; }
  [[nodiscard]] bool connected() const { return !connect_error_; }

  beast::error_code send(request req) {
    req.prepare_payload();
    stream_.expires_after(timeout_);
    beast::error_code result = asio::error::would_block;
    http::async_write(stream_, req, [&](beast::error_code ec, std::size_t) { result = ec; });
    run();
    return result;
  }

  beast::error_code send_raw(std::string_view bytes) {
    stream_.expires_after(timeout_);
    beast::error_code result = asio::error::would_block;
    asio::async_write(stream_, asio::buffer(bytes),
                      [&](beast::error_code ec, std::size_t) { result = ec; });
    run();
    return result;
  }

  beast::error_code receive(response& res, bool head = false) {
    http::response_parser<http::string_body> parser;
    parser.body_limit(16 * 1024 * 1024);
    parser.skip(head);
    stream_.expires_after(timeout_);
    beast::error_code result = asio::error::would_block;
    http::async_read(stream_, buffer_, parser,
                     [&](beast::error_code ec, std::size_t) { result = ec; });
    run();
    if (!result) res = parser.release();
    return result;
  }

  // Reads a 1xx interim response (e.g. 100 Continue).
  beast::error_code receive_interim(unsigned& status) {
    http::response_parser<http::empty_body> parser;
    stream_.expires_after(timeout_);
    beast::error_code result = asio::error::would_block;
    http::async_read_header(stream_, buffer_, parser,
                            [&](beast::error_code ec, std::size_t) { result = ec; });
    run();
    status = parser.get().result_int();
    return result;
  }

  // Sends a request and reads its response; throws if either fails.
  response roundtrip(request req) {
    const bool head = req.method() == http::verb::head;
    if (auto ec = send(std::move(req))) throw std::runtime_error("send: " + ec.message());
    response res;
    if (auto ec = receive(res, head)) throw std::runtime_error("receive: " + ec.message());
    return res;
  }

  response get(std::string target, std::vector<std::pair<std::string, std::string>> headers = {}) {
    request req{http::verb::get, target, 11};
    req.set(http::field::host, "localhost");
    for (auto& [name, value] : headers) req.set(name, value);
    return roundtrip(std::move(req));
  }

  // True if the server closes the connection (EOF or reset) within `within`, with no bytes.
  bool closed_by_server(std::chrono::milliseconds within = 5s) {
    stream_.expires_after(within);
    beast::error_code result = asio::error::would_block;
    std::size_t got = 0;
    char byte = 0;
    stream_.async_read_some(asio::buffer(&byte, 1), [&](beast::error_code ec, std::size_t n) {
      result = ec;
      got = n;
    });
    run();
    return got == 0 && result && result != beast::error::timeout;
  }

  beast::tcp_stream& stream() { return stream_; }

 private:
  void run() {
    ioc_.restart();
    ioc_.run();
  }

  asio::io_context ioc_;
  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  std::chrono::milliseconds timeout_;
  beast::error_code connect_error_;
};

inline request make_request(http::verb method, std::string target, std::string body = {},
                            std::string content_type = "application/json") {
  request req{method, target, 11};
  req.set(http::field::host, "localhost");
  if (!body.empty()) {
    req.set(http::field::content_type, content_type);
    req.body() = std::move(body);
  }
  return req;
}

}  // namespace cloudbrain::net::testing
