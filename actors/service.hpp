#pragma once

#include "core/config.hpp"

#include <string>
#include <vector>

namespace cloudbrain {

// Everything the executable can do; each returns the process exit status.
// `routes` wires the service as `serve` does, prints the router it would serve (one route a
// line: METHOD PATTERN NAME) and exits without touching the database or the network; the tests
// compare that table with docs/openapi.yaml.
enum class serve_mode { serve, print_routes };
int run_serve(const std::vector<std::string>& args, serve_mode mode = serve_mode::serve);
int run_token_command(const std::vector<std::string>& args);
// `cloudbrain usage`: the usage report of GET /usage, read from the database, as a table.
int run_usage_command(const std::vector<std::string>& args);
// `cloudbrain audit`: the audit trail, newest first.
int run_audit_command(const std::vector<std::string>& args);

// Removes --database-url URL (or --database-url=URL) from `args` and returns it; else
// CLOUDBRAIN_DATABASE_URL or DATABASE_URL from the environment; else empty.
[[nodiscard]] std::string take_database_url(std::vector<std::string>& args);

// The name of the last schema change this binary needs (see schema/sqitch.plan).
inline constexpr const char* required_schema_change = "claim_indexes";

}  // namespace cloudbrain
