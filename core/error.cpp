#include "core/error.hpp"

#include <stdexcept>

namespace cloudbrain {
namespace {

class category_impl final : public boost::system::error_category {
 public:
  const char* name() const noexcept override { return "cloudbrain"; }

  std::string message(int ev) const override {
    switch (static_cast<errc>(ev)) {
      case errc::ok: return "success";
      case errc::invalid_argument: return "invalid argument";
      case errc::not_found: return "not found";
      case errc::conflict: return "conflict";
      case errc::unauthorized: return "unauthorized";
      case errc::precondition_failed: return "precondition failed";
      case errc::overloaded: return "overloaded";
      case errc::shutting_down: return "shutting down";
      case errc::timeout: return "deadline exceeded";
      case errc::cancelled: return "cancelled";
      case errc::db_unavailable: return "database unavailable";
      case errc::db_connection_lost: return "database connection lost";
      case errc::db_unique_violation: return "unique violation";
      case errc::db_foreign_key_violation: return "foreign key violation";
      case errc::db_check_violation: return "check violation";
      case errc::db_serialization_failure: return "serialization failure";
      case errc::db_deadlock: return "deadlock detected";
      case errc::db_query_canceled: return "query canceled";
      case errc::db_syntax_or_access: return "syntax error or access rule violation";
      case errc::db_data_exception: return "data exception";
      case errc::db_insufficient_resources: return "database out of resources";
      case errc::db_schema_outdated: return "database schema outdated";
      case errc::db_error: return "database error";
      case errc::cloud_capacity: return "cloud capacity exhausted";
      case errc::cloud_quota: return "cloud quota exceeded";
      case errc::cloud_rate_limited: return "cloud rate limited";
      case errc::cloud_transient: return "cloud transient failure";
      case errc::cloud_permanent: return "cloud refused the request";
      case errc::cloud_not_found: return "not found at the cloud";
      case errc::cloud_already_exists: return "already exists at the cloud";
      case errc::cloud_auth: return "cloud authentication failed";
      case errc::cloud_unavailable: return "cloud unavailable";
      case errc::bad_config: return "bad configuration";
      case errc::internal: return "internal error";
    }
    return "unknown error";
  }
};

}  // namespace

const boost::system::error_category& error_category() noexcept {
  static const category_impl instance;
  return instance;
}

std::string error::message() const {
  if (detail.empty()) return code.message();
  return code.message() + ": " + detail;
}

void throw_exception_from_error(const error& e, const boost::source_location& /*loc*/) {
  throw std::runtime_error(e.message());
}

}  // namespace cloudbrain
