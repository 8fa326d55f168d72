#include "providers/oci/signer.hpp"

#include "core/encoding.hpp"

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <array>
#include <cctype>
#include <charconv>
#include <cstdio>
#include <ctime>

namespace cloudbrain::providers::oci {
namespace {

struct bio_free {
  void operator()(BIO* b) const { BIO_free(b); }
};
struct md_ctx_free {
  void operator()(EVP_MD_CTX* c) const { EVP_MD_CTX_free(c); }
};

constexpr std::array<const char*, 7> weekdays{"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
constexpr std::array<const char*, 12> months{"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                             "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

bool signs_body(std::string_view method) {
  std::string m;
  for (char c : method) m += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return m == "POST" || m == "PUT" || m == "PATCH";
}

std::string lower(std::string_view s) {
  std::string out;
  for (char c : s) out += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string digest(const EVP_MD* md, std::string_view data) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_Digest(data.data(), data.size(), out, &len, md, nullptr) != 1) return {};
  return std::string(reinterpret_cast<const char*>(out), len);
}

// The passphrase callback's argument: what from_pem was given.
int pass_phrase_callback(char* buf, int size, int, void* user) {
  const auto* phrase = static_cast<const std::string_view*>(user);
  if (!phrase || phrase->empty() || static_cast<int>(phrase->size()) > size) return -1;
  std::copy(phrase->begin(), phrase->end(), buf);
  return static_cast<int>(phrase->size());
}

}  // namespace

signature_plan plan_signature(const signable_request& r) {
  signature_plan p;
  p.headers.emplace_back("date", r.date);
  p.signed_headers = "date (request-target) host";
  p.signing_string = "date: " + r.date + "\n(request-target): " + lower(r.method) + " " + r.target +
                     "\nhost: " + r.host;
  if (signs_body(r.method)) {
    const std::string length = std::to_string(r.body.size());
    const std::string sha = content_sha256(r.body);
    p.headers.emplace_back("content-length", length);
    p.headers.emplace_back("content-type", r.content_type);
    p.headers.emplace_back("x-content-sha256", sha);
    p.signed_headers += " content-length content-type x-content-sha256";
    p.signing_string += "\ncontent-length: " + length + "\ncontent-type: " + r.content_type +
                        "\nx-content-sha256: " + sha;
  }
  return p;
}

std::string authorization_header(std::string_view key_id, std::string_view signed_headers,
                                 std::string_view signature_base64) {
  std::string h = "Signature version=\"1\",headers=\"";
  h.append(signed_headers).append("\",keyId=\"").append(key_id);
  h.append("\",algorithm=\"rsa-sha256\",signature=\"").append(signature_base64).append("\"");
  return h;
}

std::string http_date(system_clock::time_point t) {
  const std::time_t tt = system_clock::to_time_t(t);
  std::tm tm{};
  gmtime_r(&tt, &tm);
  char buf[40];
  std::snprintf(buf, sizeof buf, "%s, %02d %s %04d %02d:%02d:%02d GMT", weekdays[tm.tm_wday],
                tm.tm_mday, months[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
  return buf;
}

std::optional<system_clock::time_point> parse_http_date(std::string_view s) {
  // "Thu, 05 Jan 2014 21:31:40 GMT"
  if (s.size() != 29 || s.substr(3, 2) != ", " || s.substr(25) != " GMT") return std::nullopt;
  auto num = [&](std::size_t pos, std::size_t len) -> std::optional<int> {
    int v = 0;
    const auto* b = s.data() + pos;
    const auto [end, ec] = std::from_chars(b, b + len, v);
    if (ec != std::errc{} || end != b + len) return std::nullopt;
    return v;
  };
  std::tm tm{};
  const auto day = num(5, 2), year = num(12, 4), hour = num(17, 2), min = num(20, 2),
             sec = num(23, 2);
  int month = -1;
  for (int i = 0; i < 12; ++i) {
    if (s.substr(8, 3) == months[static_cast<std::size_t>(i)]) month = i;
  }
  if (!day || !year || !hour || !min || !sec || month < 0 || s[7] != ' ' || s[11] != ' ' ||
      s[16] != ' ' || s[19] != ':' || s[22] != ':') {
    return std::nullopt;
  }
  tm.tm_mday = *day;
  tm.tm_mon = month;
  tm.tm_year = *year - 1900;
  tm.tm_hour = *hour;
  tm.tm_min = *min;
  tm.tm_sec = *sec;
  return system_clock::from_time_t(timegm(&tm));
}

std::string content_sha256(std::string_view body) {
  return base64_encode(digest(EVP_sha256(), body));
}

std::string host_header(std::string_view host, unsigned port, bool tls) {
  std::string h =
      host.find(':') != std::string_view::npos ? "[" + std::string(host) + "]" : std::string(host);
  if (port != (tls ? 443u : 80u)) h += ":" + std::to_string(port);
  return h;
}

result<signing_key> signing_key::from_pem(std::string_view pem, std::string_view pass_phrase) {
  std::unique_ptr<BIO, bio_free> bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  if (!bio) return fail(errc::internal, "out of memory");
  EVP_PKEY* raw = PEM_read_bio_PrivateKey(bio.get(), nullptr, pass_phrase_callback,
                                          const_cast<std::string_view*>(&pass_phrase));
  if (!raw) {
    const bool encrypted = pem.find("ENCRYPTED") != std::string_view::npos;
    return fail(errc::bad_config,
                encrypted ? (pass_phrase.empty() ? "the key is encrypted and no pass phrase is set"
                                                 : "the key does not open with its pass phrase")
                          : "the key is not a PEM private key");
  }
  signing_key k;
  k.key_.reset(raw, EVP_PKEY_free);
  if (EVP_PKEY_base_id(raw) != EVP_PKEY_RSA) {
    return fail(errc::bad_config, "the key is not an RSA key (OCI API keys are RSA)");
  }
  return k;
}

result<std::string> signing_key::sign(std::string_view signing_string) const {
  std::unique_ptr<EVP_MD_CTX, md_ctx_free> ctx(EVP_MD_CTX_new());
  std::size_t len = 0;
  const auto* data = reinterpret_cast<const unsigned char*>(signing_string.data());
  if (!ctx || !key_ ||
      EVP_DigestSignInit(ctx.get(), nullptr, EVP_sha256(), nullptr, key_.get()) != 1 ||
      EVP_DigestSign(ctx.get(), nullptr, &len, data, signing_string.size()) != 1) {
    return fail(errc::internal, "rsa-sha256 signing failed");
  }
  std::string sig(len, '\0');
  if (EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(sig.data()), &len, data,
                     signing_string.size()) != 1) {
    return fail(errc::internal, "rsa-sha256 signing failed");
  }
  sig.resize(len);
  return base64_encode(sig);
}

std::string signing_key::fingerprint() const {
  if (!key_) return {};
  unsigned char* der = nullptr;
  const int len = i2d_PUBKEY(key_.get(), &der);
  if (len <= 0) return {};
  const std::string md5 =
      digest(EVP_md5(), std::string_view(reinterpret_cast<const char*>(der), len));
  OPENSSL_free(der);
  static constexpr char hex[] = "0123456789abcdef";
  std::string out;
  for (unsigned char c : md5) {
    if (!out.empty()) out += ':';
    out += hex[c >> 4];
    out += hex[c & 15];
  }
  return out;
}

std::string signing_key::public_pem() const {
  if (!key_) return {};
  std::unique_ptr<BIO, bio_free> bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_PUBKEY(bio.get(), key_.get()) != 1) return {};
  char* data = nullptr;
  const long len = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<std::size_t>(len));
}

}  // namespace cloudbrain::providers::oci
