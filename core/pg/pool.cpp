#include "core/pg/pool.hpp"

#include "core/log.hpp"
#include "core/metrics.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <algorithm>
#include <atomic>
#include <list>

namespace cloudbrain::pg {
namespace detail {

namespace asio = boost::asio;
using asio::awaitable;
using asio::use_awaitable;

// Everything here but the atomics is touched only on strand_.
class pool_state : public std::enable_shared_from_this<pool_state> {
 public:
  pool_state(asio::any_io_executor executor, pool_config config)
      : executor_(std::move(executor)),
        strand_(asio::make_strand(executor_)),
        config_(std::move(config)) {
    options_.application_name = config_.application_name;
    options_.statement_timeout = config_.statement_timeout;
    options_.client_connection_check_interval = config_.client_connection_check_interval;
    options_.prepared_statements = config_.prepared_statements;
  }

  [[nodiscard]] const pool_config& config() const noexcept { return config_; }

  // `fresh`: not a connection from the idle list (the retry after one turned out dead).
  awaitable<result<lease>> acquire(time_point deadline, bool fresh) {
    return asio::co_spawn(strand_, acquire_on_strand(shared_from_this(), deadline, fresh),
                          use_awaitable);
  }

  static void give_back(std::shared_ptr<pool_state> self, std::unique_ptr<connection> c) {
    auto& strand = self->strand_;
    asio::post(strand, [self = std::move(self), c = std::move(c)]() mutable {
      self->on_returned(std::move(c));
    });
  }

  void close() {
    asio::post(strand_, [self = shared_from_this()] { self->close_on_strand(); });
  }

