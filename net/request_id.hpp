#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace cloudbrain::net {

// A client's X-Request-ID is kept if it is 1-128 characters of [A-Za-z0-9._:-]; anything else
// could break a log line or a header, and is replaced.
[[nodiscard]] bool is_sane_request_id(std::string_view id) noexcept;

// Makes request ids: 32 lowercase hex characters. One generator per connection, so there is no
// shared state; ids need to be unique, not unpredictable, hence a fast non-cryptographic PRNG
// (xoshiro256**) seeded from the OS once per process and a per-connection counter.
class request_id_generator {
 public:
  request_id_generator();  // seeded uniquely for this process
  explicit request_id_generator(std::uint64_t seed);

  [[nodiscard]] std::string next();

 private:
  std::uint64_t next_u64() noexcept;

  std::uint64_t s_[4];
};

}  // namespace cloudbrain::net
