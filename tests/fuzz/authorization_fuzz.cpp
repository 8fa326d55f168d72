// The Authorization header: `token <token>` and HTTP Basic with user "token", then the token's
// own format (<id>-<32 hex>).
#include "actors/api.hpp"
#include "core/token.hpp"
#include "tests/fuzz/fuzz_target.hpp"

#include <string>

CLOUDBRAIN_FUZZ_TARGET(authorization) {
  cloudbrain::net::request req;
  std::string value(reinterpret_cast<const char*>(data), size);
  // A header value cannot hold CR, LF or NUL on the wire; the parser would have refused them.
  for (char& c : value) {
    if (c == '\r' || c == '\n' || c == '\0') c = ' ';
  }
  req.set(cloudbrain::net::http::field::authorization, value);
  if (const auto token = cloudbrain::presented_token(req)) {
    if (auto parts = cloudbrain::parse_token(*token)) {
      if (parts->id < 0) __builtin_trap();  // ids are never negative
    }
  }
  return 0;
}
