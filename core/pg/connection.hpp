#pragma once

#include "core/error.hpp"
#include "core/pg/connect_params.hpp"
#include "core/pg/result.hpp"
#include "core/pg/text.hpp"

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>

#include <chrono>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

struct pg_conn;  // libpq's PGconn

namespace cloudbrain::pg {

using time_point = std::chrono::steady_clock::time_point;

// A named prepared statement. Each connection prepares it the first time it is executed there
// (in the same round trip) and reuses it after that. A name always stands for the same SQL.
struct statement {
  std::string_view name;
  std::string_view sql;
};

// One statement of a pipeline: either SQL sent as it is, or a named prepared statement.
struct batch_item {
  batch_item(std::string_view sql_text, std::span<const param> p = {}) : sql(sql_text), params(p) {}
  batch_item(const statement& s, std::span<const param> p = {})
      : name(s.name), sql(s.sql), params(p) {}

  std::string_view name;  // empty: not a prepared statement
  std::string_view sql;
  std::span<const param> params;
};

namespace detail {
// A statement's own copy of the text and parameters a batch_item points to: operations copy their
// arguments when called, so the caller's buffers may go away before the awaitable is awaited.
struct owned_statement {
  explicit owned_statement(const batch_item& item)
      : name(item.name), sql(item.sql), params(item.params.begin(), item.params.end()) {}
  [[nodiscard]] batch_item view() const {
    batch_item b(sql, params);
    b.name = name;
    return b;
  }

  std::string name;
  std::string sql;
  std::vector<param> params;
};
}  // namespace detail

struct notification {
  std::string channel;
  std::string payload;
};

// One PostgreSQL session, driven through libpq's non-blocking API on its own strand: every
// operation hops onto that strand, whichever executor the caller is on. One operation at a time
// (a second concurrent one is a bug and throws std::logic_error).
//
// Every operation has a deadline. When it passes during a request, the operation returns
// errc::timeout and the connection is closed (libpq's PQcancel would block the loop); the server
// notices through client_connection_check_interval. A connection that broke answers
// errc::db_connection_lost from then on; healthy() says whether it is still usable.
//
// Operations copy their arguments (SQL, parameters) before they return the awaitable, so the
// caller's buffers may go away before it is awaited.
class connection {
 public:
  using executor_type = boost::asio::any_io_executor;

  // Opens a connection. Host names are looked up asynchronously, not by libpq. A server that
  // refuses or fails the handshake gives db_unavailable; a deadline that passes gives timeout.
  [[nodiscard]] static boost::asio::awaitable<result<std::unique_ptr<connection>>> connect(
      const executor_type& executor, std::string_view conninfo, time_point deadline,
      connect_options options = {});

  connection(const connection&) = delete;
  connection& operator=(const connection&) = delete;
  ~connection();

  [[nodiscard]] executor_type get_executor() const noexcept { return strand_; }

  // One statement in one round trip ($1, $2... are `params`, in text format).
  [[nodiscard]] boost::asio::awaitable<result<rows>> query(std::string_view sql,
                                                           std::span<const param> params,
                                                           time_point deadline);
  [[nodiscard]] boost::asio::awaitable<result<rows>> execute(const statement& s,
                                                             std::span<const param> params,
                                                             time_point deadline);
  // Several statements in one round trip, one `rows` per item. Outside an explicit transaction
  // they run as one implicit transaction: if one fails, the earlier ones are rolled back, the
  // later ones skipped, and the first failure is returned.
  [[nodiscard]] boost::asio::awaitable<result<std::vector<rows>>> pipeline(
      std::span<const batch_item> items, time_point deadline);

  [[nodiscard]] boost::asio::awaitable<result<void>> listen(std::string_view channel,
                                                            time_point deadline);
  // The next notification on a channel this connection listens to. errc::timeout when the
  // deadline passes first; unlike a request timing out, that leaves the connection usable.
  [[nodiscard]] boost::asio::awaitable<result<notification>> wait_notification(time_point deadline);

  [[nodiscard]] bool healthy() const noexcept;
  // Inside BEGIN ... COMMIT (or a failed transaction): a pool must not hand this to anyone else.
  [[nodiscard]] bool in_transaction() const noexcept;
  [[nodiscard]] bool listening() const noexcept { return listening_; }
  [[nodiscard]] bool is_prepared(std::string_view name) const;
  [[nodiscard]] int backend_pid() const noexcept;
  // Whether the last operation's request left this process whole. If the connection was lost
  // before that, the server cannot have run it, so retrying elsewhere is safe.
  [[nodiscard]] bool request_sent() const noexcept { return request_sent_; }
  // Reads whatever the server sent to this idle connection, without waiting: false if the
  // server has gone away (restarted, or closed the session). Not while an operation runs.
  [[nodiscard]] bool check_idle();

 private:
  class operation_scope;
  enum class readiness { readable, writable, timed_out, cancelled, failed };
  struct wait_result {
    readiness what;
    boost::system::error_code ec;
  };

  connection(executor_type strand, pg_conn* native);

  static boost::asio::awaitable<result<std::unique_ptr<connection>>> open(executor_type strand,
                                                                          std::string conninfo,
                                                                          time_point deadline,
                                                                          connect_options options);
  static boost::asio::awaitable<wait_result> wait_socket(
      boost::asio::posix::stream_descriptor& socket, boost::asio::steady_timer& timer,
      bool readable, bool writable, time_point deadline);

  boost::asio::awaitable<result<rows>> do_query(std::string sql, std::vector<param> params,
                                                time_point deadline);
  boost::asio::awaitable<result<rows>> do_execute(detail::owned_statement s, time_point deadline);
  boost::asio::awaitable<result<std::vector<rows>>> do_pipeline(
      std::vector<detail::owned_statement> items, time_point deadline);
  boost::asio::awaitable<result<void>> do_listen(std::string channel, time_point deadline);
  boost::asio::awaitable<result<notification>> do_wait_notification(time_point deadline);

  [[nodiscard]] std::optional<error> check_ready(time_point deadline) const;
  boost::asio::awaitable<result<std::vector<rows>>> run_pipeline(std::span<const batch_item> items,
                                                                 time_point deadline);
  boost::asio::awaitable<result<void>> flush(time_point deadline);
  boost::asio::awaitable<result<pg_result*>> next_result(time_point deadline);
  boost::asio::awaitable<result<rows>> collect(time_point deadline);
  [[nodiscard]] result<rows> accept(rows r);
  [[nodiscard]] std::optional<error> interrupted(const wait_result& w);
  [[nodiscard]] error send_failed();
  [[nodiscard]] error lost(std::string_view what);
  [[nodiscard]] std::string native_message() const;
  void remember_prepared(std::string_view name, std::string_view sql);
  void close() noexcept;
  static void on_notice(void* self, const pg_result* r);

  executor_type strand_;
  pg_conn* native_ = nullptr;
  boost::asio::posix::stream_descriptor socket_;
  boost::asio::steady_timer timer_;
  std::unordered_map<std::string, std::string> prepared_;  // name -> sql
  bool busy_ = false;
  bool listening_ = false;
  bool ending_ = false;  // the server said it is ending the session
  bool request_sent_ = false;
  bool prepare_ = true;  // connect_options::prepared_statements
};

}  // namespace cloudbrain::pg
