#pragma once

#include "core/error.hpp"
#include "core/pg/pool.hpp"

#include <boost/asio/awaitable.hpp>

#include <cstdint>
#include <optional>
#include <string>

// Idempotency-Key on POST (API.md): the first response under (token, key) is replayed for 24
// hours when the same request comes again; another request under that key is refused.
namespace cloudbrain {

struct idempotent_request {
  std::string key;
  std::string request_hash;  // hex SHA-256 of what makes two requests the same one
};

struct replayed_response {
  int status = 0;
  std::string body;
  std::string id;  // the instance, reservation or reservation set the first request made
};

// The response stored under the key, if one younger than 24 hours is (an older one is purged,
// so that the key can be used again); precondition_failed if it came with another request.
[[nodiscard]] boost::asio::awaitable<result<std::optional<replayed_response>>> find_replay(
    pg::pool& pool, std::int64_t token_id, const idempotent_request& request);

}  // namespace cloudbrain
