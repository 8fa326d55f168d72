#include "core/backoff.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <random>

namespace cloudbrain {
namespace {

using namespace std::chrono_literals;
using clock_type = token_bucket::clock;

TEST(backoff_policy, ceiling_doubles_up_to_the_cap) {
  const backoff_policy p{200ms, 30s, 10ms};
  EXPECT_EQ(p.ceiling(0), 200ms);
  EXPECT_EQ(p.ceiling(1), 400ms);
  EXPECT_EQ(p.ceiling(2), 800ms);
  EXPECT_EQ(p.ceiling(7), 25600ms);
  EXPECT_EQ(p.ceiling(8), 30s);
  EXPECT_EQ(p.ceiling(30), 30s);
  EXPECT_EQ(p.ceiling(31), 30s);
  EXPECT_EQ(p.ceiling(1000), 30s);  // no overflow for absurd attempt numbers
  EXPECT_EQ(p.ceiling(UINT32_MAX), 30s);
}

TEST(backoff_policy, defaults_are_sane) {
  const backoff_policy p;
  EXPECT_EQ(p.base, 200ms);
  EXPECT_EQ(p.cap, 30s);
  EXPECT_EQ(p.floor, 10ms);
}

TEST(backoff_policy, delay_stays_within_floor_and_ceiling) {
  const backoff_policy p{100ms, 5s, 20ms};
  std::mt19937_64 rng(1234);
  for (unsigned attempt = 0; attempt < 40; ++attempt) {
    const auto hi = std::min<std::int64_t>(
        5000, attempt < 30 ? (std::int64_t{100} << attempt) : std::int64_t{100} << 30);
    std::int64_t lo_seen = INT64_MAX, hi_seen = 0;
    for (int i = 0; i < 2000; ++i) {
      const auto d = p.delay(attempt, rng).count();
      ASSERT_GE(d, 20) << "attempt " << attempt;
      ASSERT_LE(d, hi) << "attempt " << attempt;
      lo_seen = std::min(lo_seen, d);
      hi_seen = std::max(hi_seen, d);
    }
    // Full jitter: the draws really spread over the whole range.
    EXPECT_LT(lo_seen, 20 + (hi - 20) / 10 + 1) << "attempt " << attempt;
    EXPECT_GT(hi_seen, hi - (hi - 20) / 10 - 1) << "attempt " << attempt;
  }
}

TEST(backoff_policy, delay_grows_with_attempts) {
  const backoff_policy p{200ms, 30s, 10ms};
  std::mt19937_64 rng(99);
  auto mean = [&](unsigned attempt) {
    double sum = 0;
    for (int i = 0; i < 4000; ++i) sum += static_cast<double>(p.delay(attempt, rng).count());
    return sum / 4000;
  };
  double previous = mean(0);
  EXPECT_NEAR(previous, (10 + 200) / 2.0, 10);
  // Ceilings 400 .. 25600 ms: the mean about doubles each time.
  for (unsigned attempt = 1; attempt <= 7; ++attempt) {
    const double m = mean(attempt);
    EXPECT_GT(m, previous * 1.7) << "attempt " << attempt;
    previous = m;
  }
  EXPECT_GT(mean(8), previous);  // 30 s: the cap, still more than 25.6 s
  // Past the cap the mean stays put at about (floor + cap) / 2.
  EXPECT_NEAR(mean(20), (10 + 30000) / 2.0, 600);
}

TEST(backoff_policy, floor_above_ceiling_wins) {
  const backoff_policy p{1ms, 5ms, 50ms};
  std::mt19937 rng(3);
  for (unsigned attempt = 0; attempt < 10; ++attempt) {
    for (int i = 0; i < 100; ++i) EXPECT_EQ(p.delay(attempt, rng), 50ms);
  }
}

TEST(token_bucket, burst_then_rate) {
  const auto t0 = clock_type::time_point{} + 1000h;
  token_bucket b(10, 5, t0);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(b.try_take(t0), clock_type::duration::zero()) << i;
  const auto wait = b.try_take(t0);
  EXPECT_GE(wait, 99ms);
  EXPECT_LE(wait, 101ms);

  // Over the next simulated second, polled every millisecond: exactly 10 more.
  int taken = 0;
  for (int ms = 1; ms <= 1000; ++ms) {
    if (b.try_take(t0 + std::chrono::milliseconds(ms)) == clock_type::duration::zero()) ++taken;
  }
  EXPECT_EQ(taken, 10);
}

TEST(token_bucket, exact_count_over_a_second_at_many_rates) {
  // Polling finely must never grant more than rate * elapsed (+ burst): a zero wait means a
  // token was taken, and floating-point remainders must not turn into free tokens.
  for (const double rate : {1.0, 3.0, 7.0, 10.0, 20.0, 33.0, 100.0, 250.0}) {
    for (const auto step : {1ms, 3ms, 7ms}) {
      const auto t0 = clock_type::time_point{} + 1h;
      token_bucket b(rate, 1, t0);
      ASSERT_EQ(b.try_take(t0), clock_type::duration::zero());
      int taken = 0;
      auto now = t0;
      while (now < t0 + 10s) {
        now += step;
        if (b.try_take(now) == clock_type::duration::zero()) ++taken;
      }
      const double elapsed = std::chrono::duration<double>(now - t0).count();
      EXPECT_LE(taken, static_cast<int>(rate * elapsed + 1e-9))
          << rate << "/s step " << step.count();
      // ... and never much fewer (a poll at most one step late per token).
      const double per_token = std::max(1.0 / rate, std::chrono::duration<double>(step).count());
      EXPECT_GE(taken, static_cast<int>(
                           elapsed / (1.0 / rate + std::chrono::duration<double>(step).count())) -
                           1)
          << rate << "/s step " << step.count() << " per token " << per_token;
    }
  }
}

TEST(token_bucket, sleeping_the_returned_wait_is_enough) {
  // A caller that sleeps exactly what try_take says gets `rate` tokens per second, and never
  // a zero wait without a token.
  for (const double rate : {1.0, 3.0, 10.0, 7.5, 1000.0}) {
    const auto t0 = clock_type::time_point{} + 1h;
    token_bucket b(rate, 1, t0);
    auto now = t0;
    int taken = 0;
    int retries = 0;
    while (taken < 50) {
      const auto w = b.try_take(now);
      if (w == clock_type::duration::zero()) {
        ++taken;
      } else {
        ASSERT_GT(w, clock_type::duration::zero());
        now += w;
        ++retries;
      }
    }
    // 1 from the burst, then 49 at the rate.
    const double elapsed = std::chrono::duration<double>(now - t0).count();
    EXPECT_NEAR(elapsed, 49 / rate, 1e-6) << rate;
    EXPECT_LE(retries, 49 * 2) << rate;  // at most one extra nanosecond-retry per token
  }
}

TEST(token_bucket, stores_at_most_burst) {
  const auto t0 = clock_type::time_point{} + 1h;
  token_bucket b(10, 3, t0);
  for (int i = 0; i < 3; ++i) ASSERT_EQ(b.try_take(t0), clock_type::duration::zero());
  const auto later = t0 + 1h;  // idle for an hour
  for (int i = 0; i < 3; ++i) EXPECT_EQ(b.try_take(later), clock_type::duration::zero()) << i;
  EXPECT_GT(b.try_take(later), clock_type::duration::zero());
}

TEST(token_bucket, burst_below_one_still_allows_one) {
  const auto t0 = clock_type::time_point{} + 1h;
  token_bucket b(10, 0, t0);
  EXPECT_EQ(b.try_take(t0), clock_type::duration::zero());
  EXPECT_GT(b.try_take(t0), clock_type::duration::zero());
}

TEST(token_bucket, time_going_backwards_adds_nothing) {
  const auto t0 = clock_type::time_point{} + 1h;
  token_bucket b(10, 1, t0);
  ASSERT_EQ(b.try_take(t0), clock_type::duration::zero());
  EXPECT_GT(b.try_take(t0 - 10s), clock_type::duration::zero());
  EXPECT_GT(b.try_take(t0 + 99ms), clock_type::duration::zero());
  EXPECT_EQ(b.try_take(t0 + 200ms), clock_type::duration::zero());
}

TEST(token_bucket, pause_until) {
  const auto t0 = clock_type::time_point{} + 1h;
  token_bucket b(10, 5, t0);
  b.pause_until(t0 + 2s);
  // Nothing while paused, full burst stored or not, and the wait covers the pause.
  const auto w = b.try_take(t0);
  EXPECT_GE(w, 2s) << std::chrono::duration<double>(w).count();
  EXPECT_LE(w, 2s + 101ms);
  EXPECT_GT(b.try_take(t0 + 1s), clock_type::duration::zero());
  EXPECT_GE(b.try_take(t0 + 1s), 1s);
  EXPECT_GT(b.try_take(t0 + 2s), clock_type::duration::zero());
  // After the pause, tokens come back at the rate, starting from empty.
  EXPECT_EQ(b.try_take(t0 + 2s + 100ms), clock_type::duration::zero());
  EXPECT_GT(b.try_take(t0 + 2s + 100ms), clock_type::duration::zero());
  EXPECT_EQ(b.try_take(t0 + 2s + 300ms), clock_type::duration::zero());
  EXPECT_EQ(b.try_take(t0 + 2s + 300ms), clock_type::duration::zero());
  EXPECT_GT(b.try_take(t0 + 2s + 300ms), clock_type::duration::zero());
}

TEST(token_bucket, pause_in_the_past_does_not_rewind_time) {
  const auto t0 = clock_type::time_point{} + 1h;
  token_bucket b(10, 5, t0);
  ASSERT_EQ(b.try_take(t0 + 1s), clock_type::duration::zero());
  b.pause_until(t0);  // already over: empties the bucket but refills from now on
  EXPECT_GT(b.try_take(t0 + 1s), clock_type::duration::zero());
  EXPECT_EQ(b.try_take(t0 + 1s + 100ms), clock_type::duration::zero());
}

TEST(token_bucket, set_rate) {
  const auto t0 = clock_type::time_point{} + 1h;
  token_bucket b(100, 50, t0);
  EXPECT_EQ(b.rate(), 100);
  b.set_rate(2, 1);  // fewer tokens kept than the old burst
  EXPECT_EQ(b.rate(), 2);
  EXPECT_EQ(b.try_take(t0), clock_type::duration::zero());
  const auto w = b.try_take(t0);
  EXPECT_GE(w, 499ms);
  EXPECT_LE(w, 501ms);
  // Two per second from now on.
  int taken = 0;
  for (int ms = 1; ms <= 1000; ++ms) {
    if (b.try_take(t0 + std::chrono::milliseconds(ms)) == clock_type::duration::zero()) ++taken;
  }
  EXPECT_EQ(taken, 2);
  // Raising the rate takes effect at once, and the burst may grow again.
  b.set_rate(50, 10);
  int burst = 0;
  const auto t1 = t0 + 1s + 10s;  // long enough to fill the new burst
  while (b.try_take(t1) == clock_type::duration::zero()) ++burst;
  EXPECT_EQ(burst, 10);
}

}  // namespace
}  // namespace cloudbrain
