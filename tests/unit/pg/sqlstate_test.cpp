#include "core/pg/error.hpp"

#include <gtest/gtest.h>

namespace cloudbrain::pg {
namespace {

TEST(pg_sqlstate, maps_the_codes_the_service_acts_on) {
  EXPECT_EQ(errc_from_sqlstate("23505"), errc::db_unique_violation);
  EXPECT_EQ(errc_from_sqlstate("23503"), errc::db_foreign_key_violation);
  EXPECT_EQ(errc_from_sqlstate("23514"), errc::db_check_violation);
  EXPECT_EQ(errc_from_sqlstate("40001"), errc::db_serialization_failure);
  EXPECT_EQ(errc_from_sqlstate("40P01"), errc::db_deadlock);
  EXPECT_EQ(errc_from_sqlstate("57014"), errc::db_query_canceled);
}

TEST(pg_sqlstate, server_going_away_is_unavailable) {
  EXPECT_EQ(errc_from_sqlstate("57P01"), errc::db_unavailable);  // admin_shutdown
  EXPECT_EQ(errc_from_sqlstate("57P02"), errc::db_unavailable);  // crash_shutdown
  EXPECT_EQ(errc_from_sqlstate("57P03"), errc::db_unavailable);  // cannot_connect_now
  EXPECT_EQ(errc_from_sqlstate("57P04"), errc::db_error);        // database_dropped
  EXPECT_EQ(errc_from_sqlstate("57000"), errc::db_error);
}

TEST(pg_sqlstate, maps_whole_classes) {
  EXPECT_EQ(errc_from_sqlstate("08000"), errc::db_connection_lost);
  EXPECT_EQ(errc_from_sqlstate("08006"), errc::db_connection_lost);
  EXPECT_EQ(errc_from_sqlstate("08P01"), errc::db_connection_lost);
  EXPECT_EQ(errc_from_sqlstate("42601"), errc::db_syntax_or_access);  // syntax_error
  EXPECT_EQ(errc_from_sqlstate("42P01"), errc::db_syntax_or_access);  // undefined_table
  EXPECT_EQ(errc_from_sqlstate("42501"), errc::db_syntax_or_access);  // insufficient_privilege
  EXPECT_EQ(errc_from_sqlstate("22001"), errc::db_data_exception);  // string_data_right_truncation
  EXPECT_EQ(errc_from_sqlstate("22P02"), errc::db_data_exception);  // invalid_text_representation
  EXPECT_EQ(errc_from_sqlstate("53300"), errc::db_insufficient_resources);  // too_many_connections
  EXPECT_EQ(errc_from_sqlstate("53100"), errc::db_insufficient_resources);  // disk_full
}

TEST(pg_sqlstate, other_codes_of_a_mapped_class_are_generic) {
  EXPECT_EQ(errc_from_sqlstate("23502"), errc::db_error);  // not_null_violation
  EXPECT_EQ(errc_from_sqlstate("40000"), errc::db_error);
  EXPECT_EQ(errc_from_sqlstate("40P02"), errc::db_error);
}

TEST(pg_sqlstate, anything_else_is_db_error) {
  EXPECT_EQ(errc_from_sqlstate("XX000"), errc::db_error);
  EXPECT_EQ(errc_from_sqlstate("P0001"), errc::db_error);  // raise_exception
  EXPECT_EQ(errc_from_sqlstate(""), errc::db_error);
  EXPECT_EQ(errc_from_sqlstate("08"), errc::db_error);
  EXPECT_EQ(errc_from_sqlstate("235050"), errc::db_error);
}

TEST(pg_sqlstate, detail_carries_message_and_code) {
  EXPECT_EQ(error_detail("duplicate key value violates unique constraint \"t_pkey\"\n", "23505"),
            "duplicate key value violates unique constraint \"t_pkey\" (SQLSTATE 23505)");
  EXPECT_EQ(error_detail("server closed the connection unexpectedly\n", ""),
            "server closed the connection unexpectedly");
}

}  // namespace
}  // namespace cloudbrain::pg
