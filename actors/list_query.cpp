#include "actors/list_query.hpp"

#include "core/encoding.hpp"
#include "core/time.hpp"
#include "core/uuid.hpp"

#include <algorithm>
#include <charconv>

namespace cloudbrain {

std::pair<list_filter, validation> parse_list_query(boost::urls::params_view query,
                                                    std::span<const std::string_view> states) {
  list_filter f;
  validation v;
  for (const auto& p : query) {
    const std::string key = p.key;
    const std::string value = p.has_value ? std::string(p.value) : std::string();
    if (key.find('\0') != std::string::npos || value.find('\0') != std::string::npos) {
      v.errors.push_back("query parameters must not contain NUL characters");
      continue;
    }
    if (key == "provider") {
      f.provider = value;
    } else if (key == "state") {
      if (std::find(states.begin(), states.end(), value) == states.end()) {
        std::string known;
        for (const auto s : states) known += (known.empty() ? "" : ", ") + std::string(s);
        v.errors.push_back("'state' must be one of " + known + "; not '" + value + "'");
      } else {
        f.state = value;
      }
    } else if (key.starts_with("tag.") && key.size() > 4) {
      f.tags[key.substr(4)] = value;
    } else if (key == "limit") {
      std::size_t n = 0;
      const auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
      if (ec != std::errc{} || end != value.data() + value.size() || n < 1 || n > 1000) {
        v.errors.push_back("'limit' must be a number from 1 to 1000, not '" + value + "'");
      } else {
        f.limit = n;
      }
    } else if (key == "after") {
      f.after = decode_list_cursor(value);
      if (!f.after) v.errors.push_back("'after' is not a cursor this service gave out");
    } else {
      v.code = "unknown_parameter";
      v.errors.push_back("unknown query parameter '" + key + "'");
    }
  }
  return {std::move(f), std::move(v)};
}

std::string encode_list_cursor(std::string_view created_at, std::string_view id) {
  std::string plain(created_at);
  plain += '|';
  plain += id;
  return base64_encode(plain, true);
}

std::optional<list_cursor> decode_list_cursor(std::string_view text) {
  const auto decoded = base64_decode(text, true);
  if (!decoded) return std::nullopt;
  const auto bar = decoded->find('|');
  if (bar == std::string::npos) return std::nullopt;
  list_cursor c{decoded->substr(0, bar), decoded->substr(bar + 1)};
  if (!uuid::parse(c.id) || !parse_rfc3339(c.created_at)) return std::nullopt;
  return c;
}

}  // namespace cloudbrain
