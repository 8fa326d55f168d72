#include "core/blocking_pool.hpp"

#include <gtest/gtest.h>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/strand.hpp>

#include <atomic>
#include <chrono>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace cloudbrain {
namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;
using strand_type = asio::strand<asio::io_context::executor_type>;

struct observations {
  std::thread::id caller_before;
  std::thread::id worker;
  std::thread::id caller_after;
  bool on_strand_before = false;
  bool on_strand_after = false;
  std::string value;
  std::string error;
  bool done = false;
};

asio::awaitable<void> use_pool(blocking_pool* pool, strand_type strand, observations* o) {
  o->caller_before = std::this_thread::get_id();
  o->on_strand_before = strand.running_in_this_thread();
  o->value = co_await pool->run([o] {
    o->worker = std::this_thread::get_id();
    std::this_thread::sleep_for(20ms);  // io.run() must not return meanwhile
    return std::string("computed off the loop");
  });
  o->caller_after = std::this_thread::get_id();
  o->on_strand_after = strand.running_in_this_thread();
  o->done = true;
}

asio::awaitable<void> throwing(blocking_pool* pool, strand_type strand, observations* o) {
  try {
    (void)co_await pool->run([]() -> int { throw std::invalid_argument("bad input"); });
    o->error = "no exception";
  } catch (const std::invalid_argument& e) {
    o->error = e.what();
  }
  o->on_strand_after = strand.running_in_this_thread();
  // The pool still works after a failure.
  const int v = co_await pool->run([] { return 41 + 1; });
  o->value = std::to_string(v);
  o->done = true;
}

TEST(blocking_pool, runs_elsewhere_and_resumes_on_the_callers_strand) {
  asio::io_context io;
  blocking_pool pool(2);
  strand_type strand = asio::make_strand(io);
  observations o;
  asio::co_spawn(strand, use_pool(&pool, strand, &o), [](const std::exception_ptr& e) {
    if (e) std::rethrow_exception(e);
  });
  io.run();
  ASSERT_TRUE(o.done) << "io.run() returned before the pool's answer arrived";
  EXPECT_EQ(o.value, "computed off the loop");
  EXPECT_TRUE(o.on_strand_before);
  EXPECT_TRUE(o.on_strand_after);
  EXPECT_NE(o.worker, o.caller_before) << "the callable ran on the event loop's thread";
  EXPECT_EQ(o.caller_after, std::this_thread::get_id());
}

TEST(blocking_pool, exceptions_reach_the_awaiting_coroutine) {
  asio::io_context io;
  blocking_pool pool(1);
  strand_type strand = asio::make_strand(io);
  observations o;
  std::exception_ptr escaped;
  asio::co_spawn(strand, throwing(&pool, strand, &o),
                 [&escaped](std::exception_ptr e) { escaped = std::move(e); });
  io.run();
  EXPECT_FALSE(escaped);
  ASSERT_TRUE(o.done);
  EXPECT_EQ(o.error, "bad input");
  EXPECT_TRUE(o.on_strand_after);
  EXPECT_EQ(o.value, "42");
}

asio::awaitable<void> many(blocking_pool* pool, strand_type strand, int n, std::atomic<int>* sum,
                           std::atomic<int>* off_strand) {
  const int v = co_await pool->run([n] {
    std::this_thread::sleep_for(1ms);
    return n * 2;
  });
  if (!strand.running_in_this_thread()) off_strand->fetch_add(1);
  sum->fetch_add(v);
}

TEST(blocking_pool, many_callers_on_several_loop_threads) {
  asio::io_context io;
  blocking_pool pool(3);
  std::atomic<int> sum{0}, off_strand{0};
  std::vector<strand_type> strands;
  strands.reserve(8);
  for (int i = 0; i < 8; ++i) strands.push_back(asio::make_strand(io));
  for (int i = 0; i < 200; ++i) {
    auto& s = strands[static_cast<std::size_t>(i % 8)];
    asio::co_spawn(s, many(&pool, s, i, &sum, &off_strand), [](const std::exception_ptr& e) {
      if (e) std::rethrow_exception(e);
    });
  }
  std::thread second([&io] { io.run(); });
  io.run();
  second.join();
  EXPECT_EQ(sum.load(), 2 * (199 * 200 / 2));
  EXPECT_EQ(off_strand.load(), 0);
}

}  // namespace
}  // namespace cloudbrain
