// pg::pool against a real server (CLOUDBRAIN_TEST_DATABASE_URL).
#include "core/pg/pool.hpp"
#include "tests/integration/pg/support.hpp"

#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <array>
#include <atomic>

namespace cloudbrain::pg::test {
namespace {

namespace asio = boost::asio;
using asio::awaitable;

class pg_pool : public ::testing::Test {
 protected:
  void SetUp() override {
    CLOUDBRAIN_REQUIRE_DATABASE_URL(url);
    url_ = url;
    app_ = unique_name("cb_pool_test");
    observer_ = connect_or_fail(io_, url_, "cb_pool_observer");
    ASSERT_NE(observer_, nullptr);
  }

  pool_config config(std::size_t max_connections) const {
    pool_config c;
    c.conninfo = url_;
    c.max_connections = max_connections;
    c.application_name = app_;
    return c;
  }

  // `sql` lives here until the query is done (the pool takes a view).
  result<rows> run_sql(pool& p, std::string sql) {
    return io_.run([&] { return p.query(sql); });
  }

  // Server-side view: sessions of this test's pool.
  std::int64_t sessions() {
    const std::array<param, 1> app{to_param(app_)};
    auto r = io_.run([&] {
      return observer_->query(
          "SELECT count(*) AS n FROM pg_stat_activity WHERE application_name = $1", app, in(10s));
    });
    EXPECT_TRUE(r) << r.error().message();
    return r ? r->get_int64(0, "n") : -1;
  }

