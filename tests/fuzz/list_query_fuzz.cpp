// Query strings of the lists (GET /instances, GET /reservations) and their cursors.
#include "actors/list_query.hpp"
#include "tests/fuzz/fuzz_target.hpp"

#include <boost/url/parse.hpp>

#include <string>

CLOUDBRAIN_FUZZ_TARGET(list_query) {
  static constexpr std::string_view states[] = {"creating", "running", "terminated"};
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  if (auto cursor = cloudbrain::decode_list_cursor(text)) {
    // What decodes encodes back to the same cursor.
    const auto again = cloudbrain::decode_list_cursor(
        cloudbrain::encode_list_cursor(cursor->created_at, cursor->id));
    if (!again || again->id != cursor->id || again->created_at != cursor->created_at) {
      __builtin_trap();
    }
  }
  const auto url = boost::urls::parse_origin_form("/instances?" + std::string(text));
  if (!url) return 0;
  auto [filter, v] = cloudbrain::parse_list_query(url->params(), states);
  if (v.ok() && (filter.limit < 1 || filter.limit > 1000)) __builtin_trap();
  return 0;
}
