#pragma once

#include "core/error.hpp"
#include "core/time.hpp"
#include "net/http.hpp"

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace cloudbrain::net {

// An absolute http:// or https:// URL, split for connecting and for the request line.
struct parsed_url {
  std::string scheme;  // "http" or "https"
  std::string host;    // without brackets for IPv6 literals
  std::uint16_t port = 0;
  std::string target;  // path and query, never empty ("/" at least)

  [[nodiscard]] bool tls() const noexcept { return scheme == "https"; }
};

// Sans-io: fails with errc::invalid_argument on anything but an absolute http(s) URL with a host.
[[nodiscard]] result<parsed_url> parse_url(std::string_view url);

// The Host header a request to `url` carries: the host (IPv6 in brackets) and the port unless it
// is the scheme's default. What a signature over Host must cover.
[[nodiscard]] std::string host_header(const parsed_url& url);

struct client_config {
  std::size_t max_idle_per_host = 16;
  std::size_t max_connections_per_host = 64;
  std::chrono::milliseconds connect_timeout{10000};  // also bounded by each request's deadline
  std::chrono::milliseconds idle_timeout{60000};     // a pooled connection older is not reused
  std::string ca_file;                               // empty: the system store (/etc/ssl/certs)
  bool verify_tls = true;
  std::size_t max_response_body = 64 * 1024 * 1024;
  std::string user_agent = "cloudbrain";
};

struct client_request {
  http::verb method = http::verb::get;
  std::string url;  // absolute: https://host[:port]/path?query or http://...
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
};

struct client_response {
  unsigned status = 0;
  http::fields headers;
  std::string body;
};

struct client_stats {
  std::uint64_t requests = 0;
  std::uint64_t connections_opened = 0;
  std::uint64_t reused = 0;
  std::uint64_t errors = 0;
  std::uint64_t timeouts = 0;
};

namespace detail {
struct client_state;
}

// An HTTP/1.1 client with a keep-alive pool per (scheme, host, port). The pool lives on the
// client's own strand, so send() may be awaited from coroutines on any executor at once.
//
// Errors: a passed deadline is errc::timeout; refused, reset or closed before a response is
// errc::cloud_transient; a TLS certificate that does not verify, or a response body over
// max_response_body, is errc::cloud_permanent; a malformed URL is errc::invalid_argument.
// Details name the host, never a header.
class http_client {
 public:
  http_client(boost::asio::any_io_executor executor, client_config config);
  ~http_client();
  http_client(const http_client&) = delete;
  http_client& operator=(const http_client&) = delete;

  [[nodiscard]] boost::asio::awaitable<result<client_response>> send(client_request req,
                                                                     deadline dl);

  [[nodiscard]] client_stats stats() const;

 private:
  std::shared_ptr<detail::client_state> state_;
};

}  // namespace cloudbrain::net