  template <class R>
  void count(const R& outcome, std::chrono::steady_clock::time_point started) noexcept {
    if (config_.query_seconds != nullptr) {
      config_.query_seconds->observe(
          std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
    }
    queries_.fetch_add(1, std::memory_order_relaxed);
    if (outcome) return;
    errors_.fetch_add(1, std::memory_order_relaxed);
    if (outcome.error().is(errc::timeout)) timeouts_.fetch_add(1, std::memory_order_relaxed);
  }

  [[nodiscard]] pool_stats stats() const noexcept {
    pool_stats s;
    s.open = open_gauge_.load(std::memory_order_relaxed);
    s.idle = std::min(s.open, idle_gauge_.load(std::memory_order_relaxed));
    s.in_use = s.open - s.idle;
    s.waiting = waiting_gauge_.load(std::memory_order_relaxed);
    s.queries = queries_.load(std::memory_order_relaxed);
    s.errors = errors_.load(std::memory_order_relaxed);
    s.timeouts = timeouts_.load(std::memory_order_relaxed);
    return s;
  }

 private:
  // A caller queued for a connection. Whoever frees one hands it over (or hands over the slot
  // of one that closed) and cancels the timer.
  struct waiter {
    explicit waiter(const asio::any_io_executor& ex) : timer(ex) {}
    asio::steady_timer timer;
    std::unique_ptr<connection> handed;
    bool slot = false;
    bool closed = false;
    bool queued = false;
    std::list<waiter*>::iterator at;
  };

  // Takes a waiter out of the queue however the wait ends.
  class queue_entry {
   public:
    queue_entry(pool_state& pool, waiter& w) : pool_(pool), w_(w) {
      w_.at = pool_.waiters_.insert(pool_.waiters_.end(), &w_);
      w_.queued = true;
      pool_.publish();
    }
    queue_entry(const queue_entry&) = delete;
    queue_entry& operator=(const queue_entry&) = delete;
    ~queue_entry() {
      if (!w_.queued) return;
      pool_.waiters_.erase(w_.at);
      w_.queued = false;
      pool_.publish();
    }

   private:
    pool_state& pool_;
    waiter& w_;
  };

  static awaitable<result<lease>> acquire_on_strand(std::shared_ptr<pool_state> self,
                                                    time_point deadline, bool fresh) {
    pool_state& p = *self;
    if (p.closed_) co_return fail(errc::shutting_down, "the database pool is closed");
    if (std::chrono::steady_clock::now() >= deadline) {
      co_return fail(errc::timeout, "the deadline passed before a database connection was free");
    }
    if (!fresh) {
      std::unique_ptr<connection> reusable;
      while (!reusable && !p.idle_.empty()) {
        reusable = std::move(p.idle_.back());
        p.idle_.pop_back();
        // Without waiting: after a server restart, an idle connection is already dead.
        if (!reusable->check_idle()) {
          log::info("dropping a dead idle database connection");
          reusable.reset();
          --p.open_;
        }
      }
      p.publish();
      if (reusable) co_return lease(self, std::move(reusable), true);
    } else if (p.open_ >= p.config_.max_connections && !p.idle_.empty()) {
      // Room for a fresh one: the oldest idle connection is likely as stale as the one that
      // just failed.
      p.idle_.erase(p.idle_.begin());
      --p.open_;
    }
    if (p.open_ < p.config_.max_connections) {
      ++p.open_;
      p.publish();
      co_return co_await p.open_connection(deadline);
    }

    if (p.waiters_.size() >= p.config_.max_waiters) {
      co_return fail(errc::overloaded, "too many callers waiting for a database connection");
    }
    waiter w(p.strand_);
    w.timer.expires_at(deadline);
    {
      const queue_entry entry(p, w);
      const auto [ec] = co_await w.timer.async_wait(asio::as_tuple(use_awaitable));
      if (!w.handed && !w.slot && !w.closed) {
        if (ec) co_return fail(errc::cancelled, "waiting for a database connection was cancelled");
        co_return fail(errc::timeout, "no database connection became free before the deadline");
      }
    }
    if (w.closed) co_return fail(errc::shutting_down, "the database pool is closed");
    if (w.handed) {
      if (w.handed->check_idle()) co_return lease(self, std::move(w.handed), true);
      w.handed.reset();  // its slot is ours: open another
    }
    co_return co_await p.open_connection(deadline);
  }

  // On the strand, with open_ already counting the new connection.
  awaitable<result<lease>> open_connection(time_point deadline) {
    const auto connect_deadline =
        std::min(deadline, std::chrono::steady_clock::now() + config_.connect_timeout);
    // Arguments named first: GCC 12 bitwise-copies a by-value class argument that is a
    // temporary inside a co_await full-expression.
    connect_options options = options_;
    auto connecting =
        connection::connect(executor_, config_.conninfo, connect_deadline, std::move(options));
    auto c = co_await std::move(connecting);
    if (!c) {
      free_slot();
      auto e = c.error();
      if (e.is(errc::timeout) && connect_deadline < deadline) {
        e = error(errc::db_unavailable, "no connection to the database within " +
                                            std::to_string(config_.connect_timeout.count()) +
                                            " ms");
      }
      log::warn("cannot connect to the database", {{"detail", e.message()}});
      co_return e;
    }
    if (closed_) {
      free_slot();
      co_return fail(errc::shutting_down, "the database pool is closed");
    }
    co_return lease(shared_from_this(), std::move(*c), false);
  }

  void on_returned(std::unique_ptr<connection> c) {
    const bool keep = !closed_ && c->healthy() && !c->in_transaction() && !c->listening();
    if (!keep) {
      if (c->healthy() && c->in_transaction()) {
        log::warn("a database connection came back inside a transaction; closing it");
      }
      c.reset();
      free_slot();
      return;
    }
    if (!waiters_.empty()) {
      waiter& w = take_waiter();
      w.handed = std::move(c);
      w.timer.cancel();
      return;
    }
    idle_.push_back(std::move(c));
    publish();
  }

  // A connection closed or never opened: its slot goes to the first waiter, if any.
  void free_slot() {
    if (!waiters_.empty()) {
      waiter& w = take_waiter();
      w.slot = true;
      w.timer.cancel();
      return;
    }
    --open_;
    publish();
  }

  waiter& take_waiter() {
    waiter& w = *waiters_.front();
    waiters_.pop_front();
    w.queued = false;
    publish();
    return w;
  }

  void close_on_strand() {
    closed_ = true;
    open_ -= idle_.size();
    idle_.clear();
    while (!waiters_.empty()) {
      waiter& w = take_waiter();
      w.closed = true;
      w.timer.cancel();
    }
    publish();
  }

  void publish() noexcept {
    open_gauge_.store(open_, std::memory_order_relaxed);
    idle_gauge_.store(idle_.size(), std::memory_order_relaxed);
    waiting_gauge_.store(waiters_.size(), std::memory_order_relaxed);
  }

  asio::any_io_executor executor_;  // where connections make their own strands
  asio::any_io_executor strand_;
  pool_config config_;
  connect_options options_;

  std::vector<std::unique_ptr<connection>> idle_;  // the most recently used at the back
  std::size_t open_ = 0;                           // idle, in use, or being opened
  std::list<waiter*> waiters_;
  bool closed_ = false;

  std::atomic<std::size_t> open_gauge_{0};
  std::atomic<std::size_t> idle_gauge_{0};
  std::atomic<std::size_t> waiting_gauge_{0};
  std::atomic<std::uint64_t> queries_{0};
  std::atomic<std::uint64_t> errors_{0};
  std::atomic<std::uint64_t> timeouts_{0};
};

}  // namespace detail

namespace {

namespace asio = boost::asio;
using asio::awaitable;

// Runs one operation on a leased connection, and replaces a pooled connection that turns out
// dead before the request left (see pool).
template <class T, class Operation>
awaitable<result<T>> with_lease(std::shared_ptr<detail::pool_state> state, time_point deadline,
                                Operation operation) {
  const auto started = std::chrono::steady_clock::now();
  auto l = co_await state->acquire(deadline, false);
  if (!l) {
    state->count(l, started);
    co_return l.error();
  }
  auto r = co_await operation(l->get());
  if (!r && r.error().is(errc::db_connection_lost) && l->reused() && !l->get().request_sent()) {
    log::info("database connection found dead before use; retrying on a fresh one",
              {{"detail", r.error().detail}});
    l->reset();
    l = co_await state->acquire(deadline, true);
    if (!l) {
      state->count(l, started);
      co_return l.error();
    }
    r = co_await operation(l->get());
  }
  state->count(r, started);
  co_return r;
}

}  // namespace

lease& lease::operator=(lease&& other) noexcept {
  if (this != &other) {
    reset();
    pool_ = std::move(other.pool_);
    conn_ = std::move(other.conn_);
    reused_ = other.reused_;
  }
  return *this;
}

lease::~lease() { reset(); }

void lease::reset() noexcept {
  if (conn_ != nullptr && pool_ != nullptr) {
    detail::pool_state::give_back(std::move(pool_), std::move(conn_));
  }
  pool_.reset();
  conn_.reset();
}

pool::pool(boost::asio::any_io_executor executor, pool_config config)
    : state_(std::make_shared<detail::pool_state>(std::move(executor), std::move(config))) {}

pool::~pool() { close(); }

void pool::close() { state_->close(); }

time_point pool::default_deadline() const {
  return std::chrono::steady_clock::now() + state_->config().query_timeout;
}

const pool_config& pool::config() const noexcept { return state_->config(); }

pool_stats pool::stats() const noexcept { return state_->stats(); }

// These are plain functions: the lambdas take copies of the arguments, and with_lease takes the
// lambda, before the awaitable is returned.
awaitable<result<rows>> pool::query(std::string_view sql, std::span<const param> params,
                                    time_point deadline) {
  return with_lease<rows>(
      state_, deadline,
      [sql = std::string(sql), params = std::vector<param>(params.begin(), params.end()),
       deadline](connection& c) { return c.query(sql, params, deadline); });
}

awaitable<result<rows>> pool::execute(const statement& s, std::span<const param> params,
                                      time_point deadline) {
  return with_lease<rows>(
      state_, deadline,
      [s = detail::owned_statement(batch_item(s, params)), deadline](connection& c) {
        return c.execute(statement{s.name, s.sql}, s.params, deadline);
      });
}

awaitable<result<std::vector<rows>>> pool::pipeline(std::span<const batch_item> items,
                                                    time_point deadline) {
  return with_lease<std::vector<rows>>(
      state_, deadline,
      [items = std::vector<detail::owned_statement>(items.begin(), items.end()),
       deadline](connection& c) {
        std::vector<batch_item> views;
        views.reserve(items.size());
        for (const auto& item : items) views.push_back(item.view());
        return c.pipeline(views, deadline);  // copies again before returning
      });
}

awaitable<result<lease>> pool::acquire(time_point deadline) {
  return state_->acquire(deadline, false);
}

awaitable<result<void>> pool::ping(time_point deadline) {
  auto r = co_await query("SELECT 1", {}, deadline);
  if (!r) co_return r.error();
  co_return result<void>{};
}

}  // namespace cloudbrain::pg
