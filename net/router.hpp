#pragma once

#include "net/connection_stream.hpp"
#include "net/http.hpp"

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/url/params_view.hpp>

#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace cloudbrain::net {

// What a handler sees of one request. It lives in the connection's coroutine for as long as the
// handler runs; the views point into `req` or into that coroutine's frame.
struct request_context {
  const request& req;
  std::string request_id;
  boost::asio::ip::tcp::endpoint remote;
  std::string_view path;                                    // percent-decoded, without the query
  boost::urls::params_view query;                           // the parsed query, decoded on access
  std::vector<std::pair<std::string, std::string>> params;  // ":name" captures, decoded
  std::string_view route;                                   // the matched route's name
  // Set by a handler that has written the request's audit record itself, in the transaction of
  // the change it records (a create, a delete): the caller then records nothing more.
  bool audited = false;

  // The capture named `name`, or empty if the route has none.
  [[nodiscard]] std::string_view param(std::string_view name) const;
};

using handler = std::function<boost::asio::awaitable<response>(request_context&)>;

// A route that takes the connection over, e.g. a WebSocket upgrade. It gets the stream (TLS
// already done on an HTTPS listener) once the request has been read (`ctx.req` is the upgrade
// request) and owns it from then on: it either completes the handshake
// (`websocket::stream<connection_stream>(std::move(s)).async_accept(ctx.req)`) or writes an HTTP
// response itself. It runs in the connection's coroutine, so a shutdown that
// reaches its deadline cancels what it awaits.
using upgrade_handler =
    std::function<boost::asio::awaitable<void>(request_context&, connection_stream)>;

// Asked first about every request on an upgrade route, upgrade or not: an answer refuses it
// (written, logged and counted like any response: a 401 for a missing token, say); nothing lets
// the upgrade go ahead, or a plain request get 426.
using upgrade_gate =
    std::function<boost::asio::awaitable<std::optional<response>>(request_context&)>;

struct route_info {
  http::verb method;
  std::string pattern;
  std::string name;
  bool upgrade = false;

  friend bool operator==(const route_info&, const route_info&) = default;
};

// Maps method + path to a handler by whole segments: "/instances/:id" matches "/instances/abc"
// with id = "abc". A literal segment wins over a capture at the same place, so "/a/b" beats
// "/a/:x". Routes are added at start-up; `match` is then safe from any thread.
class router {
 public:
  struct match_result {
    http::status status = http::status::not_found;  // ok, not_found or method_not_allowed
    const net::handler* handler = nullptr;          // set when status is ok, unless upgrade
    const net::upgrade_handler* upgrade = nullptr;  // set when an upgrade route matched
    const net::upgrade_gate* gate = nullptr;        // its gate, if it has one
    std::string_view route;                         // the route's name
    std::string_view pattern;
    std::string allow;  // for 405: the methods the path supports, e.g. "GET, HEAD, DELETE"
    std::vector<std::pair<std::string, std::string>> params;

    [[nodiscard]] explicit operator bool() const noexcept { return status == http::status::ok; }
  };

  // Throws std::invalid_argument for a malformed pattern or a duplicate method + pattern: both
  // are programming errors found at start-up.
  void add(http::verb method, std::string pattern, handler h, std::string route_name);
  void add_upgrade(std::string pattern, upgrade_handler h, std::string route_name,
                   upgrade_gate gate = {});

  // `encoded_path` is the path as it came in the request target, without the query. A path that
  // is not valid percent-encoding matches nothing. HEAD falls back to the GET route.
  [[nodiscard]] match_result match(http::verb method, std::string_view encoded_path) const;

  // Every route in the order it was added.
  [[nodiscard]] std::vector<route_info> routes() const;

 private:
  struct segment {
    std::string text;  // literal text, or the capture's name
    bool capture = false;
  };
  struct method_entry {
    http::verb method;
    std::string name;
    net::handler handler;
    net::upgrade_handler upgrade;
    net::upgrade_gate gate;
    std::size_t order;
  };
  // All methods on one path shape ("/instances/:id" and "/instances/:x" are the same shape).
  struct resource {
    std::string pattern;
    std::vector<segment> segments;
    std::vector<method_entry> methods;
  };

  method_entry& add_entry(http::verb method, const std::string& pattern, std::string route_name);

  std::vector<resource> resources_;
  std::size_t count_ = 0;
};

}  // namespace cloudbrain::net
