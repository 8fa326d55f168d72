#include "providers/gce/jwt.hpp"

#include "core/encoding.hpp"
#include "tests/unit/gce/payload.hpp"

#include <gtest/gtest.h>
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <boost/json.hpp>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>

namespace cloudbrain::providers::gce {
namespace {
namespace json = boost::json;
using test::payload;

struct pkey_free {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
using pkey_ptr = std::unique_ptr<EVP_PKEY, pkey_free>;

std::string to_pem(EVP_PKEY* key, bool private_half) {
  BIO* bio = BIO_new(BIO_s_mem());
  const int ok = private_half
                     ? PEM_write_bio_PrivateKey(bio, key, nullptr, nullptr, 0, nullptr, nullptr)
                     : PEM_write_bio_PUBKEY(bio, key);
  EXPECT_EQ(ok, 1);
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio, &data);
  std::string out(data, static_cast<std::size_t>(n));
  BIO_free(bio);
  return out;
}

// One RSA key for the whole suite: generating one takes a while.
struct test_key {
  pkey_ptr key{EVP_RSA_gen(2048)};
  std::string private_pem = to_pem(key.get(), true);
  std::string public_pem = to_pem(key.get(), false);
};
const test_key& the_key() {
  static const test_key k;
  return k;
}

std::string key_file_json(const std::string& pem) {
  return json::serialize(
      json::object{{"type", "service_account"},
                   {"project_id", "my-project"},
                   {"private_key_id", "0f1e2d3c4b5a69788796a5b4c3d2e1f0a9b8c7d6"},
                   {"private_key", pem},
                   {"client_email", "cloudbrain@my-project.iam.gserviceaccount.com"},
                   {"client_id", "112233445566778899001"},
                   {"auth_uri", "https://accounts.google.com/o/oauth2/auth"},
                   {"token_uri", "https://oauth2.googleapis.com/token"},
                   {"auth_provider_x509_cert_url", "https://www.googleapis.com/oauth2/v1/certs"},
                   {"client_x509_cert_url",
                    "https://www.googleapis.com/robot/v1/metadata/x509/"
                    "cloudbrain%40my-project.iam.gserviceaccount.com"},
                   {"universe_domain", "googleapis.com"}});
}

service_account_key the_account() {
  return parse_service_account_key(key_file_json(the_key().private_pem)).value();
}

std::vector<std::string> split_jwt(const std::string& jwt) {
  std::vector<std::string> parts;
  std::size_t start = 0;
  for (;;) {
    const auto dot = jwt.find('.', start);
    parts.push_back(jwt.substr(start, dot - start));
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  return parts;
}

json::object decode_part(const std::string& part) {
  EXPECT_EQ(part.find('='), std::string::npos) << "padding in " << part;
  auto raw = base64_decode(part, true);
  EXPECT_TRUE(raw) << part;
  return raw ? json::parse(*raw).as_object() : json::object{};
}

bool verifies(EVP_PKEY* key, const std::string& signing_input, const std::string& sig) {
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  const bool ok =
      EVP_DigestVerifyInit(ctx, nullptr, EVP_sha256(), nullptr, key) == 1 &&
      EVP_DigestVerify(ctx, reinterpret_cast<const unsigned char*>(sig.data()), sig.size(),
                       reinterpret_cast<const unsigned char*>(signing_input.data()),
                       signing_input.size()) == 1;
  EVP_MD_CTX_free(ctx);
  return ok;
}

const auto t0 = system_clock::time_point(std::chrono::seconds(1795468674));

TEST(gce_service_account_key, parses_a_key_file) {
  const auto k = parse_service_account_key(key_file_json(the_key().private_pem));
  ASSERT_TRUE(k) << k.error().message();
  EXPECT_EQ(k->type, "service_account");
  EXPECT_EQ(k->project_id, "my-project");
  EXPECT_EQ(k->client_email, "cloudbrain@my-project.iam.gserviceaccount.com");
  EXPECT_EQ(k->private_key_id, "0f1e2d3c4b5a69788796a5b4c3d2e1f0a9b8c7d6");
  EXPECT_EQ(k->token_uri, "https://oauth2.googleapis.com/token");
  EXPECT_EQ(k->private_key, the_key().private_pem);
}

TEST(gce_service_account_key, refusals_never_show_the_key) {
  const std::string pem = the_key().private_pem;
  auto body = json::parse(key_file_json(pem)).as_object();
  body["type"] = "authorized_user";
  auto e = parse_service_account_key(json::serialize(body));
  ASSERT_FALSE(e);
  EXPECT_TRUE(e.error().is(errc::bad_config));
  EXPECT_EQ(e.error().detail.find("PRIVATE KEY"), std::string::npos);

  body["type"] = "service_account";
  body.erase("client_email");
  e = parse_service_account_key(json::serialize(body));
  ASSERT_FALSE(e);
  EXPECT_NE(e.error().detail.find("client_email"), std::string::npos);

  EXPECT_FALSE(parse_service_account_key("{not json " + pem));
  EXPECT_EQ(parse_service_account_key("{not json " + pem).error().detail.find("PRIVATE"),
            std::string::npos);

  // A key that does not load: named by account, not shown.
  auto broken = the_account();
  broken.private_key =
      "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----\n";
  const auto signed_ = make_jwt_assertion(broken, compute_scope, t0);
  ASSERT_FALSE(signed_);
  EXPECT_TRUE(signed_.error().is(errc::bad_config));
  EXPECT_NE(signed_.error().detail.find("cloudbrain@my-project"), std::string::npos);
  EXPECT_EQ(signed_.error().detail.find("MIIE"), std::string::npos);
}

TEST(gce_jwt, header_and_claims) {
  const auto jwt = make_jwt_assertion(the_account(), compute_scope, t0);
  ASSERT_TRUE(jwt) << jwt.error().message();
  const auto parts = split_jwt(*jwt);
  ASSERT_EQ(parts.size(), 3u);
  const auto header = decode_part(parts[0]);
  EXPECT_EQ(header.at("alg").as_string(), "RS256");
  EXPECT_EQ(header.at("typ").as_string(), "JWT");
  EXPECT_EQ(header.at("kid").as_string(), "0f1e2d3c4b5a69788796a5b4c3d2e1f0a9b8c7d6");
  const auto claims = decode_part(parts[1]);
  EXPECT_EQ(claims.at("iss").as_string(), "cloudbrain@my-project.iam.gserviceaccount.com");
  EXPECT_EQ(claims.at("scope").as_string(), "https://www.googleapis.com/auth/compute");
  EXPECT_EQ(claims.at("aud").as_string(), "https://oauth2.googleapis.com/token");
  EXPECT_EQ(claims.at("iat").to_number<std::int64_t>(), 1795468674);
  EXPECT_EQ(claims.at("exp").to_number<std::int64_t>(), 1795468674 + 3600);
  EXPECT_EQ(claims.size(), 5u);
  for (const auto& p : parts) {
    EXPECT_EQ(p.find_first_of("+/="), std::string::npos) << "not base64url: " << p;
  }

  const auto other =
      make_jwt_assertion(the_account(), compute_scope, t0, "http://127.0.0.1:9/token");
  ASSERT_TRUE(other);
  EXPECT_EQ(decode_part(split_jwt(*other)[1]).at("aud").as_string(), "http://127.0.0.1:9/token");
}

TEST(gce_jwt, signature_verifies_with_the_public_key) {
  const auto jwt = make_jwt_assertion(the_account(), compute_scope, t0);
  ASSERT_TRUE(jwt);
  const auto parts = split_jwt(*jwt);
  const auto sig = base64_decode(parts[2], true);
  ASSERT_TRUE(sig);
  EXPECT_EQ(sig->size(), 256u);  // RSA-2048
  const std::string input = parts[0] + "." + parts[1];
  EXPECT_TRUE(verifies(the_key().key.get(), input, *sig));
  // ... and only for what was signed, only with that key.
  EXPECT_FALSE(verifies(the_key().key.get(), input + "x", *sig));
  pkey_ptr stranger(EVP_RSA_gen(2048));
  EXPECT_FALSE(verifies(stranger.get(), input, *sig));
}

TEST(gce_jwt, the_openssl_command_agrees) {
  ASSERT_EQ(std::system("command -v openssl >/dev/null 2>&1"), 0)
      << "the openssl command is missing (deploy/dev/install-deps.sh installs it)";
  const auto jwt = make_jwt_assertion(the_account(), compute_scope, t0);
  ASSERT_TRUE(jwt);
  const auto parts = split_jwt(*jwt);
  const auto dir =
      std::filesystem::temp_directory_path() / ("cloudbrain-gce-jwt-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  std::ofstream(dir / "pub.pem") << the_key().public_pem;
  std::ofstream(dir / "input", std::ios::binary) << parts[0] << "." << parts[1];
  std::ofstream(dir / "sig", std::ios::binary) << *base64_decode(parts[2], true);
  const std::string cmd = "openssl dgst -sha256 -verify " + (dir / "pub.pem").string() +
                          " -signature " + (dir / "sig").string() + " " + (dir / "input").string() +
                          " >/dev/null 2>&1";
  EXPECT_EQ(std::system(cmd.c_str()), 0);
  std::ofstream(dir / "input", std::ios::binary | std::ios::app) << "tampered";
  EXPECT_NE(std::system(cmd.c_str()), 0);
  std::filesystem::remove_all(dir);
}

TEST(gce_jwt, refuses_a_non_rsa_key) {
  pkey_ptr ec(EVP_EC_gen("P-256"));
  auto account = the_account();
  account.private_key = to_pem(ec.get(), true);
  const auto r = make_jwt_assertion(account, compute_scope, t0);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().detail.find("not RSA"), std::string::npos);
}

TEST(gce_token, request_body_is_form_encoded) {
  EXPECT_EQ(
      token_request_body("aaa.bbb.c-_"),
      "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion=aaa.bbb.c-_");
}

TEST(gce_token, response) {
  auto t = parse_token_response(payload("token_ok.json"), t0);
  ASSERT_TRUE(t) << t.error().message();
  EXPECT_EQ(t->token, "ya29.c.b0Aaekm1K-example-not-a-real-token");
  EXPECT_EQ(t->expires_at, t0 + std::chrono::seconds(3599));
  t = parse_token_response(payload("token_metadata_server.json"), t0);
  ASSERT_TRUE(t);
  EXPECT_EQ(t->expires_at, t0 + std::chrono::seconds(3127));

  const auto refused = parse_token_response(payload("token_invalid_grant.json"), t0);
  ASSERT_FALSE(refused);
  EXPECT_TRUE(refused.error().is(errc::cloud_auth));
  EXPECT_NE(refused.error().detail.find("invalid_grant"), std::string::npos);
  EXPECT_NE(refused.error().detail.find("Invalid JWT Signature."), std::string::npos);

  EXPECT_TRUE(parse_token_response("<html>", t0).error().is(errc::cloud_transient));
  EXPECT_FALSE(parse_token_response(R"({"access_token":"x","expires_in":-1})", t0));
  EXPECT_FALSE(parse_token_response(R"({"access_token":"x","expires_in":"soon"})", t0));
  EXPECT_FALSE(parse_token_response(R"({"access_token":"x","token_type":"MAC"})", t0));
  // A refusal never echoes a token.
  const auto odd = parse_token_response(R"({"access_token":"","id_token":"secret-id-token"})", t0);
  ASSERT_FALSE(odd);
  EXPECT_EQ(odd.error().detail.find("secret"), std::string::npos);
}

}  // namespace
}  // namespace cloudbrain::providers::gce
