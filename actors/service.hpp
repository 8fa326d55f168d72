#pragma once

#include "core/config.hpp"

#include <string>
#include <vector>

namespace cloudbrain {

// Everything the executable can do; each returns the process exit status.
int run_serve(const std::vector<std::string>& args);
int run_token_command(const std::vector<std::string>& args);

// The name of the last schema change this binary needs (see schema/sqitch.plan).
inline constexpr const char* required_schema_change = "reservation_idempotency";

}  // namespace cloudbrain
