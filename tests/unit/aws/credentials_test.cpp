#include "providers/aws/credentials.hpp"

#include <gtest/gtest.h>

#include <map>

namespace cloudbrain::providers::aws {
namespace {

constexpr const char* secret = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

TEST(shared_credentials, reads_the_profile_asked_for) {
  const std::string file = std::string(R"(# comment
[default]
aws_access_key_id = AKIDDEFAULT
aws_secret_access_key = defaultsecret

[ci]
; another comment
AWS_ACCESS_KEY_ID=AKIDEXAMPLE
aws_secret_access_key : )") +
                           secret + R"(
aws_session_token = FwoGZXIvYXdzEXAMPLE
s3 =
    max_concurrent_requests = 20
region = eu-west-1
)";
  auto c = parse_shared_credentials(file, "ci", "/etc/cloudbrain/aws");
  ASSERT_TRUE(c) << c.error().detail;
  EXPECT_EQ(c->access_key_id, "AKIDEXAMPLE");
  EXPECT_EQ(c->secret_access_key, secret);
  EXPECT_EQ(c->session_token, "FwoGZXIvYXdzEXAMPLE");
  EXPECT_FALSE(c->expires_at);
  EXPECT_EQ(c->source, "shared credentials file /etc/cloudbrain/aws [ci]");
  auto d = parse_shared_credentials(file, "default", "f");
  ASSERT_TRUE(d);
  EXPECT_EQ(d->access_key_id, "AKIDDEFAULT");
  EXPECT_EQ(d->session_token, "");
}

TEST(shared_credentials, errors_name_what_is_missing_never_a_value) {
  const std::string file =
      std::string("[a]\naws_access_key_id = AKIDA\n[b]\naws_secret_access_key = ") + secret +
      "\n[c]\naws_access_key_id = AK ID\naws_secret_access_key = s\n";
  auto missing = parse_shared_credentials(file, "zzz", "/f");
  ASSERT_FALSE(missing);
  EXPECT_TRUE(missing.error().is(errc::cloud_auth));
  EXPECT_EQ(missing.error().detail, "the credentials file '/f' has no profile [zzz]");
  auto no_secret = parse_shared_credentials(file, "a", "/f");
  ASSERT_FALSE(no_secret);
  EXPECT_NE(no_secret.error().detail.find("no aws_secret_access_key"), std::string::npos);
  auto no_key = parse_shared_credentials(file, "b", "/f");
  ASSERT_FALSE(no_key);
  EXPECT_NE(no_key.error().detail.find("no aws_access_key_id"), std::string::npos);
  EXPECT_EQ(no_key.error().detail.find(secret), std::string::npos);
  auto spaced = parse_shared_credentials(file, "c", "/f");
  ASSERT_FALSE(spaced);
  EXPECT_EQ(spaced.error().detail.find("AK ID"), std::string::npos);
  auto garbage = parse_shared_credentials("[a]\nthis is no ini\n", "a", "/f");
  ASSERT_FALSE(garbage);
  EXPECT_NE(garbage.error().detail.find("line 2"), std::string::npos);
  auto header = parse_shared_credentials("[a\n", "a", "/f");
  ASSERT_FALSE(header);
  EXPECT_NE(header.error().detail.find("section header"), std::string::npos);
}

environment_lookup env_of(std::map<std::string, std::string> vars) {
  return [vars](const std::string& name) -> std::optional<std::string> {
    const auto it = vars.find(name);
    if (it == vars.end()) return std::nullopt;
    return it->second;
  };
}

TEST(environment_credentials, both_or_neither) {
  auto none = credentials_from_environment(env_of({}));
  ASSERT_TRUE(none);
  EXPECT_FALSE(*none);
  auto full = credentials_from_environment(env_of({{"AWS_ACCESS_KEY_ID", "AKIDENV"},
                                                   {"AWS_SECRET_ACCESS_KEY", secret},
                                                   {"AWS_SESSION_TOKEN", "tok"}}));
  ASSERT_TRUE(full && *full);
  EXPECT_EQ((*full)->access_key_id, "AKIDENV");
  EXPECT_EQ((*full)->session_token, "tok");
  EXPECT_EQ((*full)->source, "environment");
  auto half = credentials_from_environment(env_of({{"AWS_ACCESS_KEY_ID", "AKIDENV"}}));
  ASSERT_FALSE(half);
  EXPECT_TRUE(half.error().is(errc::cloud_auth));
  EXPECT_NE(half.error().detail.find("AWS_SECRET_ACCESS_KEY is not"), std::string::npos);
  auto other_half = credentials_from_environment(env_of({{"AWS_SECRET_ACCESS_KEY", secret}}));
  ASSERT_FALSE(other_half);
  EXPECT_EQ(other_half.error().detail.find(secret), std::string::npos);
}

TEST(imds_credentials, the_role_answer) {
  auto c = parse_imds_credentials(R"({
  "Code" : "Success",
  "LastUpdated" : "2024-05-01T10:00:00Z",
  "Type" : "AWS-HMAC",
  "AccessKeyId" : "ASIAEXAMPLE",
  "SecretAccessKey" : "imdssecret",
  "Token" : "IQoJb3JpZ2luX2VjEXAMPLE",
  "Expiration" : "2024-05-01T16:00:00Z"
})");
  ASSERT_TRUE(c) << c.error().detail;
  EXPECT_EQ(c->access_key_id, "ASIAEXAMPLE");
  EXPECT_EQ(c->secret_access_key, "imdssecret");
  EXPECT_EQ(c->session_token, "IQoJb3JpZ2luX2VjEXAMPLE");
  ASSERT_TRUE(c->expires_at);
  EXPECT_EQ(format_rfc3339(*c->expires_at), "2024-05-01T16:00:00.000000Z");
  EXPECT_EQ(c->source, "IMDSv2");
  EXPECT_EQ(first_role("ci-role\nother\n"), "ci-role");
  EXPECT_EQ(first_role(""), "");
}

TEST(imds_credentials, failures_never_quote_the_body) {
  auto refused =
      parse_imds_credentials(R"({"Code":"AssumeRoleUnauthorizedAccess","SecretAccessKey":"leak"})");
  ASSERT_FALSE(refused);
  EXPECT_TRUE(refused.error().is(errc::cloud_auth));
  EXPECT_NE(refused.error().detail.find("AssumeRoleUnauthorizedAccess"), std::string::npos);
  auto garbled = parse_imds_credentials(R"({"Code":"Success","SecretAccessKey":"leak")");
  ASSERT_FALSE(garbled);
  EXPECT_TRUE(garbled.error().is(errc::cloud_transient));
  EXPECT_EQ(garbled.error().detail.find("leak"), std::string::npos);
  auto partial = parse_imds_credentials(R"({"Code":"Success","SecretAccessKey":"leak"})");
  ASSERT_FALSE(partial);
  EXPECT_EQ(partial.error().detail.find("leak"), std::string::npos);
  auto bad_time = parse_imds_credentials(
      R"({"Code":"Success","AccessKeyId":"A","SecretAccessKey":"leak","Expiration":"soon"})");
  ASSERT_FALSE(bad_time);
  EXPECT_EQ(bad_time.error().detail.find("leak"), std::string::npos);
}

}  // namespace
}  // namespace cloudbrain::providers::aws
