#include "net/problem.hpp"

#include <boost/json/array.hpp>
#include <boost/json/object.hpp>
#include <boost/json/serialize.hpp>

namespace cloudbrain::net {
namespace {

constexpr std::string_view problem_base = "https://cloudbrain.dev/problems/";

// How one errc becomes a response. A 5xx only ever shows `generic_detail`.
struct error_mapping {
  http::status status;
  std::string_view code;
  std::string_view title;
  std::string_view generic_detail;  // empty: show the error's own detail
  std::string_view retry_after;     // empty: no Retry-After header
};

constexpr error_mapping database_unavailable{
    http::status::service_unavailable, "database_unavailable", "Database unavailable",
    "The database is not available at the moment; try again later.", "2"};

constexpr error_mapping internal_error{http::status::internal_server_error, "internal_error",
                                       "Internal server error",
                                       "The server failed to handle the request.", ""};

error_mapping mapping_for(const cloudbrain::error& e) {
  if (e.code.category() != cloudbrain::error_category()) return internal_error;
  switch (static_cast<errc>(e.code.value())) {
    case errc::invalid_argument:
      return {http::status::unprocessable_entity, "invalid_request", "Invalid request", "", ""};
    case errc::not_found: return {http::status::not_found, "not_found", "Not found", "", ""};
    case errc::conflict: return {http::status::conflict, "conflict", "Conflict", "", ""};
    case errc::unauthorized:
      return {http::status::unauthorized, "invalid_token", "Unauthorized", "", ""};
    case errc::precondition_failed:
      return {http::status::precondition_failed, "precondition_failed", "Precondition failed", "",
              ""};
    case errc::overloaded:
      return {http::status::service_unavailable, "overloaded", "Service overloaded",
              "The server is overloaded; try again later.", "1"};
    case errc::shutting_down:
      return {http::status::service_unavailable, "shutting_down", "Shutting down",
              "The server is shutting down; try another one.", ""};
    case errc::timeout:
      return {http::status::service_unavailable, "timeout", "Deadline exceeded",
              "The request could not be completed in time; try again later.", "1"};
    case errc::cancelled:
      return {http::status::service_unavailable, "cancelled", "Request cancelled",
              "The request was cancelled before it completed; try again later.", "1"};
    // A database refusal caused by the request itself. The detail is generic all the same:
    // PostgreSQL's text names constraints and values, and handlers that know better translate
    // these into domain errors first.
    case errc::db_unique_violation:
      return {http::status::conflict, "conflict", "Conflict",
              "The request conflicts with an existing resource.", ""};
    case errc::db_check_violation:
      return {http::status::unprocessable_entity, "invalid_request", "Invalid request",
              "A value in the request is out of range.", ""};
    case errc::db_foreign_key_violation:
      return {http::status::unprocessable_entity, "invalid_request", "Invalid request",
              "The request refers to a resource that does not exist.", ""};
    case errc::db_data_exception:
      return {http::status::unprocessable_entity, "invalid_request", "Invalid request",
              "A value in the request is not valid.", ""};
    // A bug in a query: retrying cannot help, so no 503.
    case errc::db_syntax_or_access: return internal_error;
    case errc::db_unavailable:
    case errc::db_connection_lost:
    case errc::db_serialization_failure:
    case errc::db_deadlock:
    case errc::db_query_canceled:
    case errc::db_insufficient_resources:
    case errc::db_schema_outdated:
    case errc::db_error: return database_unavailable;
    case errc::cloud_capacity:
      return {http::status::service_unavailable, "cloud_capacity", "No capacity at the cloud",
              "The cloud has no capacity for this request at the moment.", "30"};
    case errc::cloud_quota:
      return {http::status::service_unavailable, "cloud_quota", "Cloud quota exceeded",
              "The cloud account's quota is exhausted.", ""};
    case errc::cloud_rate_limited:
      return {http::status::service_unavailable, "cloud_rate_limited", "Cloud rate limited",
              "The cloud is rate limiting requests; try again later.", "1"};
    case errc::cloud_transient:
    case errc::cloud_permanent:
    case errc::cloud_auth:
      return {http::status::bad_gateway, "cloud_error", "Cloud provider error",
              "The cloud provider failed the request.", ""};
    case errc::cloud_unavailable:
      return {http::status::service_unavailable, "cloud_unavailable", "Cloud unavailable",
              "Nothing can reach the cloud at the moment.", "5"};
    case errc::cloud_not_found: return {http::status::not_found, "not_found", "Not found", "", ""};
    case errc::cloud_already_exists:
      return {http::status::conflict, "conflict", "Conflict", "", ""};
    case errc::ok:
    case errc::bad_config:
    case errc::internal: return internal_error;
  }
  return internal_error;
}

}  // namespace

response problem(http::status status, std::string_view code, std::string_view title,
                 std::string_view detail, const std::vector<std::string>& errors) {
  boost::json::array error_list;
  if (errors.empty()) {
    error_list.emplace_back(detail);
  } else {
    error_list.reserve(errors.size());
    for (const auto& e : errors) error_list.emplace_back(e);
  }
  std::string type(problem_base);
  type += code;
  const boost::json::object body{
      {"type", type},     {"title", title}, {"status", static_cast<unsigned>(status)},
      {"detail", detail}, {"code", code},   {"errors", std::move(error_list)},
  };
  return text_response(status, "application/problem+json", boost::json::serialize(body));
}

response json_response(http::status status, const boost::json::value& body) {
  return text_response(status, "application/json", boost::json::serialize(body));
}

response text_response(http::status status, std::string_view content_type, std::string body) {
  response res{status, 11};
  res.set(http::field::content_type, content_type);
  res.body() = std::move(body);
  res.prepare_payload();
  return res;
}

response problem_from_error(const cloudbrain::error& e, std::string_view code) {
  const error_mapping m = mapping_for(e);
  const std::string_view detail = !m.generic_detail.empty() ? m.generic_detail
                                  : !e.detail.empty()       ? std::string_view(e.detail)
                                                            : m.title;
  response res = problem(m.status, code.empty() ? m.code : code, m.title, detail);
  if (m.status == http::status::unauthorized) {
    res.set(http::field::www_authenticate, R"(Basic realm="cloudbrain")");
  }
  if (!m.retry_after.empty()) res.set(http::field::retry_after, m.retry_after);
  return res;
}

}  // namespace cloudbrain::net
