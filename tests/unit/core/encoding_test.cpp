#include "core/encoding.hpp"

#include <gtest/gtest.h>

#include <random>
#include <string>

namespace cloudbrain {
namespace {

TEST(base64, rfc4648_vectors) {
  const std::pair<const char*, const char*> vectors[] = {
      {"", ""},
      {"f", "Zg=="},
      {"fo", "Zm8="},
      {"foo", "Zm9v"},
      {"foob", "Zm9vYg=="},
      {"fooba", "Zm9vYmE="},
      {"foobar", "Zm9vYmFy"},
  };
  for (const auto& [plain, coded] : vectors) {
    EXPECT_EQ(base64_encode(plain), coded) << plain;
    EXPECT_EQ(base64_decode(coded).value(), plain) << coded;
  }
}

TEST(base64, url_alphabet_without_padding) {
  const std::string data("\xfb\xff\xbf", 3);
  EXPECT_EQ(base64_encode(data), "+/+/");
  EXPECT_EQ(base64_encode(data, true), "-_-_");
  EXPECT_EQ(base64_decode("-_-_", true).value(), data);
  EXPECT_EQ(base64_encode("f", true), "Zg");
  EXPECT_EQ(base64_encode("fo", true), "Zm8");
  EXPECT_EQ(base64_decode("Zg", true).value(), "f");
  EXPECT_EQ(base64_decode("Zm8", true).value(), "fo");
  EXPECT_FALSE(base64_decode("+/+/", true));
  EXPECT_FALSE(base64_decode("-_-_"));
}

TEST(base64, rejects_malformed) {
  for (const char* bad :
       {"Zg", "Zg=", "Z===", "====", "Zg=a", "Zm9v!", "Zm 9v", "Zh==", "Zm9=", "Z"}) {
    EXPECT_FALSE(base64_decode(bad)) << bad;
  }
  EXPECT_FALSE(base64_decode("Z", true));
  EXPECT_FALSE(base64_decode("Zh", true));  // non-canonical trailing bits
}

TEST(base64, round_trips_random_bytes) {
  std::mt19937 rng(5);
  for (int len = 0; len < 100; ++len) {
    std::string data(static_cast<std::size_t>(len), '\0');
    for (auto& c : data) c = static_cast<char>(rng());
    for (const bool url : {false, true}) {
      const auto coded = base64_encode(data, url);
      const auto back = base64_decode(coded, url);
      ASSERT_TRUE(back) << coded;
      EXPECT_EQ(*back, data);
    }
  }
}

}  // namespace
}  // namespace cloudbrain
