#include "core/actor.hpp"

#include <gtest/gtest.h>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <optional>
#include <stdexcept>
#include <thread>
#include <variant>
#include <vector>

namespace cloudbrain {
namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;

template <class... F>
struct overloaded : F... {
  using F::operator()...;
};
template <class... F>
overloaded(F...) -> overloaded<F...>;

struct ping {
  int value;
};
struct boom {
  bool std_exception = true;
};
struct get_sum {
  reply_to<int> reply;
};
struct fail_with {
  reply_to<int> reply;
};
struct keep_reply {  // remember the reply_to and answer later (or never)
  reply_to<int> reply;
};
struct drop_reply {
  reply_to<int> reply;
};
using test_message = std::variant<ping, boom, get_sum, fail_with, keep_reply, drop_reply>;

class test_actor : public actor<test_actor, test_message> {
 public:
  test_actor(asio::any_io_executor ex, std::size_t capacity, std::string name = "test_actor")
      : actor(std::move(ex), std::move(name), capacity) {}

  void handle(test_message&& m) {
    if (!strand().running_in_this_thread()) off_strand = true;
    std::visit(overloaded{
                   [this](ping& p) {
                     seen.push_back(p.value);
                     sum += p.value;
                   },
                   [](boom& b) {
                     if (b.std_exception) throw std::runtime_error("handler blew up");
                     throw 42;
                   },
                   [this](get_sum& g) { g.reply(sum); },
                   [](fail_with& f) { f.reply(fail(errc::not_found, "nothing here")); },
                   [this](keep_reply& k) { kept.emplace(std::move(k.reply)); },
                   [](drop_reply&) {},
               },
               m);
  }

  void on_restart() {
    ++restarts_seen;
    sum = 0;
    if (throw_in_restart) throw std::logic_error("restart failed too");
  }

  std::vector<int> seen;
  int sum = 0;
  int restarts_seen = 0;
  bool throw_in_restart = false;
  bool off_strand = false;
  std::optional<reply_to<int>> kept;
};

// An actor with no on_restart of its own: the base's default must do.
class plain_actor : public actor<plain_actor, int> {
 public:
  explicit plain_actor(asio::any_io_executor ex) : actor(std::move(ex), "plain_actor", 4) {}
  void handle(int v) {
    if (v < 0) throw std::runtime_error("negative");
    last = v;
  }
  int last = 0;
};

class actor_test : public ::testing::Test {
 protected:
  // Runs every ready handler; restart() because poll() leaves a context without work stopped.
  std::size_t drain() {
    io.restart();
    return io.poll();
  }

  template <class T>
  std::optional<result<T>> run_ask(test_actor& a, auto make, deadline dl) {
    std::optional<result<T>> out;
    asio::co_spawn(io, ask<T>(a, make, dl), [&out](const std::exception_ptr& e, result<T> r) {
      if (e) std::rethrow_exception(e);
      out = std::move(r);
    });
    io.restart();
    io.run_for(5s);
    return out;
  }

