#pragma once

#include "core/error.hpp"
#include "net/router.hpp"

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <string_view>

namespace cloudbrain::net {

namespace detail {
struct server_state;
}

struct server_config {
  boost::asio::ip::tcp::endpoint listen;
  std::size_t max_connections = 10000;
  // Connections from one client address at once; 0: no cap. Over it, a connection is answered
  // 503 like one over max_connections, so that one address cannot take every slot.
  std::size_t max_connections_per_address = 512;
  std::size_t header_limit = 8 * 1024;
  std::size_t body_limit = 1024 * 1024;
  // Milliseconds so that tests can use short ones; assigning std::chrono::seconds works as is.
  std::chrono::milliseconds read_timeout = std::chrono::seconds(30);  // a whole request
  // A request's line and headers, from the connection's opening or the request's first byte:
  // a client that trickles its head (slowloris) is cut off then.
  std::chrono::milliseconds head_timeout = std::chrono::seconds(10);
  std::chrono::milliseconds idle_timeout = std::chrono::seconds(75);   // between requests
  std::chrono::milliseconds write_timeout = std::chrono::seconds(30);  // a whole response
  // HTTPS: the TLS context of each new connection, asked for once a connection so that a
  // reload can hand over a new certificate. Unset, or a null context: plain HTTP. The handshake
  // must end within head_timeout; plain HTTP sent to an HTTPS listener is answered with a plain
  // 400 naming the problem.
  std::function<std::shared_ptr<boost::asio::ssl::context>()> tls_context;
  // Called once per response written, from the connection's strand. `method` is a standard
  // method's name or "other"; `route` is the matched route's name, or one of "unmatched"
  // (404/405), "invalid" (a request that could not be read or parsed), "rejected" (over
  // max_connections or draining): both bounded sets, for metric labels.
  std::function<void(std::string_view method, std::string_view route, unsigned status,
                     std::chrono::nanoseconds took)>
      on_request_done;
};

// Checks a request's head, once it is read and before its body is: shapes that two HTTP
// implementations may read differently (request smuggling: Content-Length together with
// Transfer-Encoding, several Content-Length fields, a Transfer-Encoding other than "chunked",
// Transfer-Encoding on HTTP/1.0; several Host fields, or none on HTTP/1.1). The answer to send
// (400, problem+json, naming what is wrong) or nothing when the head is fine. Sans-io.
[[nodiscard]] std::optional<response> check_request_head(const request& head);

// The HTTP/1.1 server: one listener, one coroutine per connection on its own strand, keep-alive,
// limits and timeouts from server_config, and a graceful shutdown. Every response carries
// X-Request-ID and Server: cloudbrain; errors are problem+json.
class server {
 public:
  server(boost::asio::io_context& ioc, server_config config, std::shared_ptr<const router> routes);
  ~server();  // stops accepting; running connections finish on their own
  server(const server&) = delete;
  server& operator=(const server&) = delete;

  // Binds, listens and starts accepting. Fails with errc::bad_config and a message naming the
  // address when it cannot listen there.
  [[nodiscard]] result<void> start();

  // The bound address, after start(); port 0 in the config picks a free port.
  [[nodiscard]] boost::asio::ip::tcp::endpoint local_endpoint() const;

  // Stops accepting, closes idle keep-alive connections, and lets requests in flight finish
  // (their responses carry Connection: close) until `deadline`; then closes the connections
  // left and cancels what their handlers await. Completes when no connection is left, or at the
  // deadline. Can be awaited from any executor.
  [[nodiscard]] boost::asio::awaitable<void> shutdown(
      std::chrono::steady_clock::time_point deadline);

  [[nodiscard]] std::size_t active_connections() const;
  [[nodiscard]] bool draining() const;

 private:
  // Shared with the accept loop and every connection, so that none of them outlives it.
  std::shared_ptr<detail::server_state> state_;
};

}  // namespace cloudbrain::net
