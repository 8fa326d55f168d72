#include "core/token_rate_limiter.hpp"

#include <gtest/gtest.h>

#include <thread>
#include <vector>

namespace cloudbrain {
namespace {

using namespace std::chrono_literals;

// A clock the test moves by hand.
struct manual_clock {
  steady_clock::time_point now{std::chrono::hours(1)};
  token_rate_limiter::clock fn() {
    return [this] { return now; };
  }
};

TEST(token_rate_limiter, allows_the_burst_then_refuses) {
  manual_clock c;
  token_rate_limiter limit(10, 5, c.fn());
  for (int i = 0; i < 5; ++i) EXPECT_TRUE(limit.admit(1).allowed) << i;
  const auto refused = limit.admit(1);
  EXPECT_FALSE(refused.allowed);
  EXPECT_EQ(refused.retry_after, 1s);  // 100 ms to wait, in whole seconds and at least one
  EXPECT_EQ(limit.refusals(), 1u);
}

TEST(token_rate_limiter, without_a_rate_admits_everything_and_tracks_nothing) {
  manual_clock c;
  token_rate_limiter limit(0, 0, c.fn());
  EXPECT_FALSE(limit.enabled());
  for (int i = 0; i < 1000; ++i) ASSERT_TRUE(limit.admit(1).allowed) << i;
  EXPECT_EQ(limit.tracked(), 0u);
  EXPECT_EQ(limit.refusals(), 0u);
}

// A reload sets a limit, changes it and lifts it, from the next request on.
TEST(token_rate_limiter, a_new_rate_applies_from_the_next_request) {
  manual_clock c;
  token_rate_limiter limit(0, 0, c.fn());
  limit.set_rate(10, 3);
  EXPECT_TRUE(limit.enabled());
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(limit.admit(1).allowed) << i;
  EXPECT_FALSE(limit.admit(1).allowed);
  // A larger burst: what the token used is still counted, the rest of the new burst is free.
  limit.set_rate(10, 5);
  EXPECT_TRUE(limit.admit(1).allowed);
  EXPECT_TRUE(limit.admit(1).allowed);
  EXPECT_FALSE(limit.admit(1).allowed);
  // A slower rate: one request a second after the bucket is used up.
  c.now += 1s;
  limit.set_rate(1, 1);
  EXPECT_TRUE(limit.admit(2).allowed);
  EXPECT_FALSE(limit.admit(2).allowed);
  c.now += 1s;
  EXPECT_TRUE(limit.admit(2).allowed);
  // Lifted: everything passes.
  limit.set_rate(0, 0);
  EXPECT_FALSE(limit.enabled());
  for (int i = 0; i < 100; ++i) EXPECT_TRUE(limit.admit(2).allowed) << i;
}

TEST(token_rate_limiter, the_default_burst_is_the_rate_rounded_up) {
  EXPECT_EQ(token_rate_limiter::burst_for(50, 0), 50u);
  EXPECT_EQ(token_rate_limiter::burst_for(0.5, 0), 1u);
  EXPECT_EQ(token_rate_limiter::burst_for(2.1, 0), 3u);
  EXPECT_EQ(token_rate_limiter::burst_for(2.1, 7), 7u);
}

// One request in 1e300 seconds with a burst of a million: the interval is capped at 1e9 s and
// the tolerance saturates (UndefinedBehaviorSanitizer would report an overflow), so a few
// requests pass and the rest wait, for a very long time.
TEST(token_rate_limiter, a_tiny_rate_with_a_large_burst_does_not_overflow) {
  manual_clock c;
  token_rate_limiter limit(1e-300, 1'000'000, c.fn());
  EXPECT_TRUE(limit.admit(4).allowed);
  int refused = 0;
  for (int i = 0; i < 10; ++i) {
    const auto d = limit.admit(4);
    if (!d.allowed) {
      ++refused;
      EXPECT_GT(d.retry_after, std::chrono::hours(24 * 365));
    }
  }
  EXPECT_GT(refused, 0);
}

TEST(token_rate_limiter, refills_at_the_rate) {
  manual_clock c;
  token_rate_limiter limit(10, 5, c.fn());
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(limit.admit(1).allowed);
  ASSERT_FALSE(limit.admit(1).allowed);
  c.now += 100ms;  // one interval: one more request
  EXPECT_TRUE(limit.admit(1).allowed);
  EXPECT_FALSE(limit.admit(1).allowed);
  c.now += 500ms;  // the whole burst again, not more
  for (int i = 0; i < 5; ++i) EXPECT_TRUE(limit.admit(1).allowed) << i;
  EXPECT_FALSE(limit.admit(1).allowed);
}

TEST(token_rate_limiter, over_a_window_allows_burst_plus_rate_times_time) {
  manual_clock c;
  token_rate_limiter limit(20, 10, c.fn());
  int allowed = 0;
  for (int step = 0; step < 300; ++step) {  // 3 s in 10 ms steps, 4 requests a step
    for (int i = 0; i < 4; ++i) allowed += limit.admit(7).allowed ? 1 : 0;
    c.now += 10ms;
  }
  EXPECT_GE(allowed, 10 + 20 * 3 - 1);
  EXPECT_LE(allowed, 10 + 20 * 3);
}

TEST(token_rate_limiter, the_retry_after_covers_the_wait) {
  manual_clock c;
  token_rate_limiter limit(0.25, 1, c.fn());  // one request every four seconds
  ASSERT_TRUE(limit.admit(3).allowed);
  const auto refused = limit.admit(3);
  ASSERT_FALSE(refused.allowed);
  EXPECT_EQ(refused.retry_after, 4s);
  c.now += 3s;
  EXPECT_EQ(limit.admit(3).retry_after, 1s);
  c.now += 1s;
  EXPECT_TRUE(limit.admit(3).allowed);
}

TEST(token_rate_limiter, tokens_do_not_share_an_allowance) {
  manual_clock c;
  token_rate_limiter limit(1, 2, c.fn());
  ASSERT_TRUE(limit.admit(1).allowed);
  ASSERT_TRUE(limit.admit(1).allowed);
  ASSERT_FALSE(limit.admit(1).allowed);
  EXPECT_TRUE(limit.admit(2).allowed);
  EXPECT_TRUE(limit.admit(65).allowed);  // the same shard as token 1
  EXPECT_TRUE(limit.admit(65).allowed);
  EXPECT_FALSE(limit.admit(65).allowed);
}

TEST(token_rate_limiter, counts_refusals_in_the_metric) {
  manual_clock c;
  metrics::registry r;
  auto& refused = r.add_counter("cloudbrain_test_refused_total", "refused").get();
  token_rate_limiter limit(1, 1, c.fn(), &refused);
  ASSERT_TRUE(limit.admit(1).allowed);
  ASSERT_FALSE(limit.admit(1).allowed);
  ASSERT_FALSE(limit.admit(1).allowed);
  EXPECT_EQ(refused.value(), 2.0);
}

TEST(token_rate_limiter, idle_tokens_are_dropped) {
  manual_clock c;
  token_rate_limiter limit(100, 10, c.fn());
  for (std::int64_t id = 1; id <= 64 * 1000; ++id) ASSERT_TRUE(limit.admit(id).allowed);
  EXPECT_EQ(limit.tracked(), 64u * 1000u);
  c.now += 1s;  // every bucket is full again: a shard that grows sweeps them out
  for (std::int64_t id = 1'000'000; id < 1'000'000 + 64 * 100; ++id) {
    ASSERT_TRUE(limit.admit(id).allowed);
  }
  EXPECT_EQ(limit.tracked(), 64u * 100u);
}

TEST(token_rate_limiter, a_token_in_use_keeps_its_entry_through_a_sweep) {
  manual_clock c;
  token_rate_limiter limit(1, 1, c.fn());
  for (std::int64_t id = 128; id < 128 + 64 * 1000; id += 64) ASSERT_TRUE(limit.admit(id).allowed);
  c.now += 1s;
  ASSERT_TRUE(limit.admit(64).allowed);  // shard 0, like the others
  for (std::int64_t id = 1'000'000 * 64; id < 1'000'000 * 64 + 64 * 100; id += 64) {
    ASSERT_TRUE(limit.admit(id).allowed);
  }
  EXPECT_EQ(limit.tracked(), 101u);
  EXPECT_FALSE(limit.admit(64).allowed);
}

TEST(token_rate_limiter, threads_together_get_no_more_than_the_burst) {
  manual_clock c;  // time stands still: only the burst may pass
  token_rate_limiter limit(1, 1000, c.fn());
  std::atomic<int> allowed{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 1000; ++i) allowed += limit.admit(9).allowed ? 1 : 0;
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(allowed.load(), 1000);
  EXPECT_EQ(limit.refusals(), 3000u);
}

}  // namespace
}  // namespace cloudbrain
