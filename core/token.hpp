#pragma once

#include "core/error.hpp"

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace cloudbrain {

// API tokens look like "<id>-<32 lowercase hex>": a row id and 16 random bytes. Only a salt and
// scrypt(raw bytes, salt, N=16384, r=8, p=1, 32) are stored — Cloud Brain's parameters, so its
// token rows keep working.
using token_secret = std::array<std::uint8_t, 16>;
using token_salt = std::array<std::uint8_t, 32>;
using token_hash = std::array<std::uint8_t, 32>;

struct token_parts {
  std::int64_t id = 0;
  token_secret secret{};
};

// What a token may do (tokens.role): `client` the HTTP API, `driver` only connect an out-of-tree
// driver at /drivers/connect; `admin` the HTTP API, everything in it, and the administration
// resources (/tokens, /audit).
enum class token_role { admin, client, driver };

[[nodiscard]] std::string_view to_string(token_role r);
// "admin", "client" or "driver"; nothing for anything else.
[[nodiscard]] std::optional<token_role> parse_token_role(std::string_view text);

// What a client token sees (tokens.scope): `own` the instances, reservations and reservation
// sets it created, `all` every one. An admin token sees everything whatever its scope.
enum class token_scope { own, all };

[[nodiscard]] std::string_view to_string(token_scope s);
// "own" or "all"; nothing for anything else.
[[nodiscard]] std::optional<token_scope> parse_token_scope(std::string_view text);

// A token the authenticator has checked: its row id, its role and its scope.
struct verified_token {
  std::int64_t id = 0;
  token_role role = token_role::client;
  token_scope scope = token_scope::own;

  // The creator a request of this token is confined to, for a `created_by = $n` condition;
  // nothing when it sees everything.
  [[nodiscard]] std::optional<std::int64_t> owner() const {
    if (role == token_role::admin || scope == token_scope::all) return std::nullopt;
    return id;
  }
};

// Parses a presented token. The error detail never repeats the token.
[[nodiscard]] result<token_parts> parse_token(std::string_view text);
[[nodiscard]] std::string format_token(std::int64_t id, const token_secret& secret);

[[nodiscard]] token_secret generate_token_secret();
[[nodiscard]] token_salt generate_token_salt();

// scrypt with the parameters above. Slow on purpose (tens of milliseconds): call it on the
// blocking pool, never on the event loop.
[[nodiscard]] token_hash hash_token_secret(const token_secret& secret, const std::uint8_t* salt,
                                           std::size_t salt_len);

// Equality in time that depends only on the length.
[[nodiscard]] bool constant_time_equal(const std::uint8_t* a, const std::uint8_t* b, std::size_t n);

// SHA-256, for remembering verified tokens without keeping them.
[[nodiscard]] std::array<std::uint8_t, 32> sha256(const void* data, std::size_t n);

}  // namespace cloudbrain
