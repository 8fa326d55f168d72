#include "providers/aws/sigv4.hpp"

#include "core/token.hpp"
#include "core/uuid.hpp"

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <algorithm>
#include <cstdio>
#include <ctime>
#include <map>

namespace cloudbrain::providers::aws {
namespace {

bool unreserved(unsigned char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '_' || c == '.' || c == '~';
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// Trims, and turns every run of spaces or tabs inside into one space.
std::string squeeze(std::string_view v) {
  std::string out;
  bool in_space = false;
  for (char c : v) {
    if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
      in_space = true;
      continue;
    }
    if (in_space && !out.empty()) out += ' ';
    in_space = false;
    out += c;
  }
  return out;
}

bool never_signed(std::string_view lowered) {
  return lowered == "authorization" || lowered == "user-agent" || lowered == "expect" ||
         lowered == "transfer-encoding" || lowered == "x-amzn-trace-id";
}

void set_header(std::vector<std::pair<std::string, std::string>>& headers, std::string_view name,
                std::string value) {
  std::erase_if(headers, [&](const auto& h) { return lower(h.first) == lower(name); });
  headers.emplace_back(std::string(name), std::move(value));
}

}  // namespace

std::string uri_encode(std::string_view s, bool keep_slash) {
  static constexpr char hex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(s.size());
  for (unsigned char c : s) {
    if (unreserved(c) || (keep_slash && c == '/')) {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out;
}

std::string uri_decode(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size()) {
      const int hi = hex_value(s[i + 1]);
      const int lo = hex_value(s[i + 2]);
      if (hi >= 0 && lo >= 0) {
        out += static_cast<char>(hi * 16 + lo);
        i += 2;
        continue;
      }
    }
    out += s[i];
  }
  return out;
}

std::string canonical_uri(std::string_view path) {
  // RFC 3986's dot-segment removal, with empty segments dropped too (AWS wants "//" gone).
  if (path.empty()) return "/";
  std::vector<std::string_view> kept;
  for (std::size_t start = 0; start <= path.size();) {
    const auto slash = path.find('/', start);
    const auto end = slash == std::string_view::npos ? path.size() : slash;
    const auto seg = path.substr(start, end - start);
    if (seg == "..") {
      if (!kept.empty()) kept.pop_back();
    } else if (!seg.empty() && seg != ".") {
      kept.push_back(seg);
    }
    if (slash == std::string_view::npos) break;
    start = slash + 1;
  }
  std::string out = path.front() == '/' ? "/" : "";
  for (std::size_t i = 0; i < kept.size(); ++i) {
    if (i > 0) out += '/';
    out += kept[i];
  }
  if (path.back() == '/' && !kept.empty()) out += '/';
  // The path as sent is encoded once more: a raw space becomes %20, an escaped one %2520.
  return uri_encode(out, true);
}

std::string canonical_query(std::string_view query) {
  std::vector<std::pair<std::string, std::string>> params;
  for (std::size_t start = 0; start <= query.size();) {
    const auto amp = query.find('&', start);
    const auto end = amp == std::string_view::npos ? query.size() : amp;
    const auto part = query.substr(start, end - start);
    if (!part.empty()) {
      const auto eq = part.find('=');
      const auto key = part.substr(0, eq);
      const auto value = eq == std::string_view::npos ? std::string_view() : part.substr(eq + 1);
      params.emplace_back(uri_encode(uri_decode(key)), uri_encode(uri_decode(value)));
    }
    if (amp == std::string_view::npos) break;
    start = amp + 1;
  }
  std::sort(params.begin(), params.end());
  std::string out;
  for (const auto& [k, v] : params) {
    if (!out.empty()) out += '&';
    out.append(k).append("=").append(v);
  }
  return out;
}

std::pair<std::string, std::string> canonical_headers(
    const std::vector<std::pair<std::string, std::string>>& headers) {
  std::map<std::string, std::string> merged;  // sorted by lowercase name
  for (const auto& [name, value] : headers) {
    auto key = lower(name);
    if (never_signed(key)) continue;
    auto [it, fresh] = merged.try_emplace(std::move(key), squeeze(value));
    if (!fresh) it->second.append(",").append(squeeze(value));
  }
  std::string text;
  std::string names;
  for (const auto& [name, value] : merged) {
    text.append(name).append(":").append(value).append("\n");
    if (!names.empty()) names += ';';
    names += name;
  }
  return {std::move(text), std::move(names)};
}

std::string hex_sha256(std::string_view data) {
  const auto digest = sha256(data.data(), data.size());
  return to_hex(digest.data(), digest.size());
}

std::array<std::uint8_t, 32> hmac_sha256(std::string_view key, std::string_view data) {
  std::array<std::uint8_t, 32> out{};
  unsigned int len = 0;
  const auto* ok =
      HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
           reinterpret_cast<const unsigned char*>(data.data()), data.size(), out.data(), &len);
  if (!ok || len != out.size()) throw std::runtime_error("HMAC-SHA256 failed");
  return out;
}