  io_runner io_;
  std::string url_;
  std::string app_;
  std::unique_ptr<connection> observer_;
};

TEST_F(pg_pool, query_execute_pipeline_ping) {
  pool p(io_.executor(), config(2));
  auto q = io_.run([&] { return p.query("SELECT $1::int * 2 AS n", {to_param(21)}); });
  ASSERT_TRUE(q) << q.error().message();
  EXPECT_EQ(q->get_int64(0, "n"), 42);

  const statement twice{"cb_twice", "SELECT $1::int * 2 AS n"};
  for (int i = 0; i < 3; ++i) {
    auto e = io_.run([&] { return p.execute(twice, {to_param(i)}); });
    ASSERT_TRUE(e) << e.error().message();
    EXPECT_EQ(e->get_int64(0, "n"), 2 * i);
  }

  const std::array<param, 1> five{to_param(5)};
  auto b = io_.run([&] {
    return p.pipeline({batch_item("SELECT 1 AS n"), batch_item(twice, five)});
  });
  ASSERT_TRUE(b) << b.error().message();
  ASSERT_EQ(b->size(), 2u);
  EXPECT_EQ((*b)[1].get_int64(0, "n"), 10);

  EXPECT_TRUE(io_.run([&] { return p.ping(); }));
  // The connection goes back to the pool's strand just after the caller has its answer.
  for (int i = 0; i < 200 && p.stats().idle == 0; ++i) std::this_thread::sleep_for(5ms);
  const auto s = p.stats();
  EXPECT_EQ(s.queries, 6u);
  EXPECT_EQ(s.errors, 0u);
  EXPECT_EQ(s.open, 1u);  // one caller at a time needs one connection
  EXPECT_EQ(s.idle, 1u);
}

TEST_F(pg_pool, many_concurrent_queries_share_few_connections) {
  pool p(io_.executor(), config(4));
  constexpr int callers = 200;
  std::atomic<int> ok{0};
  std::atomic<int> running{callers};
  std::atomic<std::size_t> most_open{0};
  std::int64_t most_sessions = 0;

  for (int i = 0; i < callers; ++i) {
    // Callers on strands of their own, as actors would be.
    asio::co_spawn(
        asio::make_strand(io_.executor()),
        [&, i]() -> awaitable<void> {
          const std::array<param, 1> params{to_param(i)};
          auto r = co_await p.query("SELECT $1::int AS i, pg_sleep(0.005)", params);
          if (r && r->get_int64(0, "i") == i) ++ok;
          if (!r) ADD_FAILURE() << r.error().message();
          const std::size_t open = p.stats().open;
          std::size_t seen = most_open.load();
          while (open > seen && !most_open.compare_exchange_weak(seen, open)) {
          }
          --running;
        },
        asio::detached);
  }
  while (running > 0) {
    most_sessions = std::max(most_sessions, sessions());
    std::this_thread::sleep_for(5ms);
  }
  EXPECT_EQ(ok, callers);
  EXPECT_LE(most_open.load(), 4u);
  EXPECT_LE(most_sessions, 4);
  EXPECT_GE(most_sessions, 2) << "the queries should have overlapped";
  EXPECT_LE(sessions(), 4);
  const auto s = p.stats();
  EXPECT_EQ(s.queries, static_cast<std::uint64_t>(callers));
  EXPECT_EQ(s.errors, 0u);
  EXPECT_LE(s.open, 4u);
  EXPECT_EQ(s.waiting, 0u);
}

TEST_F(pg_pool, waiters_beyond_the_bound_are_turned_away) {
  auto c = config(1);
  c.max_waiters = 2;
  pool p(io_.executor(), c);
  auto held = io_.run([&] { return p.acquire(in(10s)); });
  ASSERT_TRUE(held) << held.error().message();

  std::atomic<int> served{0};
  for (int i = 0; i < 2; ++i) {
    asio::co_spawn(
        io_.executor(),
        [&]() -> awaitable<void> {
          auto r = co_await p.query("SELECT 1", {}, in(10s));
          EXPECT_TRUE(r) << r.error().message();
          ++served;
        },
        asio::detached);
  }
  for (int i = 0; i < 200 && p.stats().waiting < 2; ++i) std::this_thread::sleep_for(5ms);
  ASSERT_EQ(p.stats().waiting, 2u);

  const auto start = std::chrono::steady_clock::now();
  auto turned_away = io_.run([&] { return p.query("SELECT 1", {}, in(10s)); });
  ASSERT_FALSE(turned_away);
  EXPECT_TRUE(turned_away.error().is(errc::overloaded)) << turned_away.error().message();
  EXPECT_LT(std::chrono::steady_clock::now() - start, 1s);

  held->reset();
  for (int i = 0; i < 400 && served < 2; ++i) std::this_thread::sleep_for(5ms);
  EXPECT_EQ(served, 2);
  EXPECT_EQ(p.stats().waiting, 0u);
  EXPECT_EQ(p.stats().open, 1u);
}

TEST_F(pg_pool, waiting_for_a_connection_has_the_deadline) {
  pool p(io_.executor(), config(1));
  auto held = io_.run([&] { return p.acquire(in(10s)); });
  ASSERT_TRUE(held);
  const auto start = std::chrono::steady_clock::now();
  auto r = io_.run([&] { return p.query("SELECT 1", {}, in(150ms)); });
  ASSERT_FALSE(r);
  EXPECT_TRUE(r.error().is(errc::timeout)) << r.error().message();
  EXPECT_GE(std::chrono::steady_clock::now() - start, 140ms);
  EXPECT_EQ(p.stats().timeouts, 1u);
  EXPECT_EQ(p.stats().waiting, 0u);
}

TEST_F(pg_pool, query_past_its_deadline_times_out_and_the_pool_goes_on) {
  pool p(io_.executor(), config(2));
  const auto start = std::chrono::steady_clock::now();
  auto slow = io_.run([&] { return p.query("SELECT pg_sleep(5)", {}, in(200ms)); });
  const auto took = std::chrono::steady_clock::now() - start;
  ASSERT_FALSE(slow);
  EXPECT_TRUE(slow.error().is(errc::timeout)) << slow.error().message();
  EXPECT_LT(took, 1500ms);

  auto next = io_.run([&] { return p.query("SELECT 1 AS one"); });
  ASSERT_TRUE(next) << next.error().message();
  EXPECT_EQ(next->get_int64(0, "one"), 1);
  const auto s = p.stats();
  EXPECT_EQ(s.timeouts, 1u);
  EXPECT_EQ(s.errors, 1u);
  EXPECT_EQ(s.open, 1u);  // the timed-out connection was closed, not returned
}

TEST_F(pg_pool, server_stops_a_query_whose_client_left) {
  pool p(io_.executor(), config(1));
  auto slow = io_.run([&] { return p.query("SELECT pg_sleep(60)", {}, in(200ms)); });
  ASSERT_FALSE(slow);
  // client_connection_check_interval (2 s) lets the server see the closed socket.
  const std::array<param, 1> app{to_param(app_)};
  std::int64_t left = -1;
  for (int i = 0; i < 100 && left != 0; ++i) {
    std::this_thread::sleep_for(100ms);
    auto r = io_.run([&] {
      return observer_->query(
          "SELECT count(*) AS n FROM pg_stat_activity WHERE application_name = $1", app, in(5s));
    });
    ASSERT_TRUE(r);
    left = r->get_int64(0, "n");
  }
  EXPECT_EQ(left, 0) << "the backend still runs pg_sleep(60)";
}

TEST_F(pg_pool, transaction_on_a_lease) {
  const std::string table = unique_name("cb_pool_tx");
  pool p(io_.executor(), config(2));
  ASSERT_TRUE(run_sql(p, "CREATE TABLE " + table + " (id int)"));

  auto committed = io_.run([&]() -> awaitable<result<void>> {
    auto l = co_await p.acquire(in(10s));
    if (!l) co_return l.error();
    for (const char* sql : {"BEGIN", "INSERT INTO @ VALUES (1)", "COMMIT"}) {
      std::string s(sql);
      if (auto at = s.find('@'); at != std::string::npos) s.replace(at, 1, table);
      auto r = co_await (*l)->query(s, {}, in(10s));
      if (!r) co_return r.error();
    }
    co_return result<void>{};
  });
  EXPECT_TRUE(committed) << committed.error().message();

  // A lease dropped inside a transaction is closed, which rolls it back.
  auto abandoned = io_.run([&]() -> awaitable<result<void>> {
    auto l = co_await p.acquire(in(10s));
    if (!l) co_return l.error();
    auto begun = co_await (*l)->query("BEGIN", {}, in(10s));
    if (!begun) co_return begun.error();
    auto inserted = co_await (*l)->query("INSERT INTO " + table + " VALUES (2)", {}, in(10s));
    if (!inserted) co_return inserted.error();
    co_return result<void>{};
  });
  EXPECT_TRUE(abandoned) << abandoned.error().message();
  auto count = run_sql(p, "SELECT count(*) AS n FROM " + table);
  ASSERT_TRUE(count) << count.error().message();
  EXPECT_EQ(count->get_int64(0, "n"), 1);
  (void)run_sql(p, "DROP TABLE " + table);
}

TEST_F(pg_pool, unique_violation_through_the_pool) {
  const std::string table = unique_name("cb_pool_uniq");
  pool p(io_.executor(), config(2));
  ASSERT_TRUE(run_sql(p, "CREATE TABLE " + table + " (name text UNIQUE)"));
  const std::string sql = "INSERT INTO " + table + " VALUES ($1)";
  auto first = io_.run([&] { return p.query(sql, {to_param("a")}); });
  ASSERT_TRUE(first) << first.error().message();
  auto second = io_.run([&] { return p.query(sql, {to_param("a")}); });
  ASSERT_FALSE(second);
  EXPECT_TRUE(second.error().is(errc::db_unique_violation)) << second.error().message();
  EXPECT_NE(second.error().detail.find("23505"), std::string::npos);
  EXPECT_EQ(p.stats().errors, 1u);
  (void)run_sql(p, "DROP TABLE " + table);
}

TEST_F(pg_pool, terminated_idle_connection_is_replaced) {
  pool p(io_.executor(), config(1));
  ASSERT_TRUE(io_.run([&] { return p.query("SELECT 1"); }));
  const std::array<param, 1> app{to_param(app_)};
  auto killed = io_.run([&] {
    return observer_->query(
        "SELECT count(pg_terminate_backend(pid)) AS n FROM pg_stat_activity "
        "WHERE application_name = $1",
        app, in(10s));
  });
  ASSERT_TRUE(killed) << killed.error().message();
  ASSERT_EQ(killed->get_int64(0, "n"), 1);
  std::this_thread::sleep_for(100ms);  // let the FATAL message and the close arrive
  auto r = io_.run([&] { return p.query("SELECT 1 AS one"); });
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(p.stats().errors, 0u);
  EXPECT_EQ(p.stats().open, 1u);
}

TEST_F(pg_pool, dead_server_fails_fast) {
  auto c = config(2);
  c.conninfo = "postgresql://postgres@127.0.0.1:1/postgres";
  pool p(io_.executor(), c);
  for (int i = 0; i < 3; ++i) {
    const auto start = std::chrono::steady_clock::now();
    auto r = io_.run([&] { return p.query("SELECT 1", {}, in(10s)); });
    ASSERT_FALSE(r);
    EXPECT_TRUE(r.error().is(errc::db_unavailable)) << r.error().message();
    EXPECT_LT(std::chrono::steady_clock::now() - start, 1s);
  }
  EXPECT_EQ(p.stats().open, 0u);
}

TEST_F(pg_pool, silent_server_fails_within_the_connect_timeout) {
  asio::io_context local;
  asio::ip::tcp::acceptor silent(local, {asio::ip::make_address("127.0.0.1"), 0});
  auto c = config(2);
  c.conninfo = "postgresql://u@127.0.0.1:" + std::to_string(silent.local_endpoint().port()) + "/x";
  c.connect_timeout = 300ms;
  pool p(io_.executor(), c);
  const auto start = std::chrono::steady_clock::now();
  auto r = io_.run([&] { return p.query("SELECT 1", {}, in(10s)); });
  const auto took = std::chrono::steady_clock::now() - start;
  ASSERT_FALSE(r);
  EXPECT_TRUE(r.error().is(errc::db_unavailable)) << r.error().message();
  EXPECT_GE(took, 290ms);
  EXPECT_LT(took, 2s);
}

TEST_F(pg_pool, close_turns_waiters_away) {
  auto p = std::make_unique<pool>(io_.executor(), config(1));
  auto held = io_.run([&] { return p->acquire(in(10s)); });
  ASSERT_TRUE(held);
  std::atomic<bool> done{false};
  asio::co_spawn(
      io_.executor(),
      [&]() -> awaitable<void> {
        auto r = co_await p->query("SELECT 1", {}, in(10s));
        EXPECT_FALSE(r);
        if (!r) {
          EXPECT_TRUE(r.error().is(errc::shutting_down)) << r.error().message();
        }
        done = true;
      },
      asio::detached);
  for (int i = 0; i < 200 && p->stats().waiting < 1; ++i) std::this_thread::sleep_for(5ms);
  p->close();
  for (int i = 0; i < 200 && !done; ++i) std::this_thread::sleep_for(5ms);
  EXPECT_TRUE(done);
  auto after = io_.run([&] { return p->query("SELECT 1"); });
  ASSERT_FALSE(after);
  EXPECT_TRUE(after.error().is(errc::shutting_down));
  held->reset();  // closed on return
  p.reset();
}

}  // namespace
}  // namespace cloudbrain::pg::test
