// OCI request signing against every case of ../shared/vectors/oci-signing (its README lists
// them: URL, body, signing string, signed headers, expected signature and Authorization), and
// the signer's own rules.
#include "providers/oci/signer.hpp"

#include "net/http_client.hpp"
#include "tests/unit/oci/payload.hpp"

#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include <filesystem>
#include <regex>

namespace cloudbrain::providers::oci {
namespace {
using test::read_file;
using test::vectors_dir;

std::string capture(const std::string& text, const std::string& pattern) {
  std::smatch m;
  if (!std::regex_search(text, m, std::regex(pattern))) return {};
  return m[1].str();
}

std::string replace_all(std::string s, const std::string& from, const std::string& to) {
  for (auto pos = s.find(from); pos != std::string::npos; pos = s.find(from, pos + to.size()))
    s.replace(pos, from.size(), to);
  return s;
}

struct vector_case {
  std::string title;
  std::string method;
  std::string url;
  std::string body_file;
  std::string content_type = "application/json";
  std::string sts_file;
  std::string signed_headers;
  std::string signature;
  std::string authorization;  // may be empty: not every case gives one
};

struct vector_suite {
  std::string key_id;
  std::string date;
  std::vector<vector_case> cases;
};

// Reads the cases out of the folder's README.md, so that a case added there is tested too.
vector_suite read_vectors() {
  vector_suite v;
  const std::string readme = read_file(vectors_dir() + "/README.md");
  v.key_id = capture(readme, "keyId: `([^`]+)`");
  v.date = capture(readme, "Date header[^`]*`([^`]+)`");
  const std::regex heading("\n## (Case [0-9]+: ([A-Z]+))");
  std::vector<std::pair<std::size_t, std::smatch>> starts;
  for (auto it = std::sregex_iterator(readme.begin(), readme.end(), heading);
       it != std::sregex_iterator(); ++it) {
    starts.emplace_back(static_cast<std::size_t>(it->position()), *it);
  }
  for (std::size_t i = 0; i < starts.size(); ++i) {
    const auto end = i + 1 < starts.size() ? starts[i + 1].first : readme.size();
    const std::string part = readme.substr(starts[i].first, end - starts[i].first);
    vector_case c;
    c.title = starts[i].second[1].str();
    c.method = starts[i].second[2].str();
    c.url = capture(part, "URL: `([^`]+)`");
    c.body_file = capture(part, "body `([^`]+)`");
    if (auto ct = capture(part, "Content-Type: ([^`]+)`"); !ct.empty()) c.content_type = ct;
    c.sts_file = capture(part, "Signing string: `([^`]+)`");
    c.signed_headers = capture(part, "Signed headers: `([^`]+)`");
    c.signature = capture(part, "Expected signature:\\s*`([^`]+)`");
    c.authorization = capture(part, "Expected Authorization header[^`]*`([^`]+)`");
    v.cases.push_back(std::move(c));
  }
  return v;
}

TEST(oci_signing_vectors, the_folder_is_there) {
  // Missing vectors fail the suite; they never make it pass by having nothing to check.
  ASSERT_TRUE(std::filesystem::is_directory(vectors_dir()))
      << vectors_dir() << " is missing (set CLOUDBRAIN_VECTORS_DIR for a checkout elsewhere)";
}

TEST(oci_signing_vectors, every_case) {
  const auto v = read_vectors();
  ASSERT_FALSE(v.key_id.empty()) << "no keyId in " << vectors_dir() << "/README.md";
  ASSERT_FALSE(v.date.empty()) << "no Date in the README";
  ASSERT_GE(v.cases.size(), 2u) << "the README lists a GET and a POST case at least";
  auto key = signing_key::from_pem(read_file(vectors_dir() + "/key.pem"));
  ASSERT_TRUE(key) << key.error().message();

  for (const auto& c : v.cases) {
    SCOPED_TRACE(c.title);
    ASSERT_FALSE(c.url.empty());
    ASSERT_FALSE(c.sts_file.empty());
    ASSERT_FALSE(c.signature.empty());
    auto url = net::parse_url(c.url);
    ASSERT_TRUE(url) << url.error().message();

    signable_request r;
    r.method = c.method;
    r.target = url->target;
    r.host = host_header(url->host, url->port, url->tls());
    r.date = v.date;
    if (!c.body_file.empty()) r.body = read_file(vectors_dir() + "/" + c.body_file);
    r.content_type = c.content_type;
    const auto plan = plan_signature(r);

    EXPECT_EQ(plan.signing_string, read_file(vectors_dir() + "/" + c.sts_file));
    if (!c.signed_headers.empty()) EXPECT_EQ(plan.signed_headers, c.signed_headers);
    auto signature = key->sign(plan.signing_string);
    ASSERT_TRUE(signature) << signature.error().message();
    EXPECT_EQ(*signature, c.signature);
    if (!c.authorization.empty()) {
      const std::string expected =
          replace_all(replace_all(c.authorization, "<keyId above>", v.key_id), "<signature above>",
                      c.signature);
      EXPECT_EQ(authorization_header(v.key_id, plan.signed_headers, *signature), expected);
    }
    // The headers sent are the ones signed, with the same values.
    for (const auto& [name, value] : plan.headers) {
      EXPECT_NE(plan.signing_string.find(name + ": " + value), std::string::npos) << name;
    }
  }
}

TEST(oci_signer, body_headers_only_on_post_put_patch) {
  signable_request r{"DELETE",
                     "/20160918/instances/ocid1.instance.oc1.iad.x?preserveBootVolume=false",
                     "iaas.us-ashburn-1.oraclecloud.com",
                     "Thu, 05 Jan 2014 21:31:40 GMT",
                     "",
                     ""};
  auto p = plan_signature(r);
  EXPECT_EQ(p.signed_headers, "date (request-target) host");
  EXPECT_EQ(p.signing_string,
            "date: Thu, 05 Jan 2014 21:31:40 GMT\n"
            "(request-target): delete "
            "/20160918/instances/ocid1.instance.oc1.iad.x?preserveBootVolume=false\n"
            "host: iaas.us-ashburn-1.oraclecloud.com");
  ASSERT_EQ(p.headers.size(), 1u);

  r.method = "put";
  r.body = "{}";
  r.content_type = "application/json";
  p = plan_signature(r);
  EXPECT_EQ(p.signed_headers,
            "date (request-target) host content-length content-type "
            "x-content-sha256");
  EXPECT_NE(p.signing_string.find("(request-target): put /20160918/"), std::string::npos);
  EXPECT_NE(p.signing_string.find("\ncontent-length: 2\n"), std::string::npos);

  // An empty POST body is signed too: length 0 and the SHA-256 of nothing.
  r.method = "POST";
  r.body.clear();
  p = plan_signature(r);
  EXPECT_NE(p.signing_string.find("\ncontent-length: 0\n"), std::string::npos);
  EXPECT_NE(p.signing_string.find("x-content-sha256: 47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="),
            std::string::npos);
}

TEST(oci_signer, host_header_as_the_client_sends_it) {
  EXPECT_EQ(host_header("iaas.us-ashburn-1.oraclecloud.com", 443, true),
            "iaas.us-ashburn-1.oraclecloud.com");
  EXPECT_EQ(host_header("127.0.0.1", 8080, false), "127.0.0.1:8080");
  EXPECT_EQ(host_header("127.0.0.1", 443, false), "127.0.0.1:443");
  EXPECT_EQ(host_header("::1", 80, false), "[::1]");
}

TEST(oci_signer, http_dates) {
  // 2014-01-05T21:31:40Z, the vectors' Date.
  const auto t = system_clock::from_time_t(1388957500);
  EXPECT_EQ(http_date(t), "Sun, 05 Jan 2014 21:31:40 GMT");
  auto back = parse_http_date("Sun, 05 Jan 2014 21:31:40 GMT");
  ASSERT_TRUE(back);
  EXPECT_EQ(*back, t);
  EXPECT_EQ(http_date(system_clock::from_time_t(951782400)), "Tue, 29 Feb 2000 00:00:00 GMT");
  EXPECT_FALSE(parse_http_date("2014-01-05T21:31:40Z"));
  EXPECT_FALSE(parse_http_date("Sun, 05 Foo 2014 21:31:40 GMT"));
  EXPECT_FALSE(parse_http_date(""));
}

TEST(oci_signer, key_fingerprint_is_md5_of_the_der_public_key) {
  auto key = signing_key::from_pem(read_file(vectors_dir() + "/key.pem"));
  ASSERT_TRUE(key) << key.error().message();
  // As `openssl pkey -in key.pem -pubout -outform DER | openssl md5 -c` prints it.
  EXPECT_EQ(key->fingerprint(), "73:61:a2:21:67:e0:df:be:7e:4b:93:1e:15:98:a5:b7");
  EXPECT_NE(key->public_pem().find("-----BEGIN PUBLIC KEY-----"), std::string::npos);
}

TEST(oci_signer, bad_keys_are_refused_without_quoting_them) {
  const std::string garbage =
      "-----BEGIN RSA PRIVATE KEY-----\nc2VjcmV0IHN0dWZm\n"
      "-----END RSA PRIVATE KEY-----\n";
  auto k = signing_key::from_pem(garbage);
  ASSERT_FALSE(k);
  EXPECT_TRUE(k.error().is(errc::bad_config));
  EXPECT_EQ(k.error().detail.find("c2VjcmV0"), std::string::npos);

  // An EC key: OCI API keys are RSA.
  EVP_PKEY* ec = EVP_EC_gen("P-256");
  ASSERT_NE(ec, nullptr);
  BIO* bio = BIO_new(BIO_s_mem());
  ASSERT_EQ(PEM_write_bio_PrivateKey(bio, ec, nullptr, nullptr, 0, nullptr, nullptr), 1);
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio, &data);
  const std::string pem(data, static_cast<std::size_t>(n));
  BIO_free(bio);
  EVP_PKEY_free(ec);
  auto not_rsa = signing_key::from_pem(pem);
  ASSERT_FALSE(not_rsa);
  EXPECT_NE(not_rsa.error().detail.find("not an RSA key"), std::string::npos);
}

TEST(oci_signer, encrypted_keys_open_with_their_pass_phrase) {
  auto plain = signing_key::from_pem(read_file(vectors_dir() + "/key.pem"));
  ASSERT_TRUE(plain);
  // The vectors' key, encrypted with AES-256 under a pass phrase.
  auto raw = read_file(vectors_dir() + "/key.pem");
  BIO* in = BIO_new_mem_buf(raw.data(), static_cast<int>(raw.size()));
  EVP_PKEY* pkey = PEM_read_bio_PrivateKey(in, nullptr, nullptr, nullptr);
  BIO_free(in);
  ASSERT_NE(pkey, nullptr);
  BIO* out = BIO_new(BIO_s_mem());
  const std::string phrase = "correct horse battery staple";
  ASSERT_EQ(PEM_write_bio_PKCS8PrivateKey(out, pkey, EVP_aes_256_cbc(), phrase.data(),
                                          static_cast<int>(phrase.size()), nullptr, nullptr),
            1);
  char* data = nullptr;
  const long n = BIO_get_mem_data(out, &data);
  const std::string encrypted(data, static_cast<std::size_t>(n));
  BIO_free(out);
  EVP_PKEY_free(pkey);

  auto none = signing_key::from_pem(encrypted);
  ASSERT_FALSE(none);
  EXPECT_NE(none.error().detail.find("no pass phrase"), std::string::npos);
  auto wrong = signing_key::from_pem(encrypted, "wrong");
  ASSERT_FALSE(wrong);
  EXPECT_EQ(wrong.error().detail.find("wrong"), std::string::npos);
  auto right = signing_key::from_pem(encrypted, phrase);
  ASSERT_TRUE(right) << right.error().message();
  EXPECT_EQ(right->fingerprint(), plain->fingerprint());
  EXPECT_EQ(right->sign("x").value(), plain->sign("x").value());
}

}  // namespace
}  // namespace cloudbrain::providers::oci
