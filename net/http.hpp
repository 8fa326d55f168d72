#pragma once

#include <boost/beast/http.hpp>

namespace cloudbrain::net {

namespace http = boost::beast::http;

using request = http::request<http::string_body>;
using response = http::response<http::string_body>;

}  // namespace cloudbrain::net
