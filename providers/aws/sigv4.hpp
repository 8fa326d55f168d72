#pragma once

#include "core/error.hpp"
#include "core/time.hpp"

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

// AWS Signature Version 4, free of I/O: the canonical request, the string to sign, the signing
// key and the Authorization header, exactly as AWS's published test suite and botocore compute
// them (for every service but S3, whose paths are not normalised).
namespace cloudbrain::providers::aws {

// A set of AWS credentials. The secret and the session token are never logged and never put
// into an error's detail.
struct credentials {
  std::string access_key_id;
  std::string secret_access_key;
  std::string session_token;                           // empty for long-term keys
  std::optional<system_clock::time_point> expires_at;  // none: does not expire
  std::string source;  // where they came from ("shared file ...", "environment", "IMDSv2")
};

// A request about to be sent, as far as signing is concerned.
struct sigv4_request {
  std::string method;  // GET, POST, ...
  std::string path;    // as on the request line, without the query ("/" for EC2)
  std::string query;   // without '?'; may be empty
  // Every header the request carries that is to be signed; Host must be among them, exactly
  // as it will be sent. Names in any case; repeated names are allowed (values join with ',').
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
};

// What signing produced, kept for tests and for the emulator-side check of the same thing.
struct sigv4_signature {
  std::string amz_date;  // 20150830T123600Z
  std::string scope;     // 20150830/us-east-1/service/aws4_request
  std::string canonical_request;
  std::string string_to_sign;
  std::string signed_headers;  // host;x-amz-date
  std::string signature;       // hex
  std::string authorization;   // the Authorization header's value
};

// RFC 3986 percent-encoding of everything but unreserved characters (A-Z a-z 0-9 - _ . ~),
// and of '/' too unless keep_slash. Uppercase hex, as SigV4 wants.
[[nodiscard]] std::string uri_encode(std::string_view s, bool keep_slash = false);
// Strict percent-decoding ('+' stays '+'); a '%' not followed by two hex digits stays as it is.
[[nodiscard]] std::string uri_decode(std::string_view s);

// The pieces, exposed for tests.
[[nodiscard]] std::string canonical_uri(std::string_view path);
[[nodiscard]] std::string canonical_query(std::string_view query);
// "name:value\n..." and "name;name" from the headers, sorted, values trimmed and their inner
// runs of spaces collapsed, repeated names joined with ','. Headers that are never signed
// (Authorization, User-Agent, Expect, Transfer-Encoding, X-Amzn-Trace-Id) are left out.
[[nodiscard]] std::pair<std::string, std::string> canonical_headers(
    const std::vector<std::pair<std::string, std::string>>& headers);
[[nodiscard]] std::string hex_sha256(std::string_view data);
[[nodiscard]] std::array<std::uint8_t, 32> hmac_sha256(std::string_view key, std::string_view data);
[[nodiscard]] std::array<std::uint8_t, 32> signing_key(std::string_view secret,
                                                       std::string_view date,
                                                       std::string_view region,
                                                       std::string_view service);
// 20150830T123600Z for a time (UTC, whole seconds).
[[nodiscard]] std::string amz_date(system_clock::time_point t);
[[nodiscard]] std::optional<system_clock::time_point> parse_amz_date(std::string_view s);

// Signs `req` for `region` and `service` at time `now`: sets X-Amz-Date, X-Amz-Security-Token
// (when the credentials have a session token; it is signed, as EC2 wants) and Authorization,
// replacing any already there. Fails (errc::internal) without an access key or secret, or
// without a Host header.
[[nodiscard]] result<sigv4_signature> sign(sigv4_request& req, const credentials& creds,
                                           std::string_view region, std::string_view service,
                                           system_clock::time_point now);

}  // namespace cloudbrain::providers::aws
