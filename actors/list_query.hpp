#pragma once

#include "actors/validation.hpp"

#include <boost/json/object.hpp>
#include <boost/url/params_view.hpp>

#include <cstddef>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace cloudbrain {

// Where a page of a list starts: after the row with this creation time and id (newest first).
struct list_cursor {
  std::string created_at;  // RFC 3339, as PostgreSQL wrote it
  std::string id;          // a UUID
};

// What GET /instances and GET /reservations were asked for:
// ?provider=&state=&tag.KEY=VALUE&limit=&after=.
struct list_filter {
  std::optional<std::string> provider;
  std::optional<std::string> state;
  boost::json::object tags;
  std::size_t limit = 100;
  std::optional<list_cursor> after;
  // Only rows this token created (the caller's scope, not a query parameter); nothing: all.
  std::optional<std::int64_t> created_by;
};

// Reads a list's query; every problem is in the validation (unknown_parameter for a parameter
// the list does not know). `states` are the values `state` may take.
[[nodiscard]] std::pair<list_filter, validation> parse_list_query(
    boost::urls::params_view query, std::span<const std::string_view> states);

// The opaque `next`/`after` of a page: base64url of "created_at|id". Decoding checks both
// halves, so that nothing but a cursor this service gave out reaches SQL.
[[nodiscard]] std::string encode_list_cursor(std::string_view created_at, std::string_view id);
[[nodiscard]] std::optional<list_cursor> decode_list_cursor(std::string_view text);

}  // namespace cloudbrain