  asio::io_context io;
};

TEST_F(actor_test, handles_messages_in_order_on_the_strand) {
  test_actor a(io.get_executor(), 100);
  for (int i = 0; i < 50; ++i) ASSERT_TRUE(a.tell(ping{i}));
  EXPECT_TRUE(a.seen.empty()) << "tell must not run the handler inline";
  EXPECT_EQ(a.counters().depth.load(), 50);
  drain();
  std::vector<int> want(50);
  for (int i = 0; i < 50; ++i) want[i] = i;
  EXPECT_EQ(a.seen, want);
  EXPECT_FALSE(a.off_strand);
  EXPECT_EQ(a.counters().received.load(), 50u);
  EXPECT_EQ(a.counters().depth.load(), 0);
  EXPECT_EQ(a.counters().rejected.load(), 0u);
}

TEST_F(actor_test, run_one_steps_the_loop) {
  // Each run_one() is one turn of the strand: it handles a non-empty, in-order batch of what
  // was queued, and nothing is handled without a turn.
  test_actor a(io.get_executor(), 10);
  ASSERT_TRUE(a.tell(ping{1}));
  ASSERT_TRUE(a.tell(ping{2}));
  ASSERT_TRUE(a.tell(ping{3}));
  const std::vector<int> all{1, 2, 3};
  std::size_t steps = 0;
  while (a.seen.size() < all.size()) {
    const auto before = a.seen.size();
    io.restart();
    ASSERT_EQ(io.run_one(), 1u);
    ASSERT_LE(++steps, all.size());
    EXPECT_GT(a.seen.size(), before);
    EXPECT_TRUE(std::equal(a.seen.begin(), a.seen.end(), all.begin()));
  }
  ASSERT_TRUE(a.tell(ping{4}));
  EXPECT_EQ(a.seen, all);
  io.restart();
  EXPECT_EQ(io.run_one(), 1u);
  EXPECT_EQ(a.seen, (std::vector<int>{1, 2, 3, 4}));
  io.restart();
  EXPECT_EQ(io.poll(), 0u);
}

TEST_F(actor_test, bounded_mailbox_refuses_past_capacity) {
  test_actor a(io.get_executor(), 3);
  EXPECT_EQ(a.capacity(), 3u);
  EXPECT_TRUE(a.tell(ping{1}));
  EXPECT_TRUE(a.tell(ping{2}));
  EXPECT_TRUE(a.tell(ping{3}));
  EXPECT_FALSE(a.tell(ping{4}));
  EXPECT_FALSE(a.tell(ping{5}));
  EXPECT_EQ(a.counters().rejected.load(), 2u);
  EXPECT_EQ(a.counters().received.load(), 3u);
  EXPECT_EQ(a.counters().depth.load(), 3);

  drain();
  EXPECT_EQ(a.seen, (std::vector<int>{1, 2, 3}));  // the refused ones never arrive
  EXPECT_EQ(a.counters().depth.load(), 0);

  // Room again after draining.
  EXPECT_TRUE(a.tell(ping{6}));
  EXPECT_TRUE(a.tell(ping{7}));
  EXPECT_TRUE(a.tell(ping{8}));
  EXPECT_FALSE(a.tell(ping{9}));
  drain();
  EXPECT_EQ(a.seen, (std::vector<int>{1, 2, 3, 6, 7, 8}));
  EXPECT_EQ(a.counters().rejected.load(), 3u);
}

TEST_F(actor_test, throwing_handler_is_counted_and_restarted) {
  test_actor a(io.get_executor(), 10);
  ASSERT_TRUE(a.tell(ping{5}));
  ASSERT_TRUE(a.tell(boom{}));
  ASSERT_TRUE(a.tell(ping{7}));
  ASSERT_TRUE(a.tell(boom{false}));  // not a std::exception
  ASSERT_TRUE(a.tell(ping{11}));
  EXPECT_NO_THROW(drain());
  EXPECT_EQ(a.counters().failures.load(), 2u);
  EXPECT_EQ(a.counters().restarts.load(), 2u);
  EXPECT_EQ(a.restarts_seen, 2);
  EXPECT_EQ(a.seen, (std::vector<int>{5, 7, 11}));  // later messages still handled
  EXPECT_EQ(a.sum, 11);                             // on_restart reset the state
  EXPECT_EQ(a.counters().depth.load(), 0);
}

TEST_F(actor_test, throwing_on_restart_is_contained) {
  test_actor a(io.get_executor(), 10);
  a.throw_in_restart = true;
  ASSERT_TRUE(a.tell(boom{}));
  ASSERT_TRUE(a.tell(ping{3}));
  EXPECT_NO_THROW(drain());
  EXPECT_EQ(a.counters().failures.load(), 1u);
  EXPECT_EQ(a.restarts_seen, 1);
  EXPECT_EQ(a.seen, (std::vector<int>{3}));
}

TEST_F(actor_test, default_on_restart) {
  plain_actor a(io.get_executor());
  ASSERT_TRUE(a.tell(-1));
  ASSERT_TRUE(a.tell(9));
  drain();
  EXPECT_EQ(a.counters().failures.load(), 1u);
  EXPECT_EQ(a.counters().restarts.load(), 1u);
  EXPECT_EQ(a.last, 9);
}

TEST_F(actor_test, close_refuses_new_messages_but_delivers_queued_ones) {
  test_actor a(io.get_executor(), 10);
  ASSERT_TRUE(a.tell(ping{1}));
  ASSERT_TRUE(a.tell(ping{2}));
  EXPECT_FALSE(a.closed());
  a.close();
  EXPECT_TRUE(a.closed());
  EXPECT_FALSE(a.tell(ping{3}));
  EXPECT_EQ(a.counters().rejected.load(), 1u);
  drain();
  EXPECT_EQ(a.seen, (std::vector<int>{1, 2}));
  EXPECT_FALSE(a.tell(ping{4}));
  drain();
  EXPECT_EQ(a.seen, (std::vector<int>{1, 2}));
}

TEST_F(actor_test, ask_returns_the_answer) {
  test_actor a(io.get_executor(), 10);
  ASSERT_TRUE(a.tell(ping{20}));
  ASSERT_TRUE(a.tell(ping{22}));
  const auto r = run_ask<int>(
      a, [](reply_to<int> r) { return test_message{get_sum{std::move(r)}}; }, after(5s));
  ASSERT_TRUE(r.has_value()) << "ask never completed";
  ASSERT_TRUE(*r) << r->error().message();
  EXPECT_EQ(**r, 42);
}

TEST_F(actor_test, ask_passes_an_error_through) {
  test_actor a(io.get_executor(), 10);
  const auto r = run_ask<int>(
      a, [](reply_to<int> r) { return test_message{fail_with{std::move(r)}}; }, after(5s));
  ASSERT_TRUE(r.has_value());
  ASSERT_FALSE(*r);
  EXPECT_TRUE(r->error().is(errc::not_found));
  EXPECT_EQ(r->error().detail, "nothing here");
}

TEST_F(actor_test, ask_on_a_full_mailbox_is_overloaded) {
  // The actor lives on a context nobody runs, so its mailbox stays full while the asker runs.
  asio::io_context actor_io;
  test_actor a(actor_io.get_executor(), 2);
  ASSERT_TRUE(a.tell(ping{1}));
  ASSERT_TRUE(a.tell(ping{2}));
  const auto start = steady_clock::now();
  std::optional<result<int>> out;
  asio::co_spawn(
      io,
      ask<int>(
          a, [](reply_to<int> r) { return test_message{get_sum{std::move(r)}}; }, after(5s)),
      [&out](const std::exception_ptr& e, result<int> r) {
        if (e) std::rethrow_exception(e);
        out = std::move(r);
      });
  io.run_for(5s);
  ASSERT_TRUE(out.has_value());
  ASSERT_FALSE(*out);
  EXPECT_TRUE(out->error().is(errc::overloaded)) << out->error().message();
  EXPECT_NE(out->error().detail.find("test_actor"), std::string::npos);
  EXPECT_LT(steady_clock::now() - start, 1s) << "overloaded must not wait for the deadline";
  EXPECT_EQ(a.counters().rejected.load(), 1u);
  // Once the actor catches up, asking works again.
  actor_io.poll();
  out.reset();
  asio::co_spawn(
      io,
      ask<int>(
          a, [](reply_to<int> r) { return test_message{get_sum{std::move(r)}}; }, after(5s)),
      [&out](const std::exception_ptr& e, result<int> r) {
        if (e) std::rethrow_exception(e);
        out = std::move(r);
      });
  actor_io.restart();
  auto actor_work = asio::make_work_guard(actor_io);
  std::thread actor_thread([&actor_io] { actor_io.run(); });
  io.restart();
  io.run_for(5s);
  actor_work.reset();
  actor_thread.join();
  ASSERT_TRUE(out.has_value());
  ASSERT_TRUE(*out) << out->error().message();
  EXPECT_EQ(**out, 3);
}

TEST_F(actor_test, ask_on_a_closed_actor_is_refused) {
  test_actor a(io.get_executor(), 2);
  a.close();
  const auto r = run_ask<int>(
      a, [](reply_to<int> r) { return test_message{get_sum{std::move(r)}}; }, after(5s));
  ASSERT_TRUE(r.has_value());
  ASSERT_FALSE(*r);
  EXPECT_TRUE(r->error().is(errc::overloaded));
}

TEST_F(actor_test, ask_times_out_when_nobody_answers) {
  test_actor a(io.get_executor(), 10);
  const auto start = steady_clock::now();
  const auto r = run_ask<int>(
      a, [](reply_to<int> r) { return test_message{drop_reply{std::move(r)}}; }, after(20ms));
  const auto took = steady_clock::now() - start;
  ASSERT_TRUE(r.has_value()) << "ask never completed";
  ASSERT_FALSE(*r);
  EXPECT_TRUE(r->error().is(errc::timeout)) << r->error().message();
  EXPECT_GE(took, 20ms);
  EXPECT_LT(took, 3s);
}

TEST_F(actor_test, late_and_repeated_answers_are_dropped) {
  test_actor a(io.get_executor(), 10);
  const auto r = run_ask<int>(
      a, [](reply_to<int> r) { return test_message{keep_reply{std::move(r)}}; }, after(10ms));
  ASSERT_TRUE(r.has_value());
  ASSERT_FALSE(*r);
  EXPECT_TRUE(r->error().is(errc::timeout));
  ASSERT_TRUE(a.kept.has_value());
  (*a.kept)(7);  // the asker is gone: dropped, no crash
  (*a.kept)(8);
  drain();

  // Answering twice: the asker gets the first.
  a.kept.reset();
  std::optional<result<int>> out;
  asio::co_spawn(
      io,
      ask<int>(
          a, [](reply_to<int> r) { return test_message{keep_reply{std::move(r)}}; }, after(5s)),
      [&out](const std::exception_ptr& e, result<int> r) {
        if (e) std::rethrow_exception(e);
        out = std::move(r);
      });
  drain();
  ASSERT_TRUE(a.kept.has_value());
  (*a.kept)(1);
  (*a.kept)(2);
  io.restart();
  io.run_for(5s);
  ASSERT_TRUE(out.has_value());
  ASSERT_TRUE(*out);
  EXPECT_EQ(**out, 1);
}

asio::awaitable<void> throw_now() {
  throw std::runtime_error("coroutine blew up");
  co_return;
}

asio::awaitable<void> throw_after_wait(std::chrono::milliseconds d) {
  asio::steady_timer t(co_await asio::this_coro::executor, d);
  co_await t.async_wait(asio::use_awaitable);
  throw std::runtime_error("blew up after waiting");
}

asio::awaitable<void> finish(test_actor* a, bool* ran) {
  asio::steady_timer t(co_await asio::this_coro::executor, 1ms);
  co_await t.async_wait(asio::use_awaitable);
  *ran = true;
  if (!a->strand().running_in_this_thread()) a->off_strand = true;
}

TEST_F(actor_test, spawn_supervises_coroutines) {
  test_actor a(io.get_executor(), 10);
  bool ran = false;
  a.spawn(finish(&a, &ran), "ok task");
  io.restart();
  io.run_for(5s);
  EXPECT_TRUE(ran);
  EXPECT_FALSE(a.off_strand);
  EXPECT_EQ(a.counters().failures.load(), 0u);

  a.spawn(throw_now(), "thrower");
  EXPECT_NO_THROW(drain());
  EXPECT_EQ(a.counters().failures.load(), 1u);
  EXPECT_EQ(a.counters().restarts.load(), 1u);
  EXPECT_EQ(a.restarts_seen, 1);

  a.spawn(throw_after_wait(2ms), "late thrower");
  io.restart();
  EXPECT_NO_THROW(io.run_for(5s));
  EXPECT_EQ(a.counters().failures.load(), 2u);
  EXPECT_EQ(a.restarts_seen, 2);

  // The actor still works.
  ASSERT_TRUE(a.tell(ping{1}));
  drain();
  EXPECT_EQ(a.seen, (std::vector<int>{1}));
}

TEST_F(actor_test, registry_lists_live_actors) {
  auto has = [](const std::string& name) {
    const auto all = actor_registry::instance().snapshot();
    return std::any_of(all.begin(), all.end(),
                       [&](const actor_registry::entry& e) { return e.name == name; });
  };
  {
    test_actor a(io.get_executor(), 7, "registry_probe");
    ASSERT_TRUE(has("registry_probe"));
    for (const auto& e : actor_registry::instance().snapshot()) {
      if (e.name == "registry_probe") {
        EXPECT_EQ(e.capacity, 7u);
        EXPECT_EQ(e.counters, &a.counters());
      }
    }
  }
  EXPECT_FALSE(has("registry_probe"));
}

// Many senders, two threads running the loop: every message handled exactly once, never two
// handlers at the same time, and each sender's messages in the order it sent them.
class stress_actor : public actor<stress_actor, std::pair<int, int>> {
 public:
  static constexpr int senders = 4;
  static constexpr int per_sender = 10'000;

