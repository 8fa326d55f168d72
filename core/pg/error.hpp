#pragma once

#include "core/error.hpp"

#include <string>
#include <string_view>

struct pg_result;  // libpq's PGresult

namespace cloudbrain::pg {

// The project's error code for a server error, by SQLSTATE (its class where one code stands for
// the class). Codes this does not know are db_error.
[[nodiscard]] errc errc_from_sqlstate(std::string_view sqlstate) noexcept;

// "<primary message> (SQLSTATE <code>)": what error::detail says about a server error. Neither
// part ever holds the connection string.
[[nodiscard]] std::string error_detail(std::string_view primary_message, std::string_view sqlstate);

// The error a PGRES_FATAL_ERROR result stands for. An error libpq made up itself (it has no
// SQLSTATE: the connection broke, say) becomes `without_sqlstate`.
[[nodiscard]] error error_from_result(const pg_result* r, errc without_sqlstate);

}  // namespace cloudbrain::pg
