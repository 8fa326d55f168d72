#include "net/problem.hpp"

#include <boost/json/parse.hpp>

#include <gtest/gtest.h>

namespace cloudbrain::net {
namespace {

namespace json = boost::json;

json::object body_of(const response& res) { return json::parse(res.body()).as_object(); }

TEST(problem, has_the_rfc9457_and_cloud_brain_shape) {
  const response res =
      problem(http::status::not_found, "instance_not_found", "Not found", "no such instance");
  EXPECT_EQ(res.result(), http::status::not_found);
  EXPECT_EQ(res[http::field::content_type], "application/problem+json");
  EXPECT_EQ(res[http::field::content_length], std::to_string(res.body().size()));
  const json::object body = body_of(res);
  EXPECT_EQ(body.size(), 6u);
  EXPECT_EQ(body.at("type"), "https://cloudbrain.dev/problems/instance_not_found");
  EXPECT_EQ(body.at("title"), "Not found");
  EXPECT_EQ(body.at("status"), 404);
  EXPECT_EQ(body.at("detail"), "no such instance");
  EXPECT_EQ(body.at("code"), "instance_not_found");
  EXPECT_EQ(body.at("errors"), (json::array{"no such instance"}));
}

TEST(problem, keeps_explicit_errors) {
  const response res =
      problem(http::status::unprocessable_entity, "invalid_request", "Invalid request",
              "2 fields are invalid", {"image is required", "unknown field \"foo\""});
  EXPECT_EQ(body_of(res).at("errors"), (json::array{"image is required", "unknown field \"foo\""}));
}

TEST(problem, escapes_what_it_is_given) {
  const response res = problem(http::status::bad_request, "bad_request", "Bad \"request\"",
                               "line\nbreak and \\ backslash");
  const json::object body = body_of(res);
  EXPECT_EQ(body.at("title"), "Bad \"request\"");
  EXPECT_EQ(body.at("detail"), "line\nbreak and \\ backslash");
}

TEST(json_response, serializes_with_content_type) {
  const response res = json_response(http::status::created, json::object{{"id", "x"}});
  EXPECT_EQ(res.result(), http::status::created);
  EXPECT_EQ(res[http::field::content_type], "application/json");
  EXPECT_EQ(res.body(), R"({"id":"x"})");
  EXPECT_EQ(res[http::field::content_length], "10");
}

struct mapping_case {
  errc code;
  unsigned status;
  std::string_view problem_code;
  std::string_view retry_after;
};

class problem_from_error_test : public ::testing::TestWithParam<mapping_case> {};

TEST_P(problem_from_error_test, maps_status_code_and_headers) {
  const auto& c = GetParam();
  const response res = problem_from_error(error(c.code, "detail from the domain"));
  EXPECT_EQ(res.result_int(), c.status);
  EXPECT_EQ(res[http::field::content_type], "application/problem+json");
  const json::object body = body_of(res);
  EXPECT_EQ(std::string_view(body.at("code").as_string()), c.problem_code);
  EXPECT_EQ(body.at("status"), c.status);
  EXPECT_EQ(res[http::field::retry_after], c.retry_after);
  EXPECT_EQ(res.count(http::field::www_authenticate), c.status == 401 ? 1u : 0u);
}

INSTANTIATE_TEST_SUITE_P(
    errc, problem_from_error_test,
    ::testing::Values(mapping_case{errc::invalid_argument, 422, "invalid_request", ""},
                      mapping_case{errc::not_found, 404, "not_found", ""},
                      mapping_case{errc::conflict, 409, "conflict", ""},
                      mapping_case{errc::unauthorized, 401, "invalid_token", ""},
                      mapping_case{errc::precondition_failed, 412, "precondition_failed", ""},
                      mapping_case{errc::overloaded, 503, "overloaded", "1"},
                      mapping_case{errc::shutting_down, 503, "shutting_down", ""},
                      mapping_case{errc::timeout, 503, "timeout", "1"},
                      mapping_case{errc::db_unavailable, 503, "database_unavailable", "2"},
                      mapping_case{errc::db_connection_lost, 503, "database_unavailable", "2"},
                      mapping_case{errc::db_deadlock, 503, "database_unavailable", "2"},
                      mapping_case{errc::db_schema_outdated, 503, "database_unavailable", "2"},
                      mapping_case{errc::db_unique_violation, 409, "conflict", ""},
                      mapping_case{errc::db_check_violation, 422, "invalid_request", ""},
                      mapping_case{errc::db_syntax_or_access, 500, "internal_error", ""},
                      mapping_case{errc::internal, 500, "internal_error", ""},
                      mapping_case{errc::ok, 500, "internal_error", ""}));

TEST(problem_from_error, client_errors_show_their_detail) {
  const response res = problem_from_error(error(errc::invalid_argument, "image is required"));
  const json::object body = body_of(res);
  EXPECT_EQ(body.at("detail"), "image is required");
  EXPECT_EQ(body.at("errors"), (json::array{"image is required"}));
}

TEST(problem_from_error, unauthorized_asks_for_basic_auth) {
  const response res = problem_from_error(error(errc::unauthorized, "invalid token"));
  EXPECT_EQ(res[http::field::www_authenticate], R"(Basic realm="cloudbrain")");
}

TEST(problem_from_error, server_errors_hide_internal_text) {
  const std::string secret = "host=db.internal user=cloudbrain password=hunter2";
  for (const errc code :
       {errc::db_unavailable, errc::db_error, errc::internal, errc::timeout,
        errc::db_unique_violation, errc::cloud_auth, errc::bad_config, errc::cloud_unavailable}) {
    const response res = problem_from_error(error(code, secret));
    EXPECT_EQ(res.body().find("hunter2"), std::string::npos) << res.body();
    EXPECT_EQ(res.body().find("db.internal"), std::string::npos) << res.body();
    EXPECT_FALSE(body_of(res).at("detail").as_string().empty());
  }
}

TEST(problem_from_error, foreign_categories_are_internal_errors) {
  const response res = problem_from_error(
      error(boost::system::errc::make_error_code(boost::system::errc::io_error)));
  EXPECT_EQ(res.result(), http::status::internal_server_error);
}

TEST(problem_from_error, code_can_be_made_specific) {
  const response res =
      problem_from_error(error(errc::not_found, "no such instance"), "instance_not_found");
  const json::object body = body_of(res);
  EXPECT_EQ(body.at("code"), "instance_not_found");
  EXPECT_EQ(body.at("type"), "https://cloudbrain.dev/problems/instance_not_found");
  EXPECT_EQ(body.at("detail"), "no such instance");
}

TEST(problem_from_error, an_empty_detail_falls_back_to_the_title) {
  const response res = problem_from_error(error(errc::conflict));
  EXPECT_EQ(body_of(res).at("detail"), "Conflict");
}

}  // namespace
}  // namespace cloudbrain::net