  stress_actor(asio::any_io_executor ex, std::size_t capacity)
      : actor(std::move(ex), "stress_actor", capacity),
        counts(static_cast<std::size_t>(senders) * per_sender) {}

  void handle(std::pair<int, int> m) {
    if (busy.exchange(true)) overlapped = true;
    const auto [sender, seq] = m;
    counts[static_cast<std::size_t>(sender) * per_sender + static_cast<std::size_t>(seq)].fetch_add(
        1);
    if (seq <= last_seq[sender]) out_of_order = true;
    last_seq[sender] = seq;
    if (counters().depth.load() > static_cast<std::int64_t>(capacity())) over_capacity = true;
    // a little work, so that an overlap would have time to show
    volatile int spin = 0;
    for (int i = 0; i < 50; ++i) spin = spin + i;
    handled.fetch_add(1);
    busy.store(false);
  }

  std::vector<std::atomic<int>> counts;
  int last_seq[senders] = {-1, -1, -1, -1};
  std::atomic<bool> busy{false};
  std::atomic<bool> overlapped{false};
  std::atomic<int> handled{0};
  bool out_of_order = false;
  bool over_capacity = false;
};

void stress(std::size_t capacity) {
  asio::io_context io;
  auto guard = asio::make_work_guard(io);
  stress_actor a(io.get_executor(), capacity);
  std::vector<std::thread> loop;
  loop.reserve(2);
  for (int i = 0; i < 2; ++i) loop.emplace_back([&io] { io.run(); });
  std::vector<std::thread> senders;
  senders.reserve(stress_actor::senders);
  std::atomic<std::uint64_t> refusals{0};
  for (int s = 0; s < stress_actor::senders; ++s) {
    senders.emplace_back([&a, &refusals, s] {
      for (int i = 0; i < stress_actor::per_sender; ++i) {
        while (!a.tell({s, i})) {  // full: back off and retry, as a client would
          refusals.fetch_add(1);
          std::this_thread::yield();
        }
      }
    });
  }
  for (auto& t : senders) t.join();
  const auto give_up = steady_clock::now() + 60s;
  while (a.handled.load() < stress_actor::senders * stress_actor::per_sender &&
         steady_clock::now() < give_up) {
    std::this_thread::sleep_for(1ms);
  }
  guard.reset();
  for (auto& t : loop) t.join();

  constexpr int total = stress_actor::senders * stress_actor::per_sender;
  EXPECT_EQ(a.handled.load(), total);
  int wrong = 0;
  for (const auto& c : a.counts) wrong += c.load() != 1;
  EXPECT_EQ(wrong, 0) << "messages not handled exactly once";
  EXPECT_FALSE(a.overlapped.load()) << "the handler ran concurrently with itself";
  EXPECT_FALSE(a.out_of_order) << "one sender's messages were reordered";
  EXPECT_FALSE(a.over_capacity);
  EXPECT_EQ(a.counters().received.load(), static_cast<std::uint64_t>(total));
  EXPECT_EQ(a.counters().rejected.load(), refusals.load());
  EXPECT_EQ(a.counters().depth.load(), 0);
}

TEST(actor_stress, roomy_mailbox) { stress(40'000); }
TEST(actor_stress, tight_mailbox_with_retries) { stress(64); }

}  // namespace
}  // namespace cloudbrain
