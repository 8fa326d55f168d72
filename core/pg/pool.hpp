#pragma once

#include "core/pg/connection.hpp"

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace cloudbrain::metrics {
class histogram;
}

namespace cloudbrain::pg {

struct pool_config {
  std::string conninfo;
  std::size_t max_connections = 8;
  std::chrono::milliseconds connect_timeout{5000};
  std::chrono::milliseconds query_timeout{5000};  // the deadline of calls that give none
  std::size_t max_waiters = 1024;  // callers queued for a connection; then overloaded
  // Shown in pg_stat_activity, unless the connection string names an application itself.
  std::string application_name = "cloudbrain";
  // The server's own limit on a statement: a backstop behind deadlines, so longer than any.
  std::chrono::milliseconds statement_timeout{30000};
  // How soon the server notices that a connection closed at a deadline is gone (see connection).
  std::chrono::milliseconds client_connection_check_interval{2000};
  // See connect_options::prepared_statements.
  bool prepared_statements = true;
  // If set, observes each query's (or pipeline's) seconds, waiting for a connection included;
  // it must outlive the pool.
  metrics::histogram* query_seconds = nullptr;
};

struct pool_stats {
  std::size_t open = 0;  // connections open or being opened
  std::size_t idle = 0;
  std::size_t in_use = 0;   // open - idle
  std::size_t waiting = 0;  // callers queued for a connection
  std::uint64_t queries = 0;
  std::uint64_t errors = 0;  // failed queries, timeouts included
  std::uint64_t timeouts = 0;
};

namespace detail {
class pool_state;
}

// A connection borrowed from a pool, for several statements on one session (BEGIN ... COMMIT).
// It goes back when the lease goes out of scope; one that broke, is still inside a transaction
// (the caller returned early: closing it rolls back) or listens to channels is closed instead.
class lease {
 public:
  lease() noexcept = default;
  lease(lease&& other) noexcept = default;
  lease& operator=(lease&& other) noexcept;
  lease(const lease&) = delete;
  lease& operator=(const lease&) = delete;
  ~lease();

  [[nodiscard]] connection& get() const noexcept { return *conn_; }
  [[nodiscard]] connection& operator*() const noexcept { return *conn_; }
  [[nodiscard]] connection* operator->() const noexcept { return conn_.get(); }
  explicit operator bool() const noexcept { return conn_ != nullptr; }
  // Whether the connection served someone before (it came from the idle list).
  [[nodiscard]] bool reused() const noexcept { return reused_; }
  // Gives the connection back now.
  void reset() noexcept;

 private:
  friend class detail::pool_state;
  lease(std::shared_ptr<detail::pool_state> pool, std::unique_ptr<connection> conn, bool reused)
      : pool_(std::move(pool)), conn_(std::move(conn)), reused_(reused) {}

  std::shared_ptr<detail::pool_state> pool_;
  std::unique_ptr<connection> conn_;
  bool reused_ = false;
};

// Connections to one database, opened when needed up to max_connections and shared by callers
// on any executor or thread. Its state lives on its own strand; each connection on another.
//
// A caller waits for a free connection until its deadline, in a queue of at most max_waiters
// (beyond that: overloaded). A server that is down fails callers fast (db_unavailable, or
// timeout within connect_timeout); the pool reconnects by itself once it is back.
//
// The pool does not retry failed statements (a write may not be idempotent), with one exception:
// a pooled connection found dead before the request left is replaced once, since the server
// cannot have run that request.
//
// Calls copy their arguments before they return the awaitable, as connection's do.
class pool {
 public:
  pool(boost::asio::any_io_executor executor, pool_config config);
  pool(const pool&) = delete;
  pool& operator=(const pool&) = delete;
  ~pool();  // close()

  [[nodiscard]] boost::asio::awaitable<result<rows>> query(std::string_view sql,
                                                           std::span<const param> params,
                                                           time_point deadline);
  [[nodiscard]] boost::asio::awaitable<result<rows>> query(std::string_view sql,
                                                           std::span<const param> params = {}) {
    return query(sql, params, default_deadline());
  }
  [[nodiscard]] boost::asio::awaitable<result<rows>> query(std::string_view sql,
                                                           std::initializer_list<param> params,
                                                           time_point deadline) {
    return query(sql, std::span(params.begin(), params.size()), deadline);
  }
  [[nodiscard]] boost::asio::awaitable<result<rows>> query(std::string_view sql,
                                                           std::initializer_list<param> params) {
    return query(sql, std::span(params.begin(), params.size()), default_deadline());
  }

  [[nodiscard]] boost::asio::awaitable<result<rows>> execute(const statement& s,
                                                             std::span<const param> params,
                                                             time_point deadline);
  [[nodiscard]] boost::asio::awaitable<result<rows>> execute(const statement& s,
                                                             std::span<const param> params = {}) {
    return execute(s, params, default_deadline());
  }
  [[nodiscard]] boost::asio::awaitable<result<rows>> execute(const statement& s,
                                                             std::initializer_list<param> params,
                                                             time_point deadline) {
    return execute(s, std::span(params.begin(), params.size()), deadline);
  }
  [[nodiscard]] boost::asio::awaitable<result<rows>> execute(const statement& s,
                                                             std::initializer_list<param> params) {
    return execute(s, std::span(params.begin(), params.size()), default_deadline());
  }

  [[nodiscard]] boost::asio::awaitable<result<std::vector<rows>>> pipeline(
      std::span<const batch_item> items, time_point deadline);
  [[nodiscard]] boost::asio::awaitable<result<std::vector<rows>>> pipeline(
      std::span<const batch_item> items) {
    return pipeline(items, default_deadline());
  }
  [[nodiscard]] boost::asio::awaitable<result<std::vector<rows>>> pipeline(
      std::initializer_list<batch_item> items, time_point deadline) {
    return pipeline(std::span(items.begin(), items.size()), deadline);
  }
  [[nodiscard]] boost::asio::awaitable<result<std::vector<rows>>> pipeline(
      std::initializer_list<batch_item> items) {
    return pipeline(std::span(items.begin(), items.size()), default_deadline());
  }

  // A connection of one's own, for a transaction.
  [[nodiscard]] boost::asio::awaitable<result<lease>> acquire(time_point deadline);
  [[nodiscard]] boost::asio::awaitable<result<lease>> acquire() {
    return acquire(default_deadline());
  }

  // SELECT 1 through the pool: for readiness probes.
  [[nodiscard]] boost::asio::awaitable<result<void>> ping(time_point deadline);
  [[nodiscard]] boost::asio::awaitable<result<void>> ping() { return ping(default_deadline()); }

  // A snapshot for metrics; safe on any thread.
  [[nodiscard]] pool_stats stats() const noexcept;
  [[nodiscard]] const pool_config& config() const noexcept;

  // Closes idle connections and fails waiting and later callers with shutting_down; connections
  // in use are closed when they come back.
  void close();

 private:
  [[nodiscard]] time_point default_deadline() const;

  std::shared_ptr<detail::pool_state> state_;
};

}  // namespace cloudbrain::pg
