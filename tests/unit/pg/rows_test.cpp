// rows over results built by hand with libpq's own constructors: no server involved.
#include "core/pg/result.hpp"

#include <gtest/gtest.h>
#include <libpq-fe.h>

#include <array>
#include <cstring>
#include <stdexcept>

namespace cloudbrain::pg {
namespace {

// Two columns (id int8, name text), rows given as optional text values.
rows make_rows(std::initializer_list<std::array<const char*, 3>> data) {
  PGresult* r = PQmakeEmptyPGresult(nullptr, PGRES_TUPLES_OK);
  std::array<PGresAttDesc, 3> columns{};
  columns[0].name = const_cast<char*>("id");
  columns[0].typid = 20;
  columns[1].name = const_cast<char*>("name");
  columns[1].typid = 25;
  columns[2].name = const_cast<char*>("active");
  columns[2].typid = 16;
  for (auto& c : columns) c.typlen = -1;
  EXPECT_TRUE(PQsetResultAttrs(r, 3, columns.data()));
  int row = 0;
  for (const auto& values : data) {
    for (int col = 0; col < 3; ++col) {
      const char* v = values[static_cast<std::size_t>(col)];
      EXPECT_TRUE(PQsetvalue(r, row, col, const_cast<char*>(v),
                             v == nullptr ? -1 : static_cast<int>(std::strlen(v))));
    }
    ++row;
  }
  return rows(r);
}

TEST(pg_rows, default_is_empty) {
  const rows r;
  EXPECT_EQ(r.size(), 0u);
  EXPECT_EQ(r.columns(), 0);
  EXPECT_EQ(r.affected(), 0);
  EXPECT_TRUE(r.empty());
}

TEST(pg_rows, reads_values_and_nulls) {
  const rows r = make_rows({{"1", "alpha", "t"}, {"2", nullptr, "f"}});
  ASSERT_EQ(r.size(), 2u);
  ASSERT_EQ(r.columns(), 3);
  EXPECT_EQ(r.column("name"), 1);
  EXPECT_EQ(r.column_name(0), "id");
  EXPECT_EQ(r.text(0, 1), "alpha");
  EXPECT_FALSE(r.is_null(0, 1));
  EXPECT_TRUE(r.is_null(1, 1));
  EXPECT_EQ(r.text(1, 1), "");
  EXPECT_EQ(r.opt_text(1, 1), std::nullopt);
  EXPECT_EQ(r.opt_text(0, 1), "alpha");
  EXPECT_EQ(r.get_int64(1, "id"), 2);
  EXPECT_EQ(r.get_text(0, "name"), "alpha");
  EXPECT_EQ(r.get_opt_text(1, "name"), std::nullopt);
  EXPECT_TRUE(r.get_bool(0, "active"));
  EXPECT_FALSE(r.get_bool(1, "active"));
  EXPECT_EQ(r.get_opt_int64(0, "id"), 1);
}

TEST(pg_rows, misuse_is_a_bug_and_throws) {
  const rows r = make_rows({{"x", nullptr, "maybe"}});
  EXPECT_THROW((void)r.column("nope"), std::out_of_range);
  EXPECT_THROW((void)r.column("ID"), std::out_of_range);  // exact names, no case folding
  EXPECT_THROW((void)r.text(1, 0), std::out_of_range);
  EXPECT_THROW((void)r.text(0, 3), std::out_of_range);
  EXPECT_THROW((void)r.is_null(-1, 0), std::out_of_range);
  EXPECT_THROW((void)r.get_int64(0, "id"), std::invalid_argument);     // not a number
  EXPECT_THROW((void)r.get_text(0, "name"), std::invalid_argument);    // NULL
  EXPECT_THROW((void)r.get_bool(0, "active"), std::invalid_argument);  // not a boolean
}

TEST(pg_rows, moves_ownership) {
  rows a = make_rows({{"1", "a", "t"}});
  rows b = std::move(a);
  EXPECT_EQ(a.native(), nullptr);  // NOLINT(bugprone-use-after-move,clang-analyzer-cplusplus.Move)
  EXPECT_EQ(b.size(), 1u);
  a = std::move(b);
  EXPECT_EQ(a.size(), 1u);
}

TEST(pg_rows, command_status_without_rows) {
  const rows r(PQmakeEmptyPGresult(nullptr, PGRES_COMMAND_OK));
  EXPECT_EQ(r.size(), 0u);
  EXPECT_EQ(r.affected(), 0);
}

}  // namespace
}  // namespace cloudbrain::pg
