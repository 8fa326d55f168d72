#pragma once

#include "core/error.hpp"
#include "net/http.hpp"

#include <boost/json/value.hpp>

#include <string>
#include <string_view>
#include <vector>

namespace cloudbrain::net {

// An RFC 9457 problem+json response:
// {"type":"https://cloudbrain.dev/problems/<code>","title","status","detail","code","errors":[...]}.
// `errors` keeps the original Cloud Brain shape; when empty it becomes [detail].
[[nodiscard]] response problem(http::status status, std::string_view code, std::string_view title,
                               std::string_view detail,
                               const std::vector<std::string>& errors = {});

// A 200-style JSON response with Content-Type application/json.
[[nodiscard]] response json_response(http::status status, const boost::json::value& body);

// Any other body, e.g. the Prometheus text format.
[[nodiscard]] response text_response(http::status status, std::string_view content_type,
                                     std::string body);

// Maps a domain error to its problem response. 4xx responses carry the error's detail; 5xx
// responses only a generic sentence, because their detail may hold internal text (hosts, SQL).
// `code` replaces the generic code (e.g. "instance_not_found" instead of "not_found").
[[nodiscard]] response problem_from_error(const cloudbrain::error& e, std::string_view code = {});

}  // namespace cloudbrain::net
