#include "core/token.hpp"

#include "core/uuid.hpp"

#include <gtest/gtest.h>

#include <cstring>
#include <set>
#include <string>
#include <vector>

namespace cloudbrain {
namespace {

constexpr const char* secret_hex = "b180349faf82840b43ebf27e730f894f";

token_secret secret_from_hex(std::string_view hex) {
  const auto raw = from_hex(hex).value();
  token_secret s{};
  std::memcpy(s.data(), raw.data(), s.size());
  return s;
}

TEST(parse_token, accepts_the_documented_shape) {
  const auto t = parse_token(std::string("1-") + secret_hex);
  ASSERT_TRUE(t) << t.error().message();
  EXPECT_EQ(t->id, 1);
  EXPECT_EQ(t->secret, secret_from_hex(secret_hex));
  EXPECT_EQ(t->secret[0], 0xb1);
  EXPECT_EQ(t->secret[15], 0x4f);
}

TEST(parse_token, accepts_zero_and_large_ids) {
  EXPECT_EQ(parse_token(std::string("0-") + secret_hex).value().id, 0);
  EXPECT_EQ(parse_token(std::string("123456-") + secret_hex).value().id, 123456);
  EXPECT_EQ(parse_token(std::string("9223372036854775807-") + secret_hex).value().id, INT64_MAX);
}

TEST(parse_token, rejects_malformed_tokens) {
  const std::string s = secret_hex;
  const std::vector<std::string> bad = {
      "",
      "-",
      s,                                                       // no id, no dash
      "1" + s,                                                 // missing dash
      "-" + s,                                                 // empty id
      "abc-" + s,                                              // non-numeric id
      "1a-" + s,                                               // id with junk
      "0x1-" + s,                                              // hex id
      " 1-" + s,                                               // leading space
      "1 -" + s,                                               // space before dash
      "+1-" + s,                                               // plus sign
      "-1-" + s,                                               // negative id
      "-0-" + s,                                               // negative zero
      "9223372036854775808-" + s,                              // id beyond int64
      "1-" + std::string("B180349FAF82840B43EBF27E730F894F"),  // uppercase hex
      "1-" + std::string("b180349faf82840b43ebf27e730f894F"),  // one uppercase digit
      "1-" + s.substr(1),                                      // 31 hex digits
      "1-" + s + "0",                                          // 33 hex digits
      "1-" + s + s,                                            // 64 hex digits
      "1-",                                                    // no secret
      "1-" + s.substr(0, 31) + "g",                            // non-hex
      "1-" + s.substr(0, 31) + " ",                            // trailing space inside
      "1-" + s + " ",                                          // trailing space
      "1-" + s.substr(0, 16) + "-" + s.substr(17),             // extra dash
      "1--" + s,                                               // double dash
  };
  for (const auto& text : bad) {
    const auto r = parse_token(text);
    ASSERT_FALSE(r) << "'" << text << "'";
    EXPECT_TRUE(r.error().is(errc::unauthorized)) << text;
  }
}

TEST(parse_token, error_detail_never_contains_the_secret) {
  // Secrets that are wrong in different ways; none of them, nor any 8-character piece of them,
  // may appear in what a client or a log line gets to see.
  const std::vector<std::string> secrets = {
      "B180349FAF82840B43EBF27E730F894F",   "b180349faf82840b43ebf27e730f894",
      "b180349faf82840b43ebf27e730f894f00", "b180349faf82840b43ebf27e730f894z",
      "supersecretpasswordnottokenshape",
  };
  for (const auto& secret : secrets) {
    for (const std::string prefix : {"1-", "x-", "-1-", ""}) {
      const std::string text = prefix + secret;
      const auto r = parse_token(text);
      ASSERT_FALSE(r) << text;
      const std::string shown = r.error().detail + " " + r.error().message();
      for (std::size_t i = 0; i + 8 <= secret.size(); ++i) {
        EXPECT_EQ(shown.find(secret.substr(i, 8)), std::string::npos)
            << "detail '" << shown << "' leaks part of '" << secret << "'";
      }
    }
  }
  // A valid secret with a bad id must not leak either.
  const auto r = parse_token(std::string("id-") + secret_hex);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().detail.find(std::string(secret_hex).substr(0, 8)), std::string::npos);
}

TEST(format_token, round_trips) {
  EXPECT_EQ(format_token(1, secret_from_hex(secret_hex)), std::string("1-") + secret_hex);
  EXPECT_EQ(format_token(0, token_secret{}), "0-00000000000000000000000000000000");
  for (std::int64_t id : {std::int64_t{0}, std::int64_t{1}, std::int64_t{42},
                          std::int64_t{9'000'000'000}, INT64_MAX}) {
    for (int i = 0; i < 50; ++i) {
      const auto secret = generate_token_secret();
      const std::string text = format_token(id, secret);
      const auto back = parse_token(text);
      ASSERT_TRUE(back) << text;
      EXPECT_EQ(back->id, id);
      EXPECT_EQ(back->secret, secret);
    }
  }
}

TEST(generate_token, secrets_and_salts_are_random) {
  std::set<token_secret> secrets;
  std::set<token_salt> salts;
  for (int i = 0; i < 200; ++i) {
    EXPECT_TRUE(secrets.insert(generate_token_secret()).second);
    EXPECT_TRUE(salts.insert(generate_token_salt()).second);
  }
}

// Expected hashes computed independently with Python's hashlib (OpenSSL's scrypt):
//   hashlib.scrypt(password=bytes.fromhex("b180349faf82840b43ebf27e730f894f"),
//                  salt=bytes.fromhex(SALT), n=16384, r=8, p=1, dklen=32).hex()
// and cross-checked with
//   openssl kdf -keylen 32 -kdfopt hexpass:b180... -kdfopt hexsalt:SALT -kdfopt n:16384
//               -kdfopt r:8 -kdfopt p:1 SCRYPT
TEST(hash_token_secret, matches_known_scrypt_vectors) {
  const auto secret = secret_from_hex(secret_hex);
  {
    const auto salt = from_hex("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f");
    const auto h = hash_token_secret(secret, reinterpret_cast<const std::uint8_t*>(salt->data()),
                                     salt->size());
    EXPECT_EQ(to_hex(h.data(), h.size()),
              "e8469272481e7bb3bb7cc592271193450b5e365b960fd304c896e27060bad341");
  }
  {
    const auto salt = from_hex("8f3a1c5e7b2d9046f1e3a5c7b9d0e2f41a2b3c4d5e6f708192a3b4c5d6e7f809");
    const auto h = hash_token_secret(secret, reinterpret_cast<const std::uint8_t*>(salt->data()),
                                     salt->size());
    EXPECT_EQ(to_hex(h.data(), h.size()),
              "70832a1b5113feba69002d542dc4bff80dbf7d1f82ff1110eeb58c297de327ce");
  }
}

TEST(hash_token_secret, depends_on_secret_and_salt) {
  const auto secret = secret_from_hex(secret_hex);
  token_salt salt{};
  const auto a = hash_token_secret(secret, salt.data(), salt.size());
  const auto again = hash_token_secret(secret, salt.data(), salt.size());
  EXPECT_EQ(a, again);
  salt[31] ^= 1;
  const auto other_salt = hash_token_secret(secret, salt.data(), salt.size());
  EXPECT_NE(a, other_salt);
  auto secret2 = secret;
  secret2[0] ^= 1;
  salt[31] ^= 1;
  EXPECT_NE(a, hash_token_secret(secret2, salt.data(), salt.size()));
}

TEST(constant_time_equal, compares_every_byte) {
  std::array<std::uint8_t, 32> a{}, b{};
  for (int i = 0; i < 32; ++i) a[i] = b[i] = static_cast<std::uint8_t>(i * 7);
  EXPECT_TRUE(constant_time_equal(a.data(), b.data(), a.size()));
  for (std::size_t i : {std::size_t{0}, std::size_t{15}, std::size_t{31}}) {
    auto c = b;
    c[i] ^= 0x80;
    EXPECT_FALSE(constant_time_equal(a.data(), c.data(), a.size())) << i;
    // Only the first n bytes count.
    EXPECT_TRUE(constant_time_equal(a.data(), c.data(), i)) << i;
  }
  EXPECT_TRUE(constant_time_equal(a.data(), b.data(), 0));
}

TEST(sha256, known_vectors) {
  // FIPS 180-2 examples.
  const auto abc = sha256("abc", 3);
  EXPECT_EQ(to_hex(abc.data(), abc.size()),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  const auto empty = sha256("", 0);
  EXPECT_EQ(to_hex(empty.data(), empty.size()),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  const std::string two_blocks = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
  const auto tb = sha256(two_blocks.data(), two_blocks.size());
  EXPECT_EQ(to_hex(tb.data(), tb.size()),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}

TEST(token_role, names_round_trip_and_nothing_else_parses) {
  for (const auto r : {token_role::admin, token_role::client, token_role::driver}) {
    const auto parsed = parse_token_role(to_string(r));
    ASSERT_TRUE(parsed.has_value());
    EXPECT_EQ(*parsed, r);
  }
  EXPECT_EQ(to_string(token_role::driver), "driver");
  for (const auto* bad : {"", "Driver", "root", "client ", "drivers"}) {
    EXPECT_FALSE(parse_token_role(bad).has_value()) << bad;
  }
}

}  // namespace
}  // namespace cloudbrain
