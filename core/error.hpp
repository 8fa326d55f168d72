#pragma once

#include <boost/assert/source_location.hpp>
#include <boost/system/error_code.hpp>
#include <boost/system/result.hpp>

#include <chrono>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>

namespace cloudbrain {

// The project's error conditions. Expected I/O outcomes travel as error_code; domain outcomes
// as result<T>, whose error carries one of these codes and a human-readable detail.
enum class errc {
  ok = 0,
  // request and domain
  invalid_argument = 1,
  not_found,
  conflict,
  unauthorized,
  precondition_failed,
  // capacity of this process
  overloaded,
  shutting_down,
  timeout,
  cancelled,
  // database
  db_unavailable,
  db_connection_lost,
  db_unique_violation,
  db_foreign_key_violation,
  db_check_violation,
  db_serialization_failure,
  db_deadlock,
  db_query_canceled,
  db_syntax_or_access,
  db_data_exception,
  db_insufficient_resources,
  db_schema_outdated,
  db_error,
  // cloud providers, sorted into the kinds the scheduler acts on
  cloud_capacity,
  cloud_quota,
  cloud_rate_limited,
  cloud_transient,
  cloud_permanent,
  cloud_not_found,
  cloud_already_exists,
  cloud_auth,
  cloud_unavailable,  // nothing can reach the cloud now (its out-of-tree driver is away)
  // configuration
  bad_config,
  internal,
};

}  // namespace cloudbrain

namespace boost::system {
template <>
struct is_error_code_enum<cloudbrain::errc> : std::true_type {};
}  // namespace boost::system

namespace cloudbrain {

[[nodiscard]] const boost::system::error_category& error_category() noexcept;

[[nodiscard]] inline boost::system::error_code make_error_code(errc e) noexcept {
  return {static_cast<int>(e), error_category()};
}

// A domain error: a code to act on and a detail to show. The detail is what a user or operator
// reads; it must never contain a secret.
struct error {
  boost::system::error_code code;
  std::string detail;
  // How long the other side asked us to wait before trying again (Retry-After); zero: no hint.
  std::chrono::milliseconds retry_after{0};

  error() = default;
  error(boost::system::error_code c, std::string d = {}) : code(c), detail(std::move(d)) {}
  error(errc c, std::string d = {}) : code(make_error_code(c)), detail(std::move(d)) {}

  [[nodiscard]] bool is(errc c) const noexcept { return code == make_error_code(c); }
  [[nodiscard]] std::string message() const;
};

[[noreturn]] void throw_exception_from_error(const error& e, const boost::source_location& loc);

template <class T>
using result = boost::system::result<T, error>;

// Shorthand for returning a failure: `return fail(errc::not_found, "no such instance");`
[[nodiscard]] inline error fail(errc c, std::string detail = {}) { return {c, std::move(detail)}; }

}  // namespace cloudbrain
