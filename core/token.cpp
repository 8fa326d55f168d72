#include "core/token.hpp"

#include "core/uuid.hpp"

#include <libscrypt.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <charconv>
#include <stdexcept>

namespace cloudbrain {

result<token_parts> parse_token(std::string_view text) {
  const auto dash = text.rfind('-');
  if (dash == std::string_view::npos || dash == 0) {
    return fail(errc::unauthorized, "token must look like <id>-<32 hex digits>");
  }
  const auto id_text = text.substr(0, dash);
  const auto hex = text.substr(dash + 1);
  token_parts parts;
  const auto [end, ec] = std::from_chars(id_text.data(), id_text.data() + id_text.size(), parts.id);
  // from_chars takes a minus sign, and "-0" would parse as 0: the id must be all digits.
  if (ec != std::errc{} || end != id_text.data() + id_text.size() || id_text.front() == '-' ||
      parts.id < 0) {
    return fail(errc::unauthorized, "token id must be a non-negative number");
  }
  if (hex.size() != 32) return fail(errc::unauthorized, "token secret must be 32 hex digits");
  for (char c : hex) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
      return fail(errc::unauthorized, "token secret must be 32 lowercase hex digits");
    }
  }
  const auto raw = from_hex(hex);
  std::copy(raw->begin(), raw->end(), parts.secret.begin());
  return parts;
}

std::string_view to_string(token_role r) {
  switch (r) {
    case token_role::admin: return "admin";
    case token_role::client: return "client";
    case token_role::driver: return "driver";
  }
  return "client";
}

std::optional<token_role> parse_token_role(std::string_view text) {
  for (const auto r : {token_role::admin, token_role::client, token_role::driver}) {
    if (to_string(r) == text) return r;
  }
  return std::nullopt;
}

std::string_view to_string(token_scope s) { return s == token_scope::all ? "all" : "own"; }

std::optional<token_scope> parse_token_scope(std::string_view text) {
  if (text == "own") return token_scope::own;
  if (text == "all") return token_scope::all;
  return std::nullopt;
}

std::string format_token(std::int64_t id, const token_secret& secret) {
  return std::to_string(id) + "-" + to_hex(secret.data(), secret.size());
}

token_secret generate_token_secret() {
  token_secret s;
  secure_random(s.data(), s.size());
  return s;
}

token_salt generate_token_salt() {
  token_salt s;
  secure_random(s.data(), s.size());
  return s;
}

token_hash hash_token_secret(const token_secret& secret, const std::uint8_t* salt,
                             std::size_t salt_len) {
  token_hash out{};
  if (libscrypt_scrypt(secret.data(), secret.size(), salt, salt_len, 16384, 8, 1, out.data(),
                       out.size()) != 0) {
    throw std::runtime_error("scrypt failed");
  }
  return out;
}

bool constant_time_equal(const std::uint8_t* a, const std::uint8_t* b, std::size_t n) {
  return CRYPTO_memcmp(a, b, n) == 0;
}

std::array<std::uint8_t, 32> sha256(const void* data, std::size_t n) {
  // Fetched once: EVP_sha256() alone makes every digest look its implementation up again
  // (under the provider store's lock), and this runs for every request's token.
  static EVP_MD* const md = EVP_MD_fetch(nullptr, "SHA256", nullptr);
  std::array<std::uint8_t, 32> out{};
  unsigned int len = 0;
  if (md == nullptr || EVP_Digest(data, n, out.data(), &len, md, nullptr) != 1 ||
      len != out.size()) {
    throw std::runtime_error("sha256 failed");
  }
  return out;
}

}  // namespace cloudbrain
