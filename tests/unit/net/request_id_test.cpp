#include "net/request_id.hpp"

#include <gtest/gtest.h>

#include <set>

namespace cloudbrain::net {
namespace {

TEST(request_id, sane_ids_are_kept) {
  EXPECT_TRUE(is_sane_request_id("a"));
  EXPECT_TRUE(is_sane_request_id("abc-DEF_123.4:5"));
  EXPECT_TRUE(is_sane_request_id(std::string(128, 'x')));
}

TEST(request_id, insane_ids_are_refused) {
  EXPECT_FALSE(is_sane_request_id(""));
  EXPECT_FALSE(is_sane_request_id(std::string(129, 'x')));
  for (const char* id : {"a b", "a\nb", "a\r\nX-Evil: 1", "a\tb", "<script>", "a/b", "a\"b",
                         "\xc3\xa9t\xc3\xa9", "a,b", "a;b"}) {
    EXPECT_FALSE(is_sane_request_id(id)) << id;
  }
  EXPECT_FALSE(is_sane_request_id(std::string_view("a\0b", 3)));
}

TEST(request_id, generated_ids_are_32_lowercase_hex_and_unique) {
  request_id_generator a;
  request_id_generator b;
  std::set<std::string> seen;
  for (int i = 0; i < 10000; ++i) {
    for (auto* g : {&a, &b}) {
      const std::string id = g->next();
      ASSERT_EQ(id.size(), 32u);
      ASSERT_EQ(id.find_first_not_of("0123456789abcdef"), std::string::npos) << id;
      ASSERT_TRUE(is_sane_request_id(id));
      ASSERT_TRUE(seen.insert(id).second) << "duplicate " << id;
    }
  }
}

TEST(request_id, a_seed_gives_a_reproducible_sequence) {
  request_id_generator a(42);
  request_id_generator b(42);
  request_id_generator c(43);
  const std::string first = a.next();
  EXPECT_EQ(first, b.next());
  EXPECT_NE(first, c.next());
}

}  // namespace
}  // namespace cloudbrain::net