std::array<std::uint8_t, 32> signing_key(std::string_view secret, std::string_view date,
                                         std::string_view region, std::string_view service) {
  auto as_view = [](const std::array<std::uint8_t, 32>& a) {
    return std::string_view(reinterpret_cast<const char*>(a.data()), a.size());
  };
  const std::string k_secret = "AWS4" + std::string(secret);
  const auto k_date = hmac_sha256(k_secret, date);
  const auto k_region = hmac_sha256(as_view(k_date), region);
  const auto k_service = hmac_sha256(as_view(k_region), service);
  return hmac_sha256(as_view(k_service), "aws4_request");
}

std::string amz_date(system_clock::time_point t) {
  const std::time_t tt = system_clock::to_time_t(std::chrono::floor<std::chrono::seconds>(t));
  std::tm tm{};
  gmtime_r(&tt, &tm);
  char buf[32];
  std::snprintf(buf, sizeof buf, "%04d%02d%02dT%02d%02d%02dZ", tm.tm_year + 1900, tm.tm_mon + 1,
                tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
  return buf;
}

std::optional<system_clock::time_point> parse_amz_date(std::string_view s) {
  if (s.size() != 16 || s[8] != 'T' || s[15] != 'Z') return std::nullopt;
  auto num = [&](std::size_t pos, std::size_t n) -> int {
    int v = 0;
    for (std::size_t i = pos; i < pos + n; ++i) {
      if (s[i] < '0' || s[i] > '9') return -1;
      v = v * 10 + (s[i] - '0');
    }
    return v;
  };
  std::tm tm{};
  tm.tm_year = num(0, 4) - 1900;
  tm.tm_mon = num(4, 2) - 1;
  tm.tm_mday = num(6, 2);
  tm.tm_hour = num(9, 2);
  tm.tm_min = num(11, 2);
  tm.tm_sec = num(13, 2);
  if (tm.tm_year < 70 || tm.tm_mon < 0 || tm.tm_mon > 11 || tm.tm_mday < 1 || tm.tm_mday > 31 ||
      tm.tm_hour < 0 || tm.tm_hour > 23 || tm.tm_min < 0 || tm.tm_min > 59 || tm.tm_sec < 0 ||
      tm.tm_sec > 60) {
    return std::nullopt;
  }
  return system_clock::from_time_t(timegm(&tm));
}

result<sigv4_signature> sign(sigv4_request& req, const credentials& creds, std::string_view region,
                             std::string_view service, system_clock::time_point now) {
  if (creds.access_key_id.empty() || creds.secret_access_key.empty())
    return fail(errc::internal, "SigV4 signing without an access key or secret");
  const bool has_host = std::any_of(req.headers.begin(), req.headers.end(),
                                    [](const auto& h) { return lower(h.first) == "host"; });
  if (!has_host) return fail(errc::internal, "SigV4 signing a request without a Host header");

  sigv4_signature sig;
  sig.amz_date = amz_date(now);
  const std::string date = sig.amz_date.substr(0, 8);
  sig.scope = date + "/" + std::string(region) + "/" + std::string(service) + "/aws4_request";

  set_header(req.headers, "X-Amz-Date", sig.amz_date);
  if (!creds.session_token.empty())
    set_header(req.headers, "X-Amz-Security-Token", creds.session_token);
  std::erase_if(req.headers, [](const auto& h) { return lower(h.first) == "authorization"; });

  auto [header_text, signed_names] = canonical_headers(req.headers);
  sig.signed_headers = std::move(signed_names);
  sig.canonical_request = req.method + "\n" + canonical_uri(req.path) + "\n" +
                          canonical_query(req.query) + "\n" + header_text + "\n" +
                          sig.signed_headers + "\n" + hex_sha256(req.body);
  sig.string_to_sign = "AWS4-HMAC-SHA256\n" + sig.amz_date + "\n" + sig.scope + "\n" +
                       hex_sha256(sig.canonical_request);
  const auto key = signing_key(creds.secret_access_key, date, region, service);
  const auto mac = hmac_sha256(std::string_view(reinterpret_cast<const char*>(key.data()), 32),
                               sig.string_to_sign);
  sig.signature = to_hex(mac.data(), mac.size());
  sig.authorization = "AWS4-HMAC-SHA256 Credential=" + creds.access_key_id + "/" + sig.scope +
                      ", SignedHeaders=" + sig.signed_headers + ", Signature=" + sig.signature;
  req.headers.emplace_back("Authorization", sig.authorization);
  return sig;
}

}  // namespace cloudbrain::providers::aws
