#include "providers/aws/credentials.hpp"

#include <boost/json/parse.hpp>

#include <algorithm>

namespace cloudbrain::providers::aws {
namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t' || s.front() == '\r'))
    s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r'))
    s.remove_suffix(1);
  return s;
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

bool printable(std::string_view s) {
  return std::all_of(s.begin(), s.end(),
                     [](char c) { return static_cast<unsigned char>(c) > 0x20 && c != 0x7f; });
}

}  // namespace

result<credentials> parse_shared_credentials(std::string_view text, std::string_view profile,
                                             std::string_view path) {
  const std::string where = "the credentials file '" + std::string(path) + "'";
  bool in_profile = false;
  bool seen_profile = false;
  std::string* last_value = nullptr;  // a continuation line extends it
  std::string key_id;
  std::string secret;
  std::string token;
  std::string ignored;
  std::size_t line_no = 0;
  for (std::size_t start = 0; start <= text.size();) {
    const auto nl = text.find('\n', start);
    const auto raw =
        text.substr(start, nl == std::string_view::npos ? text.size() - start : nl - start);
    start = nl == std::string_view::npos ? text.size() + 1 : nl + 1;
    ++line_no;
    const auto line = trim(raw);
    if (line.empty() || line.front() == '#' || line.front() == ';') continue;
    if (line.front() == '[') {
      if (line.back() != ']') {
        return fail(errc::cloud_auth,
                    where + " has a malformed section header on line " + std::to_string(line_no));
      }
      const auto name = trim(line.substr(1, line.size() - 2));
      in_profile = name == profile;
      seen_profile = seen_profile || in_profile;
      last_value = nullptr;
      continue;
    }
    if ((raw.front() == ' ' || raw.front() == '\t') && last_value) {
      // An indented line continues the value before it (nested settings of other tools).
      last_value->append("\n").append(line);
      continue;
    }
    const auto sep = line.find_first_of("=:");
    if (sep == std::string_view::npos) {
      return fail(errc::cloud_auth, where + " has a line that is no 'key = value' (line " +
                                        std::to_string(line_no) + ")");
    }
    if (!in_profile) {
      last_value = nullptr;
      continue;
    }
    const auto key = lower(trim(line.substr(0, sep)));
    const auto value = std::string(trim(line.substr(sep + 1)));
    if (key == "aws_access_key_id") {
      key_id = value;
      last_value = &key_id;
    } else if (key == "aws_secret_access_key") {
      secret = value;
      last_value = &secret;
    } else if (key == "aws_session_token") {
      token = value;
      last_value = &token;
    } else {
      ignored = value;
      last_value = &ignored;
    }
  }
  if (!seen_profile)
    return fail(errc::cloud_auth, where + " has no profile [" + std::string(profile) + "]");
  const std::string in = where + ", profile [" + std::string(profile) + "],";
  if (key_id.empty()) return fail(errc::cloud_auth, in + " has no aws_access_key_id");
  if (secret.empty()) return fail(errc::cloud_auth, in + " has no aws_secret_access_key");
  if (!printable(key_id) || !printable(secret) || !printable(token)) {
    return fail(errc::cloud_auth, in + " has a key, secret or token with spaces or control "
                                       "characters in it");
  }
  credentials c;
  c.access_key_id = std::move(key_id);
  c.secret_access_key = std::move(secret);
  c.session_token = std::move(token);
  c.source = "shared credentials file " + std::string(path) + " [" + std::string(profile) + "]";
  return c;
}

result<std::optional<credentials>> credentials_from_environment(const environment_lookup& env) {
  auto get = [&](const char* name) {
    auto v = env(name);
    return v ? std::string(trim(*v)) : std::string();
  };
  credentials c;
  c.access_key_id = get("AWS_ACCESS_KEY_ID");
  c.secret_access_key = get("AWS_SECRET_ACCESS_KEY");
  c.session_token = get("AWS_SESSION_TOKEN");
  if (c.access_key_id.empty() && c.secret_access_key.empty()) return std::optional<credentials>{};
  if (c.access_key_id.empty())
    return fail(errc::cloud_auth, "AWS_SECRET_ACCESS_KEY is set but AWS_ACCESS_KEY_ID is not");
  if (c.secret_access_key.empty())
    return fail(errc::cloud_auth, "AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not");
  if (!printable(c.access_key_id) || !printable(c.secret_access_key) ||
      !printable(c.session_token)) {
    return fail(errc::cloud_auth,
                "AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY or AWS_SESSION_TOKEN has spaces or "
                "control characters in it");
  }
  c.source = "environment";
  return std::optional<credentials>(std::move(c));
}

std::string first_role(std::string_view body) {
  const auto line = trim(body.substr(0, body.find('\n')));
  return std::string(line);
}

result<credentials> parse_imds_credentials(std::string_view body) {
  boost::system::error_code ec;
  auto v = boost::json::parse(body, ec);
  if (ec || !v.is_object())
    return fail(errc::cloud_transient, "IMDS answered credentials that are not a JSON object");
  const auto& o = v.get_object();
  auto str = [&](std::string_view key) -> std::string {
    const auto* f = o.if_contains(key);
    return f && f->is_string() ? std::string(f->get_string()) : std::string();
  };
  const auto code = str("Code");
  if (code != "Success") {
    return fail(errc::cloud_auth, "IMDS has no credentials for the instance's role (Code " +
                                      (code.empty() ? std::string("missing") : code) + ")");
  }
  credentials c;
  c.access_key_id = str("AccessKeyId");
  c.secret_access_key = str("SecretAccessKey");
  c.session_token = str("Token");
  if (c.access_key_id.empty() || c.secret_access_key.empty()) {
    return fail(errc::cloud_transient,
                "IMDS answered credentials without AccessKeyId or SecretAccessKey");
  }
  if (!printable(c.access_key_id) || !printable(c.secret_access_key) ||
      !printable(c.session_token)) {
    return fail(errc::cloud_transient, "IMDS answered credentials with unprintable characters");
  }
  if (const auto exp = str("Expiration"); !exp.empty()) {
    auto t = parse_rfc3339(exp);
    if (!t) return fail(errc::cloud_transient, "IMDS answered a bad Expiration '" + exp + "'");
    c.expires_at = *t;
  }
  c.source = "IMDSv2";
  return c;
}

}  // namespace cloudbrain::providers::aws
