#include "core/pg/connect_params.hpp"

#include <gtest/gtest.h>

#include <array>

namespace cloudbrain::pg::detail {
namespace {

TEST(pg_connect_params, parses_urls_and_keyword_strings) {
  auto url =
      connect_params::parse("postgresql://app:s3cret@db.internal:6432/cloudbrain?sslmode=require");
  ASSERT_TRUE(url);
  EXPECT_EQ(url->get("host"), "db.internal");
  EXPECT_EQ(url->get("port"), "6432");
  EXPECT_EQ(url->get("user"), "app");
  EXPECT_EQ(url->get("password"), "s3cret");
  EXPECT_EQ(url->get("dbname"), "cloudbrain");
  EXPECT_EQ(url->get("sslmode"), "require");
  EXPECT_EQ(url->get("options"), std::nullopt);

  auto kv = connect_params::parse("host=/run/postgresql dbname=x");
  ASSERT_TRUE(kv);
  EXPECT_EQ(kv->get("host"), "/run/postgresql");
}

TEST(pg_connect_params, invalid_string_does_not_echo_it) {
  auto bad = connect_params::parse("host=x password=hunter2 bogus_keyword=1");
  ASSERT_FALSE(bad);
  EXPECT_TRUE(bad.error().is(errc::bad_config));
  EXPECT_EQ(bad.error().detail.find("hunter2"), std::string::npos);
  EXPECT_EQ(bad.error().detail.find("bogus"), std::string::npos);
  EXPECT_FALSE(connect_params::parse("postgresql://a:%zz@h/db"));
}

TEST(pg_connect_params, adds_application_name_and_server_options) {
  auto p = connect_params::parse("postgresql://h/db?options=-c%20search_path%3Dapp");
  ASSERT_TRUE(p);
  connect_options o;
  o.application_name = "cloudbrain";
  o.statement_timeout = std::chrono::milliseconds(30000);
  o.client_connection_check_interval = std::chrono::milliseconds(1500);
  p->apply(o);
  EXPECT_EQ(p->get("fallback_application_name"), "cloudbrain");
  EXPECT_EQ(p->get("application_name"), std::nullopt);  // the operator's choice would win
  EXPECT_EQ(
      p->get("options"),
      "-c search_path=app -c statement_timeout=30000 -c client_connection_check_interval=1500");
}

// The coordination session: the server ends it when idle too long, and both ends give up on a
// link that stops acknowledging; keepalives the connection string sets itself are kept.
TEST(pg_connect_params, session_timeouts_for_a_lock_holding_session) {
  auto p = connect_params::parse("postgresql://h/db?keepalives_idle=7");
  ASSERT_TRUE(p);
  connect_options o;
  o.statement_timeout = std::chrono::milliseconds(2000);
  o.client_connection_check_interval = std::chrono::milliseconds(0);
  o.idle_session_timeout = std::chrono::milliseconds(5000);
  o.tcp_user_timeout = std::chrono::milliseconds(3000);
  p->apply(o);
  EXPECT_EQ(p->get("options"),
            "-c statement_timeout=2000 -c idle_session_timeout=5000 -c tcp_user_timeout=3000");
  EXPECT_EQ(p->get("tcp_user_timeout"), "3000");
  EXPECT_EQ(p->get("keepalives"), "1");
  EXPECT_EQ(p->get("keepalives_idle"), "7");
  EXPECT_EQ(p->get("keepalives_interval"), "1");
  EXPECT_EQ(p->get("keepalives_count"), "2");
}

TEST(pg_connect_params, zero_leaves_server_defaults) {
  auto p = connect_params::parse("host=h");
  ASSERT_TRUE(p);
  connect_options o;
  o.application_name.clear();
  o.statement_timeout = std::chrono::milliseconds(0);
  o.client_connection_check_interval = std::chrono::milliseconds(0);
  p->apply(o);
  EXPECT_EQ(p->get("options"), std::nullopt);
  EXPECT_EQ(p->get("fallback_application_name"), std::nullopt);
  EXPECT_EQ(p->get("keepalives"), std::nullopt);
  EXPECT_EQ(p->get("tcp_user_timeout"), std::nullopt);
}

TEST(pg_connect_params, resolves_only_a_single_host_name) {
  const auto host = [](std::string_view conninfo) {
    auto p = connect_params::parse(conninfo);
    EXPECT_TRUE(p);
    return p->host_to_resolve();
  };
  EXPECT_EQ(host("host=db.internal"), "db.internal");
  EXPECT_EQ(host("postgresql://localhost/x"), "localhost");
  EXPECT_EQ(host("host=127.0.0.1"), std::nullopt);
  EXPECT_EQ(host("postgresql://[::1]/x"), std::nullopt);
  EXPECT_EQ(host("host=/var/run/postgresql"), std::nullopt);
  EXPECT_EQ(host("host=a,b"), std::nullopt);
  EXPECT_EQ(host("host=db hostaddr=10.0.0.1"), std::nullopt);
  EXPECT_EQ(host("dbname=x"), std::nullopt);  // the default socket

  auto p = connect_params::parse("dbname=x");
  ASSERT_TRUE(p);
  EXPECT_EQ(p->host_to_resolve("db.env"), "db.env");
  EXPECT_EQ(p->host_to_resolve("db.env", "10.0.0.2"), std::nullopt);
}

TEST(pg_connect_params, resolved_addresses_pair_with_the_host) {
  auto p = connect_params::parse("host=db.internal port=5432");
  ASSERT_TRUE(p);
  const std::array<std::string, 2> addresses{"10.0.0.1", "fd00::1"};
  p->set_resolved("db.internal", addresses);
  EXPECT_EQ(p->get("host"), "db.internal,db.internal");
  EXPECT_EQ(p->get("hostaddr"), "10.0.0.1,fd00::1");
  EXPECT_EQ(p->get("port"), "5432");
}

TEST(pg_connect_params, arrays_are_null_terminated_and_aligned) {
  auto p = connect_params::parse("host=h dbname=d");
  ASSERT_TRUE(p);
  const auto k = p->keywords();
  const auto v = p->values();
  ASSERT_EQ(k.size(), v.size());
  EXPECT_EQ(k.back(), nullptr);
  EXPECT_EQ(v.back(), nullptr);
  for (std::size_t i = 0; i + 1 < k.size(); ++i) {
    EXPECT_EQ(p->get(k[i]), std::string_view(v[i]));
  }
}

}  // namespace
}  // namespace cloudbrain::pg::detail
