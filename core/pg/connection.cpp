#include "core/pg/connection.hpp"

#include "core/log.hpp"
#include "core/pg/error.hpp"

#include <libpq-fe.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/experimental/parallel_group.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <algorithm>
#include <cstdlib>
#include <stdexcept>

namespace cloudbrain::pg {
namespace {

namespace asio = boost::asio;
using asio::awaitable;
using asio::use_awaitable;
using asio::posix::stream_descriptor;

std::optional<std::string_view> environment(const char* name) {
  const char* v = std::getenv(name);  // NOLINT(concurrency-mt-unsafe): read-only use
  if (v == nullptr) return std::nullopt;
  return std::string_view(v);
}

// libpq's messages span lines ("...\n\tThis probably means..."); a log field wants one.
std::string one_line(std::string_view message) {
  std::string out;
  bool space = false;
  for (const char c : message) {
    if (c == '\n' || c == '\t' || c == ' ') {
      space = !out.empty();
      continue;
    }
    if (space) out += ' ';
    space = false;
    out += c;
  }
  return out;
}

std::string_view or_empty(const char* s) { return s == nullptr ? std::string_view() : s; }

// libpq owns its socket; Asio only watches it. Releasing instead of closing keeps Asio from
// closing a descriptor libpq still uses, or whose number the kernel has already handed out again.
class watched_socket {
 public:
  watched_socket(const connection::executor_type& ex, int fd, boost::system::error_code& ec)
      : socket_(ex) {
    socket_.assign(fd, ec);
  }
  watched_socket(const watched_socket&) = delete;
  watched_socket& operator=(const watched_socket&) = delete;
  ~watched_socket() {
    if (socket_.is_open()) socket_.release();
  }
  stream_descriptor& get() { return socket_; }

 private:
  stream_descriptor socket_;
};

// Looks up `host` on Asio's resolver thread. getaddrinfo() cannot be interrupted, so at the
// deadline the lookup is abandoned: the state it writes to lives until it finishes.
awaitable<result<std::vector<std::string>>> resolve(connection::executor_type strand,
                                                    std::string host, time_point deadline) {
  struct lookup {
    explicit lookup(const connection::executor_type& ex) : resolver(ex), done(ex) {}
    asio::ip::tcp::resolver resolver;
    asio::steady_timer done;
    boost::system::error_code ec;
    std::vector<std::string> addresses;
    bool finished = false;
  };
  auto state = std::make_shared<lookup>(strand);
  state->done.expires_at(deadline);
  state->resolver.async_resolve(
      host, "",
      asio::bind_executor(strand, [state](boost::system::error_code ec,
                                          const asio::ip::tcp::resolver::results_type& found) {
        state->ec = ec;
        for (const auto& entry : found) {
          auto address = entry.endpoint().address().to_string();
          if (std::find(state->addresses.begin(), state->addresses.end(), address) ==
              state->addresses.end()) {
            state->addresses.push_back(std::move(address));
          }
        }
        state->finished = true;
        state->done.cancel();
      }));
  const auto [ec] = co_await state->done.async_wait(asio::as_tuple(use_awaitable));
  if (!state->finished) {
    state->resolver.cancel();
    if (ec) co_return fail(errc::cancelled, "looking up the database host was cancelled");
    co_return fail(errc::timeout, "looking up the database host took longer than the deadline");
  }
  if (state->ec || state->addresses.empty()) {
    co_return fail(errc::db_unavailable,
                   "cannot resolve the database host \"" + host + "\": " + state->ec.message());
  }
  co_return std::move(state->addresses);
}

}  // namespace

// Marks the connection busy for one operation. An operation left by an exception (a bug, or the
// caller's cancellation) leaves the protocol state unknown, so the connection is closed.
class connection::operation_scope {
 public:
  explicit operation_scope(connection& c) : c_(c), exceptions_(std::uncaught_exceptions()) {
    if (c_.busy_) throw std::logic_error("pg::connection: a second operation while one runs");
    c_.busy_ = true;
    c_.request_sent_ = false;
  }
  operation_scope(const operation_scope&) = delete;
  operation_scope& operator=(const operation_scope&) = delete;
  ~operation_scope() {
    c_.busy_ = false;
    if (std::uncaught_exceptions() > exceptions_) c_.close();
  }

