#include "providers/gce/jwt.hpp"

#include "core/encoding.hpp"
#include "providers/gce/wire.hpp"

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <boost/json.hpp>

#include <memory>
#include <vector>

namespace cloudbrain::providers::gce {
namespace json = boost::json;

namespace {

struct bio_free {
  void operator()(BIO* b) const { BIO_free(b); }
};
struct pkey_free {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
struct md_ctx_free {
  void operator()(EVP_MD_CTX* c) const { EVP_MD_CTX_free(c); }
};

std::string b64url(std::string_view s) { return base64_encode(s, true); }

}  // namespace

result<service_account_key> parse_service_account_key(std::string_view text) {
  boost::system::error_code ec;
  auto v = json::parse(text, ec);
  if (ec || !v.is_object()) {
    return fail(errc::bad_config, "the service-account key file is not JSON");
  }
  const auto& o = v.get_object();
  auto field = [&](std::string_view name) -> std::string {
    const auto* f = o.if_contains(name);
    return f && f->is_string() ? std::string(f->get_string()) : std::string();
  };
  service_account_key k;
  k.type = field("type");
  k.project_id = field("project_id");
  k.client_email = field("client_email");
  k.private_key_id = field("private_key_id");
  k.private_key = field("private_key");
  k.token_uri = field("token_uri");
  if (k.type != "service_account") {
    return fail(errc::bad_config, "the key file's type is '" + k.type +
                                      "', not 'service_account' (only service-account keys work)");
  }
  if (k.client_email.empty()) return fail(errc::bad_config, "the key file has no 'client_email'");
  if (k.private_key.find("-----BEGIN") == std::string::npos) {
    return fail(errc::bad_config, "the key file has no PEM 'private_key'");
  }
  if (k.token_uri.empty()) k.token_uri = default_token_uri;
  return k;
}

result<std::string> make_jwt_assertion(const service_account_key& key, std::string_view scope,
                                       system_clock::time_point now, std::string_view audience) {
  json::object header{{"alg", "RS256"}, {"typ", "JWT"}};
  if (!key.private_key_id.empty()) header["kid"] = key.private_key_id;
  const auto iat = std::chrono::duration_cast<std::chrono::seconds>(now.time_since_epoch()).count();
  json::object claims{{"iss", key.client_email},
                      {"scope", scope},
                      {"aud", audience.empty() ? std::string_view(key.token_uri) : audience},
                      {"iat", iat},
                      {"exp", iat + 3600}};
  const std::string signing_input =
      b64url(json::serialize(header)) + "." + b64url(json::serialize(claims));

  std::unique_ptr<BIO, bio_free> bio(
      BIO_new_mem_buf(key.private_key.data(), static_cast<int>(key.private_key.size())));
  if (!bio) return fail(errc::internal, "out of memory");
  std::unique_ptr<EVP_PKEY, pkey_free> pkey(
      PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr));
  if (!pkey) {
    return fail(errc::bad_config, "the private key of " + key.client_email + " does not load");
  }
  if (EVP_PKEY_base_id(pkey.get()) != EVP_PKEY_RSA) {
    return fail(errc::bad_config, "the private key of " + key.client_email + " is not RSA");
  }
  std::unique_ptr<EVP_MD_CTX, md_ctx_free> ctx(EVP_MD_CTX_new());
  std::size_t len = 0;
  if (!ctx || EVP_DigestSignInit(ctx.get(), nullptr, EVP_sha256(), nullptr, pkey.get()) != 1 ||
      EVP_DigestSign(ctx.get(), nullptr, &len,
                     reinterpret_cast<const unsigned char*>(signing_input.data()),
                     signing_input.size()) != 1) {
    return fail(errc::internal, "RS256 signing failed");
  }
  std::vector<unsigned char> sig(len);
  if (EVP_DigestSign(ctx.get(), sig.data(), &len,
                     reinterpret_cast<const unsigned char*>(signing_input.data()),
                     signing_input.size()) != 1) {
    return fail(errc::internal, "RS256 signing failed");
  }
  return signing_input + "." +
         b64url(std::string_view(reinterpret_cast<const char*>(sig.data()), len));
}

std::string token_request_body(std::string_view assertion) {
  return "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion=" +
         percent_encode(assertion);
}

result<access_token> parse_token_response(std::string_view body, system_clock::time_point now) {
  boost::system::error_code ec;
  auto v = json::parse(body, ec);
  if (ec || !v.is_object()) {
    return fail(errc::cloud_transient,
                "the token endpoint answered with something that is not JSON");
  }
  const auto& o = v.get_object();
  const auto* tok = o.if_contains("access_token");
  if (!tok || !tok->is_string() || tok->get_string().empty()) {
    // Only the error's own fields; the body could echo a token.
    std::string detail = "the token endpoint gave no access_token";
    if (const auto* e = o.if_contains("error"); e && e->is_string()) {
      detail += std::string(": ") + std::string(e->get_string());
      if (const auto* d = o.if_contains("error_description"); d && d->is_string()) {
        detail += " (" + std::string(d->get_string()) + ")";
      }
    }
    return fail(errc::cloud_auth, std::move(detail));
  }
  if (const auto* t = o.if_contains("token_type");
      t && t->is_string() && t->get_string() != "Bearer" && t->get_string() != "bearer") {
    return fail(errc::cloud_auth, "the token endpoint gave a token of type '" +
                                      std::string(t->get_string()) + "', not Bearer");
  }
  std::int64_t expires_in = 3600;
  if (const auto* e = o.if_contains("expires_in")) {
    if (e->is_int64())
      expires_in = e->get_int64();
    else if (e->is_uint64())
      expires_in = static_cast<std::int64_t>(e->get_uint64());
    else if (e->is_double())
      expires_in = static_cast<std::int64_t>(e->get_double());
    else
      return fail(errc::cloud_transient, "the token endpoint gave a bad expires_in");
  }
  if (expires_in <= 0 || expires_in > 86400 * 7) {
    return fail(errc::cloud_transient,
                "the token endpoint gave expires_in " + std::to_string(expires_in));
  }
  return access_token{std::string(tok->get_string()), now + std::chrono::seconds(expires_in)};
}

}  // namespace cloudbrain::providers::gce
