#include "core/batch_queue.hpp"

#include <gtest/gtest.h>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>

#include <chrono>
#include <stdexcept>
#include <string>
#include <vector>

namespace cloudbrain {
namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;
using queue_type = batch_queue<int, std::string>;

// Runs every batch a while (so that callers pile up behind it) and answers each item with its
// own text, or fails the items the test marks as bad.
struct recorder {
  std::vector<std::vector<int>> batches;
  std::size_t running = 0;
  std::size_t most_running = 0;
  std::chrono::milliseconds pause = 5ms;

  queue_type::runner runner(asio::io_context& ioc) {
    return [this, &ioc](std::vector<int>& items, deadline) -> asio::awaitable<queue_type::results> {
      batches.push_back(items);
      most_running = std::max(most_running, ++running);
      asio::steady_timer t(ioc, pause);
      co_await t.async_wait(asio::use_awaitable);
      --running;
      queue_type::results out;
      for (const int i : items) {
        if (i < 0) {
          out.emplace_back(fail(errc::invalid_argument, "bad " + std::to_string(i)));
        } else {
          out.emplace_back("item " + std::to_string(i));
        }
      }
      co_return out;
    };
  }
};

// `n` callers on strands of their own submit at once; each records what it got back.
std::vector<result<std::string>> submit_all(asio::io_context& ioc, queue_type& q,
                                            const std::vector<int>& items) {
  std::vector<result<std::string>> got(items.size(), fail(errc::internal, "no answer"));
  for (std::size_t k = 0; k < items.size(); ++k) {
    asio::co_spawn(
        asio::make_strand(ioc),
        [&q, &got, k, item = items[k]]() -> asio::awaitable<void> {
          auto r = co_await q.submit(item, after(10s));
          got[k] = std::move(r);
        },
        asio::detached);
  }
  ioc.run();
  ioc.restart();
  return got;
}

TEST(batch_queue, every_caller_gets_its_own_answer_and_concurrent_ones_share_batches) {
  asio::io_context ioc;
  recorder rec;
  queue_type q(ioc.get_executor(), "test",
               {.max_batch = 50, .max_queued = 10000, .max_in_flight = 2}, rec.runner(ioc));
  std::vector<int> items;
  for (int i = 0; i < 1000; ++i) items.push_back(i % 20 == 7 ? -i : i);
  const auto got = submit_all(ioc, q, items);

  for (std::size_t k = 0; k < items.size(); ++k) {
    if (items[k] < 0) {
      ASSERT_FALSE(got[k]) << k;
      EXPECT_EQ(got[k].error().detail, "bad " + std::to_string(items[k]));
    } else {
      ASSERT_TRUE(got[k]) << k << ": " << got[k].error().detail;
      EXPECT_EQ(*got[k], "item " + std::to_string(items[k]));
    }
  }
  // Batched: far fewer batches than items, none over the limit, every item in exactly one.
  EXPECT_LT(rec.batches.size(), 100u);
  std::vector<int> seen;
  for (const auto& b : rec.batches) {
    EXPECT_LE(b.size(), 50u);
    seen.insert(seen.end(), b.begin(), b.end());
  }
  std::sort(seen.begin(), seen.end());
  auto expected = items;
  std::sort(expected.begin(), expected.end());
  EXPECT_EQ(seen, expected);
  EXPECT_LE(rec.most_running, 2u);
  EXPECT_EQ(q.counters().items.load(), 1000u);
  EXPECT_EQ(q.counters().queued.load(), 0);
  // Every batch counted once by its size.
  std::vector<std::uint64_t> by_size(batch_counters::size_buckets);
  for (const auto& b : rec.batches) ++by_size[batch_counters::size_bucket(b.size())];
  std::uint64_t counted = 0;
  for (std::size_t i = 0; i < by_size.size(); ++i) {
    EXPECT_EQ(q.counters().sizes[i].load(), by_size[i]) << "bucket " << i;
    counted += q.counters().sizes[i].load();
  }
  EXPECT_EQ(counted, q.counters().batches.load());
}

TEST(batch_queue, batch_sizes_fall_in_power_of_two_buckets) {
  EXPECT_EQ(batch_counters::size_bucket(1), 0u);
  EXPECT_EQ(batch_counters::size_bucket(2), 1u);
  EXPECT_EQ(batch_counters::size_bucket(3), 2u);
  EXPECT_EQ(batch_counters::size_bucket(4), 2u);
  EXPECT_EQ(batch_counters::size_bucket(5), 3u);
  EXPECT_EQ(batch_counters::size_bucket(256), 8u);
  EXPECT_EQ(batch_counters::size_bucket(257), 9u);
  EXPECT_EQ(batch_counters::size_bucket(100000), 9u);
}

TEST(batch_queue, a_lone_item_goes_at_once_alone) {
  asio::io_context ioc;
  recorder rec;
  queue_type q(ioc.get_executor(), "test", {}, rec.runner(ioc));
  const auto started = steady_clock::now();
  const auto got = submit_all(ioc, q, {42});
  ASSERT_TRUE(got[0]);
  EXPECT_EQ(*got[0], "item 42");
  ASSERT_EQ(rec.batches.size(), 1u);
  EXPECT_EQ(rec.batches[0], std::vector<int>{42});
  EXPECT_LT(steady_clock::now() - started, 1s);
}

TEST(batch_queue, a_full_queue_refuses_at_once) {
  asio::io_context ioc;
  recorder rec;
  rec.pause = 50ms;
  queue_type q(ioc.get_executor(), "test", {.max_batch = 1, .max_queued = 3, .max_in_flight = 1},
               rec.runner(ioc));
  std::vector<int> items(20);
  for (int i = 0; i < 20; ++i) items[static_cast<std::size_t>(i)] = i;
  const auto got = submit_all(ioc, q, items);
  std::size_t answered = 0, refused = 0;
  for (const auto& r : got) {
    if (r) {
      ++answered;
    } else {
      EXPECT_TRUE(r.error().is(errc::overloaded)) << r.error().detail;
      ++refused;
    }
  }
  EXPECT_GT(refused, 0u);
  EXPECT_GT(answered, 0u);
  EXPECT_EQ(answered + refused, 20u);
  EXPECT_EQ(q.counters().refused.load(), refused);
}

TEST(batch_queue, an_item_whose_deadline_passed_in_the_queue_is_not_run) {
  asio::io_context ioc;
  recorder rec;
  rec.pause = 100ms;
  queue_type q(ioc.get_executor(), "test", {.max_batch = 10, .max_queued = 10, .max_in_flight = 1},
               rec.runner(ioc));
  result<std::string> first = fail(errc::internal), late = fail(errc::internal);
  asio::co_spawn(
      ioc,
      [&]() -> asio::awaitable<void> {
        auto r = co_await q.submit(1, after(10s));
        first = std::move(r);
      },
      asio::detached);
  asio::co_spawn(
      ioc,
      [&]() -> asio::awaitable<void> {
        // Queued behind a batch that runs for 100 ms, with 20 ms to live.
        asio::steady_timer t(ioc, 5ms);
        co_await t.async_wait(asio::use_awaitable);
        auto r = co_await q.submit(2, after(20ms));
        late = std::move(r);
      },
      asio::detached);
  ioc.run();
  ASSERT_TRUE(first);
  ASSERT_FALSE(late);
  EXPECT_TRUE(late.error().is(errc::timeout));
  ASSERT_EQ(rec.batches.size(), 1u);
  EXPECT_EQ(q.counters().expired.load(), 1u);
}

TEST(batch_queue, a_runner_that_throws_or_miscounts_fails_its_batch_only) {
  asio::io_context ioc;
  int calls = 0;
  queue_type q(ioc.get_executor(), "test", {.max_batch = 1, .max_queued = 10, .max_in_flight = 1},
               [&calls](std::vector<int>& items, deadline) -> asio::awaitable<queue_type::results> {
                 ++calls;
                 if (items[0] == 1) throw std::runtime_error("bug");
                 if (items[0] == 2) co_return queue_type::results{};
                 co_return queue_type::results{std::string("fine")};
               });
  const auto got = submit_all(ioc, q, {1, 2, 3});
  ASSERT_FALSE(got[0]);
  EXPECT_TRUE(got[0].error().is(errc::internal));
  ASSERT_FALSE(got[1]);
  EXPECT_TRUE(got[1].error().is(errc::internal));
  ASSERT_TRUE(got[2]);
  EXPECT_EQ(*got[2], "fine");
  EXPECT_EQ(calls, 3);
}

}  // namespace
}  // namespace cloudbrain
