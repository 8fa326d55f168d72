#pragma once

#include "core/error.hpp"
#include "core/time.hpp"

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

// OCI request signing: HTTP Signatures (draft-cavage-http-signatures), rsa-sha256, as Oracle
// Cloud Infrastructure uses them. Working out what to sign is sans-io; the RSA step is CPU work
// for the blocking pool.
typedef struct evp_pkey_st EVP_PKEY;

namespace cloudbrain::providers::oci {

// What a request's signature covers.
struct signable_request {
  std::string method;  // GET, POST, DELETE, ... (any case)
  std::string target;  // path and query exactly as sent: "/20160918/instances?compartmentId=.."
  std::string host;    // exactly as the Host header: "iaas.us-ashburn-1.oraclecloud.com[:port]"
  std::string date;    // the Date header, an IMF-fixdate (http_date)
  std::string body;    // signed (by length and SHA-256) on POST, PUT and PATCH
  std::string content_type = "application/json";
};

// The headers to send besides Host (date; on bodies content-length, content-type and
// x-content-sha256), the `headers` parameter naming what was signed, and the signing string.
struct signature_plan {
  std::vector<std::pair<std::string, std::string>> headers;
  std::string signed_headers;  // "date (request-target) host[ content-length ...]"
  std::string signing_string;  // "name: value" lines joined by '\n', no trailing newline
};

[[nodiscard]] signature_plan plan_signature(const signable_request& r);

// Authorization: Signature version="1",headers="...",keyId="...",algorithm="rsa-sha256",
// signature="..."
[[nodiscard]] std::string authorization_header(std::string_view key_id,
                                               std::string_view signed_headers,
                                               std::string_view signature_base64);

// "Thu, 05 Jan 2014 21:31:40 GMT" (RFC 7231 IMF-fixdate, English names whatever the locale).
[[nodiscard]] std::string http_date(system_clock::time_point t);
// The inverse, for a response's Date; nullopt on anything else.
[[nodiscard]] std::optional<system_clock::time_point> parse_http_date(std::string_view s);

// base64(SHA-256(body)): the x-content-sha256 header.
[[nodiscard]] std::string content_sha256(std::string_view body);

// The Host header for a URL's host and port, as net::http_client sends it (no port when it is
// the scheme's default).
[[nodiscard]] std::string host_header(std::string_view host, unsigned port, bool tls);

// An RSA private key, loaded once and shared (OpenSSL 3 keys may sign from several threads).
class signing_key {
 public:
  // From PEM (PKCS#1 or PKCS#8, encrypted if `pass_phrase` is given). Errors never quote the key.
  [[nodiscard]] static result<signing_key> from_pem(std::string_view pem,
                                                    std::string_view pass_phrase = {});

  // base64(RSASSA-PKCS1-v1_5(SHA-256(signing_string))). CPU work: call it on the blocking pool.
  [[nodiscard]] result<std::string> sign(std::string_view signing_string) const;

  // The key's OCI fingerprint: MD5 of its DER public key, as lowercase hex pairs joined by ':'.
  [[nodiscard]] std::string fingerprint() const;

  // The public half as PEM (SubjectPublicKeyInfo), e.g. to register with an emulator.
  [[nodiscard]] std::string public_pem() const;

 private:
  std::shared_ptr<EVP_PKEY> key_;
};

}  // namespace cloudbrain::providers::oci
