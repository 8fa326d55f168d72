// The HTTP request path up to the handler: Beast's parser with the server's limits, fed in two
// pieces as a network might deliver it, then what the server and the API do with a request
// before any handler runs: the head checks, the request id, the target's decoding, the route,
// the token, the media type and the idempotency key.
#include "actors/api.hpp"
#include "net/request_id.hpp"
#include "net/router.hpp"
#include "net/server.hpp"
#include "tests/fuzz/fuzz_target.hpp"

#include <boost/beast/http/parser.hpp>
#include <boost/url/parse.hpp>

#include <memory>
#include <string_view>

namespace {

namespace http = cloudbrain::net::http;

const cloudbrain::net::router& api_routes() {
  // The shapes of the API's own table (`cloudbrain routes`): literals, parameters, upgrades.
  static const auto routes = [] {
    auto r = std::make_shared<cloudbrain::net::router>();
    const cloudbrain::net::handler none =
        [](cloudbrain::net::request_context&) -> boost::asio::awaitable<cloudbrain::net::response> {
      co_return cloudbrain::net::response{};
    };
    const std::pair<http::verb, const char*> table[] = {{http::verb::post, "/instances"},
                                                        {http::verb::get, "/instances"},
                                                        {http::verb::get, "/instances/:id"},
                                                        {http::verb::delete_, "/instances/:id"},
                                                        {http::verb::post, "/reservations"},
                                                        {http::verb::get, "/reservations"},
                                                        {http::verb::delete_, "/reservations"},
                                                        {http::verb::get, "/reservations/:id"},
                                                        {http::verb::delete_, "/reservations/:id"},
                                                        {http::verb::get, "/providers"},
                                                        {http::verb::get, "/livez"},
                                                        {http::verb::get, "/readyz"},
                                                        {http::verb::get, "/metrics"}};
    for (const auto& [method, pattern] : table) r->add(method, pattern, none, pattern);
    r->add_upgrade(
        "/drivers/connect",
        [](cloudbrain::net::request_context&,
           cloudbrain::net::connection_stream) -> boost::asio::awaitable<void> { co_return; },
        "drivers.connect");
    return r;
  }();
  return *routes;
}

}  // namespace

CLOUDBRAIN_FUZZ_TARGET(http_request) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  http::request_parser<http::string_body> parser;
  const cloudbrain::net::server_config limits;
  parser.header_limit(static_cast<std::uint32_t>(limits.header_limit));
  parser.body_limit(limits.body_limit);
  const std::size_t split = size == 0 ? 0 : static_cast<std::size_t>(data[0]) % (size + 1);
  boost::beast::error_code ec;
  for (const auto piece : {bytes.substr(0, split), bytes.substr(split)}) {
    std::size_t used = 0;
    while (used < piece.size() && !parser.is_done()) {
      const auto n = parser.put(boost::asio::buffer(piece.substr(used)), ec);
      if (ec && ec != http::error::need_more) return 0;
      if (n == 0) break;
      used += n;
    }
  }
  if (!parser.is_header_done()) return 0;
  (void)cloudbrain::net::check_request_head(parser.get());
  if (!parser.is_done()) return 0;
  const cloudbrain::net::request req = parser.release();

  (void)cloudbrain::net::is_sane_request_id(req["X-Request-ID"]);
  const auto url = boost::urls::parse_origin_form(req.target());
  if (url) {
    std::string decoded = url->path();
    for (const auto& p : url->params()) decoded += p.key;
    (void)api_routes().match(req.method(), url->encoded_path());
  }
  (void)cloudbrain::presented_token(req);
  (void)cloudbrain::refuse_media_type(req);
  (void)cloudbrain::idempotency_of(req, req.body());
  return 0;
}
