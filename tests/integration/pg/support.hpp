#pragma once

#include "core/pg/connection.hpp"

#include <gtest/gtest.h>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

namespace cloudbrain::pg::test {

using namespace std::chrono_literals;

// CLOUDBRAIN_TEST_DATABASE_URL, or a failed test saying it is missing.
#define CLOUDBRAIN_REQUIRE_DATABASE_URL(url)                          \
  const std::string url = ::cloudbrain::pg::test::database_url();     \
  ASSERT_FALSE(url.empty())                                           \
      << "CLOUDBRAIN_TEST_DATABASE_URL is not set: these tests need " \
         "a PostgreSQL server, e.g. postgresql://postgres@127.0.0.1:5432/postgres"

[[nodiscard]] std::string database_url();

[[nodiscard]] inline time_point in(std::chrono::steady_clock::duration d) {
  return std::chrono::steady_clock::now() + d;
}

// A name no other test process uses: for tables, channels and application names.
[[nodiscard]] std::string unique_name(std::string_view prefix);

// An io_context run by several threads, to let races show. Tests drive it from the main thread
// with run(), which may block as tests like (std::system, sleeps).
class io_runner {
 public:
  explicit io_runner(int threads = 2);
  io_runner(const io_runner&) = delete;
  io_runner& operator=(const io_runner&) = delete;
  ~io_runner();

  [[nodiscard]] boost::asio::any_io_executor executor() { return context_.get_executor(); }

  // Runs the coroutine `make()` returns and waits for its result (or its exception). co_spawn
  // keeps `make` (and so a lambda's captures) alive until the coroutine ends.
  template <class F>
  auto run(F make) -> typename decltype(make())::value_type {
    auto done = boost::asio::co_spawn(context_, std::move(make), boost::asio::use_future);
    if (done.wait_for(120s) != std::future_status::ready) {
      ADD_FAILURE() << "a test coroutine did not finish within 120 s";
      std::abort();
    }
    return done.get();
  }

 private:
  boost::asio::io_context context_;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work_;
  std::vector<std::thread> threads_;
};

// A connection for the test's own bookkeeping (pg_stat_activity and the like).
[[nodiscard]] std::unique_ptr<connection> connect_or_fail(io_runner& io, const std::string& url,
                                                          std::string application_name);

// A PostgreSQL cluster of the test's own, in a temporary directory on a free loopback port, for
// tests that stop and start the server. Uses initdb and pg_ctl from CLOUDBRAIN_TEST_PG_BINDIR,
// else the directory CMake found them in; as root, runs them as the user `postgres`.
class throwaway_cluster {
 public:
  throwaway_cluster() = default;
  throwaway_cluster(const throwaway_cluster&) = delete;
  throwaway_cluster& operator=(const throwaway_cluster&) = delete;
  ~throwaway_cluster();

  // Creates and starts it; false (with a test failure) when that is impossible.
  [[nodiscard]] bool create();
  [[nodiscard]] bool start();
  [[nodiscard]] bool stop();  // pg_ctl stop -m fast
  [[nodiscard]] std::string url() const;

 private:
  [[nodiscard]] bool run(const std::string& command) const;

  std::string bindir_;
  std::string dir_;
  int port_ = 0;
  bool running_ = false;
};

}  // namespace cloudbrain::pg::test
