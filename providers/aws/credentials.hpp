#pragma once

#include "core/config.hpp"
#include "core/error.hpp"
#include "core/time.hpp"
#include "providers/aws/sigv4.hpp"

#include <optional>
#include <string>
#include <string_view>

// Where AWS credentials come from, free of I/O: the shared credentials file, the environment
// and the answers of IMDSv2 (the instance metadata service). No error here ever carries a key,
// a secret or a token, nor a piece of a body that might hold one.
namespace cloudbrain::providers::aws {

// The profile `profile` of an AWS shared credentials file (INI: [profile] sections with
// aws_access_key_id, aws_secret_access_key and optionally aws_session_token). `path` is only for
// messages. Errors are errc::cloud_auth.
[[nodiscard]] result<credentials> parse_shared_credentials(std::string_view text,
                                                           std::string_view profile,
                                                           std::string_view path);

// AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN; none when neither of the first
// two is set, an error (cloud_auth) when only one is.
[[nodiscard]] result<std::optional<credentials>> credentials_from_environment(
    const environment_lookup& env);

// IMDSv2 paths and headers.
inline constexpr const char* imds_token_path = "/latest/api/token";
inline constexpr const char* imds_token_ttl_header = "X-aws-ec2-metadata-token-ttl-seconds";
inline constexpr const char* imds_token_header = "X-aws-ec2-metadata-token";
inline constexpr const char* imds_role_path = "/latest/meta-data/iam/security-credentials/";

// The first role named in the answer to imds_role_path (one name a line); empty if none.
[[nodiscard]] std::string first_role(std::string_view body);

// The role's credentials as IMDS gives them (JSON with Code, AccessKeyId, SecretAccessKey,
// Token, Expiration). Errors (cloud_auth for a Code other than Success, cloud_transient for an
// answer that does not parse) never quote the body.
[[nodiscard]] result<credentials> parse_imds_credentials(std::string_view body);

}  // namespace cloudbrain::providers::aws
