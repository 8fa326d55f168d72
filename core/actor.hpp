#pragma once

#include "core/error.hpp"
#include "core/log.hpp"
#include "core/time.hpp"

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/experimental/concurrent_channel.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <atomic>
#include <exception>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace cloudbrain {

// What every actor counts about itself; read by /metrics from any thread.
struct actor_counters {
  std::atomic<std::uint64_t> received{0};
  std::atomic<std::uint64_t> rejected{0};  // mailbox full: the sender was told "overloaded"
  std::atomic<std::uint64_t> failures{0};  // handlers that threw
  std::atomic<std::uint64_t> restarts{0};
  std::atomic<std::int64_t> depth{0};  // messages waiting in the mailbox
};

// Every live actor, by name, so that metrics and /readyz can see them all.
class actor_registry {
 public:
  struct entry {
    std::string name;
    const actor_counters* counters;
    std::size_t capacity;
  };
  static actor_registry& instance();
  void add(std::string name, const actor_counters* c, std::size_t capacity);
  void remove(const actor_counters* c);
  [[nodiscard]] std::vector<entry> snapshot() const;

 private:
  mutable std::mutex mutex_;
  std::vector<entry> entries_;
};

// An actor: state touched only on its strand, fed through a bounded mailbox of typed messages.
//
// `Derived` provides:
//   void handle(Message&& m);   // runs on the strand; starts async steps with spawn()
//   void on_restart();          // optional: reset state after a handler threw
// The mailbox is the strand's queue plus a depth counter: tell() refuses (returns false) when
// `capacity` messages are already waiting, and the API turns that into 503 + Retry-After.
template <class Derived, class Message>
class actor {
 public:
  using message_type = Message;
  using strand_type = boost::asio::strand<boost::asio::any_io_executor>;

  actor(boost::asio::any_io_executor ex, std::string name, std::size_t capacity)
      : strand_(boost::asio::make_strand(ex)), name_(std::move(name)), capacity_(capacity) {
    actor_registry::instance().add(name_, &counters_, capacity_);
  }
  actor(const actor&) = delete;
  actor& operator=(const actor&) = delete;
  ~actor() { actor_registry::instance().remove(&counters_); }

  [[nodiscard]] bool tell(Message m) {
    if (stopped_.load(std::memory_order_relaxed)) {
      counters_.rejected.fetch_add(1, std::memory_order_relaxed);
      return false;
    }
    // A slot is taken only while one is free, so the depth never reads above the capacity, not
    // even for the moment between a full mailbox's increment and its undoing.
    auto depth = counters_.depth.load(std::memory_order_relaxed);
    do {
      if (depth >= static_cast<std::int64_t>(capacity_)) {
        counters_.rejected.fetch_add(1, std::memory_order_relaxed);
        return false;
      }
    } while (!counters_.depth.compare_exchange_weak(depth, depth + 1, std::memory_order_acq_rel,
                                                    std::memory_order_relaxed));
    counters_.received.fetch_add(1, std::memory_order_relaxed);
    boost::asio::post(strand_, [this, m = std::move(m)]() mutable { deliver(std::move(m)); });
    return true;
  }

  // Runs `work` on this actor's strand under supervision: an exception that escapes it is
  // logged, counted and the actor restarted.
  void spawn(boost::asio::awaitable<void> work, std::string_view what = "task") {
    boost::asio::co_spawn(strand_, std::move(work),
                          [this, what = std::string(what)](std::exception_ptr e) {
                            if (e) supervise(e, what);
                          });
  }

  // Refuse further messages (shutdown); messages already queued are still delivered.
  void close() { stopped_.store(true, std::memory_order_relaxed); }
  [[nodiscard]] bool closed() const { return stopped_.load(std::memory_order_relaxed); }

  [[nodiscard]] strand_type& strand() { return strand_; }
  [[nodiscard]] const std::string& name() const { return name_; }
  [[nodiscard]] const actor_counters& counters() const { return counters_; }
  [[nodiscard]] std::size_t capacity() const { return capacity_; }

 protected:
  void on_restart() {}

 private:
  void deliver(Message&& m) {
    counters_.depth.fetch_sub(1, std::memory_order_acq_rel);
    try {
      static_cast<Derived*>(this)->handle(std::move(m));
    } catch (...) {
      supervise(std::current_exception(), "handle");
    }
  }

  void supervise(std::exception_ptr e, std::string_view where) {
    counters_.failures.fetch_add(1, std::memory_order_relaxed);
    std::string what = "unknown exception";
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& ex) {
      what = ex.what();
    } catch (...) {
    }
    log::error("actor failed; restarting", {{"actor", name_}, {"where", where}, {"error", what}});
    counters_.restarts.fetch_add(1, std::memory_order_relaxed);
    try {
      static_cast<Derived*>(this)->on_restart();
    } catch (...) {
      log::critical("actor restart failed", {{"actor", name_}});
    }
  }

  strand_type strand_;
  std::string name_;
  std::size_t capacity_;
  actor_counters counters_;
  std::atomic<bool> stopped_{false};
};

// The receiving end of an ask: the handler calls it once with the answer. Safe to call from
// any thread; later calls, and calls after the asker gave up, are dropped.
template <class T>
class reply_to {
 public:
  using channel_type =
      boost::asio::experimental::concurrent_channel<void(boost::system::error_code, result<T>)>;

  explicit reply_to(std::shared_ptr<channel_type> ch) : channel_(std::move(ch)) {}
  void operator()(result<T> value) const {
    if (channel_) (void)channel_->try_send(boost::system::error_code{}, std::move(value));
  }

 private:
  std::shared_ptr<channel_type> channel_;
};

// Sends the message `make(reply_to<T>)` to `target` and waits for the answer until `dl`.
// overloaded when the mailbox is full; timeout when no answer came in time.
template <class T, class Actor, class MakeMessage>
boost::asio::awaitable<result<T>> ask(Actor& target, MakeMessage make, deadline dl) {
  using namespace boost::asio::experimental::awaitable_operators;
  auto ex = co_await boost::asio::this_coro::executor;
  auto channel = std::make_shared<typename reply_to<T>::channel_type>(ex, 1);
  if (!target.tell(make(reply_to<T>(channel)))) {
    co_return fail(errc::overloaded, target.name() + " is overloaded");
  }
  boost::asio::steady_timer timer(ex, dl);
  auto outcome =
      co_await (channel->async_receive(boost::asio::as_tuple(boost::asio::use_awaitable)) ||
                timer.async_wait(boost::asio::as_tuple(boost::asio::use_awaitable)));
  if (outcome.index() == 1) {
    channel->close();
    co_return fail(errc::timeout, "no answer from " + target.name() + " in time");
  }
  auto [ec, value] = std::get<0>(std::move(outcome));
  if (ec) co_return fail(errc::cancelled, target.name() + " did not answer");
  co_return std::move(value);
}

}  // namespace cloudbrain
