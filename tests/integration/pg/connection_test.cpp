// pg::connection against a real server (CLOUDBRAIN_TEST_DATABASE_URL).
#include "core/pg/connection.hpp"
#include "core/pg/connect_params.hpp"
#include "tests/integration/pg/support.hpp"

#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>

#include <array>

namespace cloudbrain::pg::test {
namespace {

namespace asio = boost::asio;
using asio::awaitable;

class pg_connection : public ::testing::Test {
 protected:
  void SetUp() override {
    CLOUDBRAIN_REQUIRE_DATABASE_URL(url);
    url_ = url;
    conn_ = connect_or_fail(io_, url_, unique_name("cb_conn_test"));
    ASSERT_NE(conn_, nullptr);
  }

  result<rows> query(std::string_view sql, std::span<const param> params = {},
                     std::chrono::milliseconds timeout = 10s) {
    return io_.run([&] { return conn_->query(sql, params, in(timeout)); });
  }

  io_runner io_;
  std::string url_;
  std::unique_ptr<connection> conn_;
};

TEST_F(pg_connection, query_with_params_and_nulls) {
  const std::array<param, 4> params{to_param(41), std::nullopt, to_param("héllo, 'world'"),
                                    to_param(true)};
  auto r =
      query("SELECT $1::int8 + 1 AS n, $2::text AS missing, $3::text AS s, $4::bool AS b", params);
  ASSERT_TRUE(r) << r.error().message();
  ASSERT_EQ(r->size(), 1u);
  EXPECT_EQ(r->get_int64(0, "n"), 42);
  EXPECT_TRUE(r->is_null(0, r->column("missing")));
  EXPECT_EQ(r->get_opt_text(0, "missing"), std::nullopt);
  EXPECT_EQ(r->get_text(0, "s"), "héllo, 'world'");
  EXPECT_TRUE(r->get_bool(0, "b"));
}

TEST_F(pg_connection, reports_affected_rows) {
  ASSERT_TRUE(query("CREATE TEMP TABLE t (id int PRIMARY KEY, name text)"));
  const std::array<param, 1> ids{to_param(text_array(std::array<std::string, 3>{"1", "2", "3"}))};
  auto inserted = query("INSERT INTO t SELECT unnest($1::int[]), NULL", ids);
  ASSERT_TRUE(inserted) << inserted.error().message();
  EXPECT_EQ(inserted->affected(), 3);
  auto updated = query("UPDATE t SET name = 'x' WHERE id > 1");
  ASSERT_TRUE(updated);
  EXPECT_EQ(updated->affected(), 2);
  auto selected = query("SELECT id, name FROM t ORDER BY id");
  ASSERT_TRUE(selected);
  ASSERT_EQ(selected->size(), 3u);
  EXPECT_TRUE(selected->is_null(0, 1));
  EXPECT_EQ(selected->text(2, 1), "x");
}

TEST_F(pg_connection, prepared_statement_is_prepared_once_and_reused) {
  const statement add{"cb_add", "SELECT $1::int + $2::int AS sum"};
  EXPECT_FALSE(conn_->is_prepared("cb_add"));
  for (int i = 0; i < 3; ++i) {
    const std::array<param, 2> params{to_param(i), to_param(10)};
    auto r = io_.run([&] { return conn_->execute(add, params, in(10s)); });
    ASSERT_TRUE(r) << r.error().message();
    EXPECT_EQ(r->get_int64(0, "sum"), i + 10);
    EXPECT_TRUE(conn_->is_prepared("cb_add"));
  }
  auto listed = query("SELECT count(*) AS n FROM pg_prepared_statements WHERE name = 'cb_add'");
  ASSERT_TRUE(listed);
  EXPECT_EQ(listed->get_int64(0, "n"), 1);
}

// Behind PgBouncer in transaction mode a session's prepared statements are not the next
// transaction's: with prepared_statements off, nothing is prepared and statements still run,
// in a pipeline too.
TEST_F(pg_connection, prepared_statements_can_be_turned_off) {
  connect_options options;
  options.application_name = unique_name("cb_unprepared");
  options.prepared_statements = false;
  auto opened =
      io_.run([&] { return connection::connect(io_.executor(), url_, in(10s), options); });
  ASSERT_TRUE(opened) << opened.error().message();
  auto& c = **opened;
  const statement add{"cb_add_unprepared", "SELECT $1::int + $2::int AS sum"};
  for (int i = 0; i < 3; ++i) {
    const std::array<param, 2> params{to_param(i), to_param(10)};
    auto r = io_.run([&] { return c.execute(add, params, in(10s)); });
    ASSERT_TRUE(r) << r.error().message();
    EXPECT_EQ(r->get_int64(0, "sum"), i + 10);
    const std::array<batch_item, 2> items{batch_item(add, params), batch_item(add, params)};
    auto both = io_.run([&] { return c.pipeline(items, in(10s)); });
    ASSERT_TRUE(both) << both.error().message();
    ASSERT_EQ(both->size(), 2u);
    EXPECT_EQ((*both)[1].get_int64(0, "sum"), i + 10);
  }
  EXPECT_FALSE(c.is_prepared("cb_add_unprepared"));
  auto listed = io_.run(
      [&] { return c.query("SELECT count(*) AS n FROM pg_prepared_statements", {}, in(10s)); });
  ASSERT_TRUE(listed) << listed.error().message();
  EXPECT_EQ(listed->get_int64(0, "n"), 0);
}

TEST_F(pg_connection, statement_with_bad_sql_is_not_remembered) {
  const statement bad{"cb_bad", "SELEC 1"};
  auto r = io_.run([&] { return conn_->execute(bad, {}, in(10s)); });
  ASSERT_FALSE(r);
  EXPECT_TRUE(r.error().is(errc::db_syntax_or_access)) << r.error().message();
  EXPECT_FALSE(conn_->is_prepared("cb_bad"));
  EXPECT_TRUE(conn_->healthy());
  EXPECT_TRUE(query("SELECT 1"));
}

TEST_F(pg_connection, pipeline_runs_several_statements_in_one_transaction) {
  ASSERT_TRUE(query("CREATE TEMP TABLE p (id int PRIMARY KEY)"));
  const statement insert{"cb_insert_p", "INSERT INTO p VALUES ($1::int) RETURNING id"};
  const std::array<param, 1> one{to_param(1)};
  const std::array<param, 1> two{to_param(2)};
  const std::array<batch_item, 4> items{batch_item(insert, one), batch_item(insert, two),
                                        batch_item("SELECT count(*) AS n FROM p"),
                                        batch_item("SELECT $1::text AS s", one)};
  auto r = io_.run([&] { return conn_->pipeline(items, in(10s)); });
  ASSERT_TRUE(r) << r.error().message();
  ASSERT_EQ(r->size(), 4u);
  EXPECT_EQ((*r)[0].get_int64(0, "id"), 1);
  EXPECT_EQ((*r)[1].get_int64(0, "id"), 2);
  EXPECT_EQ((*r)[2].get_int64(0, "n"), 2);
  EXPECT_EQ((*r)[3].get_text(0, "s"), "1");
  EXPECT_TRUE(conn_->is_prepared("cb_insert_p"));  // prepared in the same round trip

  // One failing statement rolls back the ones before it and skips the ones after.
  const std::array<param, 1> three{to_param(3)};
  const std::array<batch_item, 3> failing{batch_item(insert, three), batch_item(insert, one),
                                          batch_item("INSERT INTO p VALUES (4)")};
  auto f = io_.run([&] { return conn_->pipeline(failing, in(10s)); });
  ASSERT_FALSE(f);
  EXPECT_TRUE(f.error().is(errc::db_unique_violation)) << f.error().message();
  auto count = query("SELECT count(*) AS n FROM p");
  ASSERT_TRUE(count) << count.error().message();
  EXPECT_EQ(count->get_int64(0, "n"), 2);
  auto empty = io_.run([&] { return conn_->pipeline({}, in(10s)); });
  ASSERT_TRUE(empty);
  EXPECT_TRUE(empty->empty());
}

TEST_F(pg_connection, server_errors_map_to_errc_and_keep_the_connection) {
  ASSERT_TRUE(query("CREATE TEMP TABLE u (id int PRIMARY KEY, n int CHECK (n > 0))"));
  ASSERT_TRUE(query("INSERT INTO u VALUES (1, 1)"));
  auto dup = query("INSERT INTO u VALUES (1, 1)");
  ASSERT_FALSE(dup);
  EXPECT_TRUE(dup.error().is(errc::db_unique_violation)) << dup.error().message();
  EXPECT_NE(dup.error().detail.find("SQLSTATE 23505"), std::string::npos) << dup.error().detail;
  EXPECT_NE(dup.error().detail.find("u_pkey"), std::string::npos) << dup.error().detail;
  EXPECT_EQ(dup.error().detail.find(url_), std::string::npos);

  auto check = query("INSERT INTO u VALUES (2, -1)");
  ASSERT_FALSE(check);
  EXPECT_TRUE(check.error().is(errc::db_check_violation)) << check.error().message();
  auto syntax = query("SELEC 1");
  ASSERT_FALSE(syntax);
  EXPECT_TRUE(syntax.error().is(errc::db_syntax_or_access)) << syntax.error().message();
  auto data = query("SELECT 1 / 0");
  ASSERT_FALSE(data);
  EXPECT_TRUE(data.error().is(errc::db_data_exception)) << data.error().message();

  EXPECT_TRUE(conn_->healthy());
  EXPECT_TRUE(query("SELECT 1"));
}

TEST_F(pg_connection, deadline_closes_the_connection) {
  const auto start = std::chrono::steady_clock::now();
  auto r = query("SELECT pg_sleep(5)", {}, 200ms);
  const auto took = std::chrono::steady_clock::now() - start;
  ASSERT_FALSE(r);
  EXPECT_TRUE(r.error().is(errc::timeout)) << r.error().message();
  EXPECT_GE(took, 190ms);
  EXPECT_LT(took, 2s);
  EXPECT_FALSE(conn_->healthy());
  auto after = query("SELECT 1");
  ASSERT_FALSE(after);
  EXPECT_TRUE(after.error().is(errc::db_connection_lost)) << after.error().message();
}

TEST_F(pg_connection, deadline_already_passed_sends_nothing) {
  auto r = query("SELECT 1", {}, -1ms);
  ASSERT_FALSE(r);
  EXPECT_TRUE(r.error().is(errc::timeout));
  EXPECT_TRUE(conn_->healthy());
  EXPECT_TRUE(query("SELECT 1"));
}

TEST_F(pg_connection, server_side_statement_timeout_is_set) {
  auto r = query(
      "SELECT current_setting('statement_timeout') AS st, "
      "current_setting('application_name') AS app");
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(r->get_text(0, "st"), "1min");
  EXPECT_EQ(r->get_text(0, "app").rfind("cb_conn_test", 0), 0u);
}

TEST_F(pg_connection, listen_and_notify) {
  const std::string channel = unique_name("Cb Channel");  // needs quoting as an identifier
  auto listened = io_.run([&] { return conn_->listen(channel, in(10s)); });
  ASSERT_TRUE(listened) << listened.error().message();
  EXPECT_TRUE(conn_->listening());

  // Nothing sent yet: the wait times out, and the connection stays usable.
  auto none = io_.run([&] { return conn_->wait_notification(in(100ms)); });
  ASSERT_FALSE(none);
  EXPECT_TRUE(none.error().is(errc::timeout));
  EXPECT_TRUE(conn_->healthy());

  auto sender = connect_or_fail(io_, url_, "cb_conn_test_sender");
  ASSERT_NE(sender, nullptr);
  std::future<void> sent;
  auto got = io_.run([&]() -> awaitable<result<notification>> {
    // Wait first, then notify from another connection on the same io_context.
    sent = asio::co_spawn(
        io_.executor(),
        [&]() -> awaitable<void> {
          const std::array<param, 2> params{to_param(channel), to_param("payload 1")};
          auto r = co_await sender->query("SELECT pg_notify($1, $2)", params, in(10s));
          EXPECT_TRUE(r) << r.error().message();
        },
        asio::use_future);
    co_return co_await conn_->wait_notification(in(10s));
  });
  sent.get();  // the listener may hear before the sender has its answer
  ASSERT_TRUE(got) << got.error().message();
  EXPECT_EQ(got->channel, channel);
  EXPECT_EQ(got->payload, "payload 1");

  // Notifications that arrive during a query are kept for the next wait.
  const std::array<param, 2> params{to_param(channel), to_param("payload 2")};
  ASSERT_TRUE(io_.run([&] { return sender->query("SELECT pg_notify($1, $2)", params, in(10s)); }));
  ASSERT_TRUE(query("SELECT pg_sleep(0.1)"));
  auto kept = io_.run([&] { return conn_->wait_notification(in(10s)); });
  ASSERT_TRUE(kept) << kept.error().message();
  EXPECT_EQ(kept->payload, "payload 2");
}

TEST_F(pg_connection, host_name_is_resolved_without_blocking) {
  // The same server through "localhost", which resolves to ::1 and 127.0.0.1: libpq gets the
  // addresses as hostaddr and tries them in turn.
  auto params = detail::connect_params::parse(url_);
  ASSERT_TRUE(params);
  std::string conninfo = "host=localhost";
  for (const char* key : {"port", "user", "dbname", "password"}) {
    if (auto v = params->get(key))
      conninfo += std::string(" ") + key + "='" + std::string(*v) + "'";
  }
  auto c = connect_or_fail(io_, conninfo, "cb_conn_test_localhost");
  ASSERT_NE(c, nullptr);
  auto r = io_.run([&] { return c->query("SELECT 1 AS one", {}, in(10s)); });
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(r->get_int64(0, "one"), 1);
}

TEST_F(pg_connection, refused_connect_is_unavailable) {
  const auto start = std::chrono::steady_clock::now();
  auto c = io_.run([&] {
    return connection::connect(io_.executor(), "postgresql://nobody:s3cret@127.0.0.1:1/x", in(5s));
  });
  ASSERT_FALSE(c);
  EXPECT_TRUE(c.error().is(errc::db_unavailable)) << c.error().message();
  EXPECT_EQ(c.error().detail.find("s3cret"), std::string::npos);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 2s);
}

TEST_F(pg_connection, server_that_never_answers_times_out) {
  // A listening socket nobody accepts on: the kernel completes the handshake, then silence.
  asio::io_context local;
  asio::ip::tcp::acceptor silent(local, {asio::ip::make_address("127.0.0.1"), 0});
  const auto port = silent.local_endpoint().port();
  const auto start = std::chrono::steady_clock::now();
  auto c = io_.run([&] {
    return connection::connect(
        io_.executor(), "postgresql://u@127.0.0.1:" + std::to_string(port) + "/x", in(300ms));
  });
  const auto took = std::chrono::steady_clock::now() - start;
  ASSERT_FALSE(c);
  EXPECT_TRUE(c.error().is(errc::timeout)) << c.error().message();
  EXPECT_GE(took, 290ms);
  EXPECT_LT(took, 2s);
}

TEST_F(pg_connection, bad_credentials_are_unavailable_without_the_password) {
  auto params = detail::connect_params::parse(url_);
  ASSERT_TRUE(params);
  const std::string conninfo =
      "host=127.0.0.1 port=" + std::string(params->get("port").value_or("5432")) +
      " user=postgres password=s3cret dbname=no_such_database_cb";
  auto c = io_.run([&] { return connection::connect(io_.executor(), conninfo, in(5s)); });
  ASSERT_FALSE(c);
  EXPECT_TRUE(c.error().is(errc::db_unavailable)) << c.error().message();
  EXPECT_NE(c.error().detail.find("no_such_database_cb"), std::string::npos) << c.error().detail;
  EXPECT_EQ(c.error().detail.find("s3cret"), std::string::npos);
}

TEST_F(pg_connection, two_operations_at_once_is_a_bug) {
  auto outcome = io_.run([&]() -> awaitable<bool> {
    asio::co_spawn(
        io_.executor(),
        [&]() -> awaitable<void> {
          (void)co_await conn_->query("SELECT pg_sleep(0.3)", {}, in(5s));
        },
        asio::detached);
    asio::steady_timer t(io_.executor(), 50ms);
    co_await t.async_wait(asio::use_awaitable);
    try {
      (void)co_await conn_->query("SELECT 1", {}, in(5s));
    } catch (const std::logic_error&) {
      co_return true;
    }
    co_return false;
  });
  EXPECT_TRUE(outcome);
  std::this_thread::sleep_for(500ms);  // let the first finish
  EXPECT_TRUE(query("SELECT 1"));
}

}  // namespace
}  // namespace cloudbrain::pg::test
