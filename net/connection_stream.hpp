#pragma once

// A server connection's bytes: plain TCP, or TLS over it once the listener speaks HTTPS. One
// type for both, so that the HTTP loop and an upgraded connection (a WebSocket) are written
// once. Timeouts and closing always act on the TCP stream underneath (tcp()).

#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/beast/core/role.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/websocket/ssl.hpp>
#include <boost/beast/websocket/teardown.hpp>

#include <optional>
#include <utility>

namespace cloudbrain::net {

class connection_stream {
 public:
  using executor_type = boost::beast::tcp_stream::executor_type;
  using tls_stream = boost::asio::ssl::stream<boost::beast::tcp_stream>;
  // For boost::beast::get_lowest_layer: the TCP stream, with or without TLS over it.
  using next_layer_type = boost::beast::tcp_stream;

  explicit connection_stream(boost::beast::tcp_stream tcp) : tcp_(std::move(tcp)) {}

  // From now on the bytes go through TLS with `ctx` (the handshake is the caller's).
  void start_tls(boost::asio::ssl::context& ctx) { tls_.emplace(std::move(tcp_), ctx); }

  [[nodiscard]] bool is_tls() const { return tls_.has_value(); }
  [[nodiscard]] tls_stream* tls() { return tls_ ? &*tls_ : nullptr; }
  [[nodiscard]] boost::beast::tcp_stream& tcp() { return tls_ ? tls_->next_layer() : tcp_; }
  [[nodiscard]] next_layer_type& next_layer() { return tcp(); }
  [[nodiscard]] executor_type get_executor() { return tcp().get_executor(); }

  template <class MutableBuffers, class Token>
  auto async_read_some(const MutableBuffers& buffers, Token&& token) {
    if (tls_) return tls_->async_read_some(buffers, std::forward<Token>(token));
    return tcp_.async_read_some(buffers, std::forward<Token>(token));
  }

  template <class ConstBuffers, class Token>
  auto async_write_some(const ConstBuffers& buffers, Token&& token) {
    if (tls_) return tls_->async_write_some(buffers, std::forward<Token>(token));
    return tcp_.async_write_some(buffers, std::forward<Token>(token));
  }

 private:
  boost::beast::tcp_stream tcp_;  // moved into tls_ once TLS starts
  std::optional<tls_stream> tls_;
};

// How a WebSocket over a connection_stream closes (found by argument-dependent lookup): TLS's
// close_notify first when there is TLS, then the TCP connection.
template <class TeardownHandler>
void async_teardown(boost::beast::role_type role, connection_stream& stream,
                    TeardownHandler&& handler) {
  using boost::beast::websocket::async_teardown;
  if (auto* tls = stream.tls()) {
    async_teardown(role, *tls, std::forward<TeardownHandler>(handler));
  } else {
    async_teardown(role, stream.tcp().socket(), std::forward<TeardownHandler>(handler));
  }
}

inline void teardown(boost::beast::role_type role, connection_stream& stream,
                     boost::beast::error_code& ec) {
  using boost::beast::websocket::teardown;
  if (auto* tls = stream.tls()) {
    teardown(role, *tls, ec);
  } else {
    teardown(role, stream.tcp().socket(), ec);
  }
}

}  // namespace cloudbrain::net
