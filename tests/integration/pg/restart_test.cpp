// The pool through a server restart, on a throwaway cluster the test starts and stops itself
// (see throwaway_cluster in support.hpp); CLOUDBRAIN_TEST_DATABASE_URL is not used here.
#include "core/pg/pool.hpp"
#include "tests/integration/pg/support.hpp"

#include <boost/asio/use_future.hpp>

namespace cloudbrain::pg::test {
namespace {

namespace asio = boost::asio;
using asio::awaitable;

class pg_restart : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(cluster_.create()); }

  pool_config config() const {
    pool_config c;
    c.conninfo = cluster_.url();
    c.max_connections = 2;
    c.connect_timeout = 1s;
    return c;
  }

  static bool lost_or_unavailable(const error& e) {
    return e.is(errc::db_connection_lost) || e.is(errc::db_unavailable);
  }

  throwaway_cluster cluster_;
  io_runner io_;
};

// Opens `n` connections by holding them at once.
awaitable<result<void>> open_connections(pool& p, int n) {
  std::vector<lease> held;
  for (int i = 0; i < n; ++i) {
    auto l = co_await p.acquire(in(10s));
    if (!l) co_return l.error();
    held.push_back(std::move(*l));
  }
  co_return result<void>{};
}

TEST_F(pg_restart, pool_fails_fast_while_down_and_recovers_when_back) {
  pool p(io_.executor(), config());
  ASSERT_TRUE(io_.run([&] { return open_connections(p, 2); }));
  ASSERT_TRUE(io_.run([&] { return p.query("SELECT 1"); }));
  EXPECT_EQ(p.stats().open, 2u);

  ASSERT_TRUE(cluster_.stop());
  for (int i = 0; i < 5; ++i) {
    const auto start = std::chrono::steady_clock::now();
    auto r = io_.run([&] { return p.query("SELECT 1", {}, in(10s)); });
    ASSERT_FALSE(r);
    EXPECT_TRUE(lost_or_unavailable(r.error())) << r.error().message();
    EXPECT_LT(std::chrono::steady_clock::now() - start, 2s);
  }
  EXPECT_EQ(p.stats().open, 0u);  // the dead idle connections are gone

  ASSERT_TRUE(cluster_.start());
  auto back = io_.run([&] { return p.query("SELECT 1 AS one"); });
  ASSERT_TRUE(back) << back.error().message();
  EXPECT_EQ(back->get_int64(0, "one"), 1);
  EXPECT_TRUE(io_.run([&] { return p.ping(); }));
}

TEST_F(pg_restart, idle_connections_are_replaced_without_the_caller_noticing) {
  pool p(io_.executor(), config());
  ASSERT_TRUE(io_.run([&] { return open_connections(p, 2); }));
  ASSERT_TRUE(cluster_.stop());
  ASSERT_TRUE(cluster_.start());
  // Both idle connections are dead; neither request ever left, so this succeeds at once.
  for (int i = 0; i < 3; ++i) {
    auto r = io_.run([&] { return p.query("SELECT 1"); });
    EXPECT_TRUE(r) << r.error().message();
  }
  EXPECT_EQ(p.stats().errors, 0u);
}

TEST_F(pg_restart, query_in_flight_fails_when_the_server_stops) {
  pool p(io_.executor(), config());
  auto running = asio::co_spawn(
      io_.executor(), [&] { return p.query("SELECT pg_sleep(30)", {}, in(60s)); },
      asio::use_future);
  std::this_thread::sleep_for(500ms);
  const auto start = std::chrono::steady_clock::now();
  ASSERT_TRUE(cluster_.stop());
  ASSERT_EQ(running.wait_for(5s), std::future_status::ready);
  auto r = running.get();
  ASSERT_FALSE(r);
  EXPECT_TRUE(lost_or_unavailable(r.error())) << r.error().message();
  EXPECT_LT(std::chrono::steady_clock::now() - start, 5s);
  // The broken connection reaches the pool's strand just after the caller has its answer.
  for (int i = 0; i < 200 && p.stats().open != 0; ++i) std::this_thread::sleep_for(5ms);
  EXPECT_EQ(p.stats().open, 0u);

  ASSERT_TRUE(cluster_.start());
  EXPECT_TRUE(io_.run([&] { return p.query("SELECT 1"); }));
}

}  // namespace
}  // namespace cloudbrain::pg::test
