#pragma once

#include "core/error.hpp"
#include "core/time.hpp"

#include <string>
#include <string_view>

// Google service-account auth (OAuth2 JWT-bearer grant, RFC 7523), free of I/O.
namespace cloudbrain::providers::gce {

inline constexpr const char* compute_scope = "https://www.googleapis.com/auth/compute";
inline constexpr const char* default_token_uri = "https://oauth2.googleapis.com/token";

struct service_account_key {
  std::string type;  // "service_account"
  std::string project_id;
  std::string client_email;
  std::string private_key_id;
  std::string private_key;  // PEM; never put into a message or log
  std::string token_uri;
};

// A key file's JSON. Errors (bad_config) name the missing field, never the key.
[[nodiscard]] result<service_account_key> parse_service_account_key(std::string_view json);

// A signed RS256 JWT asserting `key`'s identity for `scope`, valid for an hour from `now`.
// `audience` empty: key.token_uri. CPU work (an RSA signature): run it on the blocking pool.
[[nodiscard]] result<std::string> make_jwt_assertion(const service_account_key& key,
                                                     std::string_view scope,
                                                     system_clock::time_point now,
                                                     std::string_view audience = {});

// The application/x-www-form-urlencoded body for the token endpoint.
[[nodiscard]] std::string token_request_body(std::string_view assertion);

struct access_token {
  std::string token;  // a secret as well
  system_clock::time_point expires_at{};
};

// {"access_token","expires_in","token_type"} from the token endpoint or the metadata server.
[[nodiscard]] result<access_token> parse_token_response(std::string_view body,
                                                        system_clock::time_point now);

}  // namespace cloudbrain::providers::gce