 private:
  connection& c_;
  int exceptions_;
};

connection::connection(executor_type strand, pg_conn* native)
    : strand_(std::move(strand)), native_(native), socket_(strand_), timer_(strand_) {}

connection::~connection() { close(); }

void connection::close() noexcept {
  if (socket_.is_open()) socket_.release();
  if (native_ != nullptr) {
    PQfinish(native_);
    native_ = nullptr;
  }
}

// The public operations are plain functions, not coroutines: they copy their arguments into the
// coroutine they start on the strand at once. (That also keeps class-type temporaries out of
// co_await full-expressions, which GCC 12 miscompiles.)
awaitable<result<std::unique_ptr<connection>>> connection::connect(const executor_type& executor,
                                                                   std::string_view conninfo,
                                                                   time_point deadline,
                                                                   connect_options options) {
  executor_type strand = asio::make_strand(executor);
  auto opening = open(strand, std::string(conninfo), deadline, std::move(options));
  return asio::co_spawn(strand, std::move(opening), use_awaitable);
}

awaitable<result<std::unique_ptr<connection>>> connection::open(executor_type strand,
                                                                std::string conninfo,
                                                                time_point deadline,
                                                                connect_options options) {
  auto params = detail::connect_params::parse(conninfo);
  if (!params) co_return params.error();
  params->apply(options);
  if (auto host = params->host_to_resolve(environment("PGHOST"), environment("PGHOSTADDR"))) {
    auto resolving = resolve(strand, *host, deadline);
    auto addresses = co_await std::move(resolving);
    if (!addresses) co_return addresses.error();
    params->set_resolved(*host, *addresses);
  }

  const auto keywords = params->keywords();
  const auto values = params->values();
  std::unique_ptr<PGconn, decltype(&PQfinish)> native(
      PQconnectStartParams(keywords.data(), values.data(), 0), &PQfinish);
  if (native == nullptr) co_return fail(errc::internal, "libpq could not allocate a connection");

  asio::steady_timer timer(strand);
  for (auto poll = PGRES_POLLING_WRITING; poll != PGRES_POLLING_OK;
       poll = PQconnectPoll(native.get())) {
    if (poll == PGRES_POLLING_FAILED || PQstatus(native.get()) == CONNECTION_BAD) {
      co_return fail(errc::db_unavailable, one_line(PQerrorMessage(native.get())));
    }
    // libpq may have moved to another socket (the next address, or a retry without TLS), so
    // the socket is watched afresh for every step.
    boost::system::error_code ec;
    watched_socket socket(strand, PQsocket(native.get()), ec);
    if (ec)
      co_return fail(errc::db_unavailable, "cannot watch the database socket: " + ec.message());
    const auto w = co_await wait_socket(socket.get(), timer, poll == PGRES_POLLING_READING,
                                        poll == PGRES_POLLING_WRITING, deadline);
    switch (w.what) {
      case readiness::readable:
      case readiness::writable: break;
      case readiness::timed_out:
        co_return fail(errc::timeout, "connecting to the database took longer than the deadline");
      case readiness::cancelled: co_return fail(errc::cancelled, "connecting was cancelled");
      case readiness::failed:
        co_return fail(errc::db_unavailable, "waiting on the database socket: " + w.ec.message());
    }
  }

  if (PQsetnonblocking(native.get(), 1) != 0) {
    co_return fail(errc::internal, "cannot make the database connection non-blocking");
  }
  std::unique_ptr<connection> c(new connection(strand, native.release()));
  c->prepare_ = options.prepared_statements;
  PQsetNoticeReceiver(c->native_, &connection::on_notice, c.get());
  boost::system::error_code ec;
  c->socket_.assign(PQsocket(c->native_), ec);
  if (ec)
    co_return fail(errc::db_connection_lost, "cannot watch the database socket: " + ec.message());
  log::debug("database connection opened", {{"backend_pid", c->backend_pid()}});
  co_return std::move(c);
}

awaitable<connection::wait_result> connection::wait_socket(stream_descriptor& socket,
                                                           asio::steady_timer& timer, bool readable,
                                                           bool writable, time_point deadline) {
  using asio::experimental::make_parallel_group;
  using asio::experimental::wait_for_one;
  const auto from_socket = [](boost::system::error_code ec, readiness ready) {
    if (!ec) return wait_result{ready, ec};
    if (ec == asio::error::operation_aborted) return wait_result{readiness::cancelled, ec};
    return wait_result{readiness::failed, ec};
  };
  const auto from_timer = [](boost::system::error_code ec) {
    return wait_result{ec ? readiness::cancelled : readiness::timed_out, ec};
  };
  timer.expires_at(deadline);
  if (readable && writable) {
    const auto [order, read_ec, write_ec, timer_ec] =
        co_await make_parallel_group(
            socket.async_wait(stream_descriptor::wait_read, asio::deferred),
            socket.async_wait(stream_descriptor::wait_write, asio::deferred),
            timer.async_wait(asio::deferred))
            .async_wait(wait_for_one(), use_awaitable);
    if (order[0] == 0) co_return from_socket(read_ec, readiness::readable);
    if (order[0] == 1) co_return from_socket(write_ec, readiness::writable);
    co_return from_timer(timer_ec);
  }
  const auto [order, socket_ec, timer_ec] =
      co_await make_parallel_group(
          socket.async_wait(writable ? stream_descriptor::wait_write : stream_descriptor::wait_read,
                            asio::deferred),
          timer.async_wait(asio::deferred))
          .async_wait(wait_for_one(), use_awaitable);
  if (order[0] == 0) {
    co_return from_socket(socket_ec, writable ? readiness::writable : readiness::readable);
  }
  co_return from_timer(timer_ec);
}

// ---- the public operations: each hops onto the strand -------------------------------------

awaitable<result<rows>> connection::query(std::string_view sql, std::span<const param> params,
                                          time_point deadline) {
  return asio::co_spawn(
      strand_,
      do_query(std::string(sql), std::vector<param>(params.begin(), params.end()), deadline),
      use_awaitable);
}

awaitable<result<rows>> connection::execute(const statement& s, std::span<const param> params,
                                            time_point deadline) {
  return asio::co_spawn(
      strand_, do_execute(detail::owned_statement(batch_item(s, params)), deadline), use_awaitable);
}

awaitable<result<std::vector<rows>>> connection::pipeline(std::span<const batch_item> items,
                                                          time_point deadline) {
  return asio::co_spawn(
      strand_,
      do_pipeline(std::vector<detail::owned_statement>(items.begin(), items.end()), deadline),
      use_awaitable);
}

awaitable<result<void>> connection::listen(std::string_view channel, time_point deadline) {
  return asio::co_spawn(strand_, do_listen(std::string(channel), deadline), use_awaitable);
}

awaitable<result<notification>> connection::wait_notification(time_point deadline) {
  return asio::co_spawn(strand_, do_wait_notification(deadline), use_awaitable);
}

// ---- on the strand ---------------------------------------------------------------------------

awaitable<result<rows>> connection::do_query(std::string sql, std::vector<param> params,
                                             time_point deadline) {
  operation_scope scope(*this);
  if (has_nul(params)) {
    co_return fail(errc::invalid_argument, "a query parameter contains a NUL character");
  }
  if (auto e = check_ready(deadline)) co_return *e;
  const auto values = param_values(params);
  if (PQsendQueryParams(native_, sql.c_str(), static_cast<int>(values.size()), nullptr,
                        values.data(), nullptr, nullptr, 0) == 0) {
    co_return send_failed();
  }
  if (auto sent = co_await flush(deadline); !sent) co_return sent.error();
  co_return co_await collect(deadline);
}

awaitable<result<rows>> connection::do_execute(detail::owned_statement s, time_point deadline) {
  operation_scope scope(*this);
  if (auto e = check_ready(deadline)) co_return *e;
  if (!prepare_) s.name.clear();
  if (s.name.empty() || !is_prepared(s.name)) {
    // Not prepared here yet: prepare and execute in one round trip.
    const batch_item item = s.view();
    auto out = co_await run_pipeline({&item, 1}, deadline);
    if (!out) co_return out.error();
    co_return std::move(out->front());
  }
  if (has_nul(s.params)) {
    co_return fail(errc::invalid_argument, "a query parameter contains a NUL character");
  }
  remember_prepared(s.name, s.sql);
  const auto values = param_values(s.params);
  if (PQsendQueryPrepared(native_, s.name.c_str(), static_cast<int>(values.size()), values.data(),
                          nullptr, nullptr, 0) == 0) {
    co_return send_failed();
  }
  if (auto sent = co_await flush(deadline); !sent) co_return sent.error();
  co_return co_await collect(deadline);
}

awaitable<result<std::vector<rows>>> connection::do_pipeline(
    std::vector<detail::owned_statement> items, time_point deadline) {
  operation_scope scope(*this);
  if (auto e = check_ready(deadline)) co_return *e;
  std::vector<batch_item> views;
  views.reserve(items.size());
  for (const auto& item : items) views.push_back(item.view());
  co_return co_await run_pipeline(views, deadline);
}

awaitable<result<void>> connection::do_listen(std::string channel, time_point deadline) {
  operation_scope scope(*this);
  if (auto e = check_ready(deadline)) co_return *e;
  const std::unique_ptr<char, decltype(&PQfreemem)> quoted(
      PQescapeIdentifier(native_, channel.data(), channel.size()), &PQfreemem);
  if (quoted == nullptr) {
    co_return fail(errc::invalid_argument,
                   "not a channel name: " + one_line(PQerrorMessage(native_)));
  }
  const std::string sql = std::string("LISTEN ") + quoted.get();
  if (PQsendQueryParams(native_, sql.c_str(), 0, nullptr, nullptr, nullptr, nullptr, 0) == 0) {
    co_return send_failed();
  }
  if (auto sent = co_await flush(deadline); !sent) co_return sent.error();
  auto done = co_await collect(deadline);
  if (!done) co_return done.error();
  listening_ = true;
  co_return result<void>{};
}

awaitable<result<notification>> connection::do_wait_notification(time_point deadline) {
  operation_scope scope(*this);
  if (!healthy()) {
    co_return fail(errc::db_connection_lost, "the connection was closed after an earlier failure");
  }
  for (;;) {
    if (PGnotify* n = PQnotifies(native_)) {
      notification out{n->relname, n->extra};
      PQfreemem(n);
      co_return out;
    }
    // Nothing is in flight, so running out of time or being cancelled costs the connection
    // nothing.
    if (std::chrono::steady_clock::now() >= deadline) {
      co_return fail(errc::timeout, "no notification before the deadline");
    }
    const auto w = co_await wait_socket(socket_, timer_, true, false, deadline);
    if (w.what == readiness::timed_out) {
      co_return fail(errc::timeout, "no notification before the deadline");
    }
    if (w.what == readiness::cancelled) {
      co_return fail(errc::cancelled, "waiting for a notification was cancelled");
    }
    if (w.what == readiness::failed)
      co_return lost("waiting for a notification: " + w.ec.message());
    if (PQconsumeInput(native_) == 0) co_return lost("waiting for a notification");
  }
}

// ---- the protocol steps ----------------------------------------------------------------------

std::optional<error> connection::check_ready(time_point deadline) const {
  if (!healthy()) {
    return error(errc::db_connection_lost, "the connection was closed after an earlier failure");
  }
  if (std::chrono::steady_clock::now() >= deadline) {
    return error(errc::timeout, "the deadline passed before the request was sent");
  }
  return std::nullopt;
}

awaitable<result<std::vector<rows>>> connection::run_pipeline(std::span<const batch_item> items,
                                                              time_point deadline) {
  struct sent_command {
    std::size_t item;
    bool prepare;
  };
  std::vector<rows> out;
  if (items.empty()) co_return out;
  for (const auto& item : items) {
    if (has_nul(item.params)) {
      co_return fail(errc::invalid_argument, "a query parameter contains a NUL character");
    }
  }
  if (PQenterPipelineMode(native_) == 0) co_return send_failed();

  std::vector<sent_command> sent;
  std::vector<std::string_view> preparing;
  for (std::size_t i = 0; i < items.size(); ++i) {
    const auto& item = items[i];
    const std::string sql(item.sql);
    const auto values = param_values(item.params);
    const int count = static_cast<int>(values.size());
    int ok = 0;
    if (item.name.empty() || !prepare_) {
      ok = PQsendQueryParams(native_, sql.c_str(), count, nullptr, values.data(), nullptr, nullptr,
                             0);
    } else {
      const std::string name(item.name);
      if (is_prepared(item.name)) {
        remember_prepared(item.name, item.sql);  // only checks that the SQL is the same
      } else if (std::find(preparing.begin(), preparing.end(), item.name) == preparing.end()) {
        if (PQsendPrepare(native_, name.c_str(), sql.c_str(), 0, nullptr) == 0) {
          co_return send_failed();
        }
        sent.push_back({i, true});
        preparing.push_back(item.name);
      }
      ok = PQsendQueryPrepared(native_, name.c_str(), count, values.data(), nullptr, nullptr, 0);
    }
    if (ok == 0) co_return send_failed();
    sent.push_back({i, false});
  }
  if (PQpipelineSync(native_) == 0) co_return send_failed();
  if (auto flushed = co_await flush(deadline); !flushed) co_return flushed.error();

  std::optional<error> first_failure;
  for (const auto& command : sent) {
    auto r = co_await collect(deadline);
    if (native_ == nullptr) co_return first_failure ? *first_failure : r.error();
    if (!r) {
      if (!first_failure) first_failure = r.error();
      continue;
    }
    if (command.prepare) {
      remember_prepared(items[command.item].name, items[command.item].sql);
    } else {
      out.push_back(std::move(*r));
    }
  }
  // The sync point ends the pipeline and comes back as one more result.
  auto sync = co_await next_result(deadline);
  if (!sync) co_return first_failure ? *first_failure : sync.error();
  const rows sync_result(*sync);
  if (*sync == nullptr || PQresultStatus(*sync) != PGRES_PIPELINE_SYNC ||
      PQexitPipelineMode(native_) == 0) {
    close();
    co_return fail(errc::db_error, "the pipeline did not end at its sync point");
  }
  if (first_failure) co_return *first_failure;
  co_return out;
}

awaitable<result<void>> connection::flush(time_point deadline) {
  for (;;) {
    const int pending = PQflush(native_);
    if (pending == 0) break;
    if (pending < 0) co_return lost("sending the request");
    // The server may be blocked sending to us (notices, or early results of a pipeline), so
    // read while waiting to write.
    const auto w = co_await wait_socket(socket_, timer_, true, true, deadline);
    if (auto e = interrupted(w)) co_return *e;
    if (w.what == readiness::readable && PQconsumeInput(native_) == 0) {
      co_return lost("reading from the server");
    }
  }
  request_sent_ = true;
  co_return result<void>{};
}

awaitable<result<pg_result*>> connection::next_result(time_point deadline) {
  while (PQisBusy(native_) != 0) {
    const auto w = co_await wait_socket(socket_, timer_, true, false, deadline);
    if (auto e = interrupted(w)) co_return *e;
    if (PQconsumeInput(native_) == 0) co_return lost("reading from the server");
  }
  co_return PQgetResult(native_);
}

// The results of one command, up to the null result that ends them.
awaitable<result<rows>> connection::collect(time_point deadline) {
  std::optional<result<rows>> out;
  for (;;) {
    auto next = co_await next_result(deadline);
    if (!next) {
      // A server error that came first says more than the lost connection that followed it.
      if (out && out->has_error()) co_return std::move(*out);
      co_return next.error();
    }
    if (*next == nullptr) break;
    rows r(*next);
    const auto status = PQresultStatus(r.native());
    if (status == PGRES_COPY_IN || status == PGRES_COPY_OUT || status == PGRES_COPY_BOTH) {
      close();
      co_return fail(errc::invalid_argument, "COPY is not supported by this client");
    }
    if (!out) out = accept(std::move(r));
    if (native_ == nullptr) break;  // accept() closed a connection the server gave up on
  }
  if (!out) co_return fail(errc::db_error, "the server sent no result");
  co_return std::move(*out);
}

result<rows> connection::accept(rows r) {
  const auto status = PQresultStatus(r.native());
  switch (status) {
    case PGRES_TUPLES_OK:
    case PGRES_COMMAND_OK:
    case PGRES_EMPTY_QUERY:
    case PGRES_SINGLE_TUPLE: return r;
    case PGRES_PIPELINE_ABORTED:
      return fail(errc::db_error, "not run: an earlier statement of the pipeline failed");
    case PGRES_FATAL_ERROR: {
      const bool gone = PQstatus(native_) == CONNECTION_BAD;
      auto e = error_from_result(r.native(), gone ? errc::db_connection_lost : errc::db_error);
      if (gone) close();
      return e;
    }
    default: return fail(errc::db_error, std::string("unexpected result ") + PQresStatus(status));
  }
}

std::optional<error> connection::interrupted(const wait_result& w) {
  switch (w.what) {
    case readiness::readable:
    case readiness::writable: return std::nullopt;
    case readiness::timed_out:
      close();
      log::warn("database request timed out; connection closed");
      return error(errc::timeout, "the database did not answer before the deadline");
    case readiness::cancelled:
      close();
      return error(errc::cancelled, "the database request was cancelled");
    case readiness::failed: return lost("waiting on the database socket: " + w.ec.message());
  }
  return std::nullopt;
}

error connection::send_failed() {
  const bool gone = PQstatus(native_) == CONNECTION_BAD;
  std::string detail = "sending the request: " + native_message();
  close();  // either way, where the protocol stands is unknown
  return {gone ? errc::db_connection_lost : errc::db_error, std::move(detail)};
}

error connection::lost(std::string_view what) {
  std::string detail = std::string(what);
  if (native_ != nullptr) detail += ": " + native_message();
  close();
  log::warn("database connection lost", {{"detail", detail}});
  return {errc::db_connection_lost, std::move(detail)};
}

std::string connection::native_message() const {
  return native_ == nullptr ? std::string() : one_line(PQerrorMessage(native_));
}

void connection::remember_prepared(std::string_view name, std::string_view sql) {
  const auto [it, inserted] = prepared_.try_emplace(std::string(name), sql);
  if (!inserted && it->second != sql) {
    throw std::logic_error("pg::statement \"" + std::string(name) + "\" used with two SQL texts");
  }
}

// ---- state -------------------------------------------------------------------------------

bool connection::healthy() const noexcept {
  return native_ != nullptr && !ending_ && PQstatus(native_) == CONNECTION_OK;
}

bool connection::in_transaction() const noexcept {
  return native_ != nullptr && PQtransactionStatus(native_) != PQTRANS_IDLE;
}

bool connection::is_prepared(std::string_view name) const {
  return prepared_.find(std::string(name)) != prepared_.end();
}

int connection::backend_pid() const noexcept {
  return native_ == nullptr ? 0 : PQbackendPID(native_);
}

bool connection::check_idle() {
  if (native_ == nullptr) return false;
  // PQconsumeInput reads what has come without waiting, one recv() at a time: a server shutting
  // down sends a FATAL message (which PQisBusy parses and hands to on_notice), then closes,
  // which the second read sees.
  for (int i = 0; i < 2 && healthy(); ++i) {
    if (PQconsumeInput(native_) == 0) break;
    (void)PQisBusy(native_);
  }
  if (!healthy()) {
    close();
    return false;
  }
  return true;
}

// libpq hands over everything the server says outside a result: notices, warnings, and the
// FATAL error of a session the server is ending (shutdown, pg_terminate_backend) while idle.
void connection::on_notice(void* self, const pg_result* r) {
  const std::string_view severity = or_empty(PQresultErrorField(r, PG_DIAG_SEVERITY_NONLOCALIZED));
  const log::fields fields = {{"severity", severity},
                              {"sqlstate", or_empty(PQresultErrorField(r, PG_DIAG_SQLSTATE))},
                              {"detail", or_empty(PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY))}};
  if (severity == "FATAL" || severity == "PANIC") {
    static_cast<connection*>(self)->ending_ = true;
    log::warn("the database server is ending the session", fields);
  } else if (severity == "WARNING") {
    log::warn("postgres warning", fields);
  } else {
    log::debug("postgres notice", fields);
  }
}

}  // namespace cloudbrain::pg
