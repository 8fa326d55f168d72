#include "core/pg/error.hpp"

#include <libpq-fe.h>

namespace cloudbrain::pg {

errc errc_from_sqlstate(std::string_view s) noexcept {
  if (s.size() != 5) return errc::db_error;
  if (s == "23505") return errc::db_unique_violation;
  if (s == "23503") return errc::db_foreign_key_violation;
  if (s == "23514") return errc::db_check_violation;
  if (s == "40001") return errc::db_serialization_failure;
  if (s == "40P01") return errc::db_deadlock;
  if (s == "57014") return errc::db_query_canceled;
  // admin_shutdown, crash_shutdown, cannot_connect_now: the server is going away or not back yet.
  if (s == "57P01" || s == "57P02" || s == "57P03") return errc::db_unavailable;
  const std::string_view cls = s.substr(0, 2);
  if (cls == "08") return errc::db_connection_lost;
  if (cls == "42") return errc::db_syntax_or_access;
  if (cls == "22") return errc::db_data_exception;
  if (cls == "53") return errc::db_insufficient_resources;
  return errc::db_error;
}

std::string error_detail(std::string_view primary_message, std::string_view sqlstate) {
  std::string out(primary_message);
  while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
  if (!sqlstate.empty()) {
    out += " (SQLSTATE ";
    out += sqlstate;
    out += ')';
  }
  return out;
}

error error_from_result(const pg_result* r, errc without_sqlstate) {
  const char* state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
  const char* primary = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
  if (primary == nullptr) primary = PQresultErrorMessage(r);
  if (state == nullptr || *state == '\0') return {without_sqlstate, error_detail(primary, {})};
  return {errc_from_sqlstate(state), error_detail(primary, state)};
}

}  // namespace cloudbrain::pg
