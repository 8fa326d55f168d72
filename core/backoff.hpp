#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <random>

namespace cloudbrain {

// Exponential backoff with "full jitter": the n-th retry waits a uniformly random time in
// [0, min(cap, base * 2^n)], but never less than `floor`.
struct backoff_policy {
  std::chrono::milliseconds base{200};
  std::chrono::milliseconds cap{30'000};
  std::chrono::milliseconds floor{10};

  [[nodiscard]] std::chrono::milliseconds ceiling(unsigned attempt) const {
    const unsigned shift = std::min(attempt, 30u);
    const std::int64_t grown = base.count() << shift;
    return std::chrono::milliseconds(std::min<std::int64_t>(grown, cap.count()));
  }

  template <class Rng>
  [[nodiscard]] std::chrono::milliseconds delay(unsigned attempt, Rng& rng) const {
    const auto hi = std::max(ceiling(attempt).count(), floor.count());
    std::uniform_int_distribution<std::int64_t> dist(floor.count(), hi);
    return std::chrono::milliseconds(dist(rng));
  }
};

// A token bucket: `rate` tokens per second, at most `burst` stored. Pure arithmetic on the
// times it is given, so tests drive it with any clock.
class token_bucket {
 public:
  using clock = std::chrono::steady_clock;

  token_bucket(double rate_per_second, double burst, clock::time_point now)
      : rate_(rate_per_second), burst_(std::max(1.0, burst)), tokens_(burst_), last_(now) {}

  // Takes one token if there is one (returns zero); otherwise returns how long until there
  // will be, never zero: rounded up, so that a caller sleeping that long is not refused again
  // for want of a rounding error, and a tiny shortfall is not mistaken for a granted token.
  [[nodiscard]] clock::duration try_take(clock::time_point now) {
    refill(now);
    if (tokens_ >= 1.0) {
      tokens_ -= 1.0;
      return clock::duration::zero();
    }
    const double missing = 1.0 - tokens_;
    const auto wait = std::max(
        clock::duration(1),
        std::chrono::ceil<clock::duration>(std::chrono::duration<double>(missing / rate_)));
    // While paused (pause_until), refilling starts only at last_.
    return now < last_ ? (last_ - now) + wait : wait;
  }

  void set_rate(double rate_per_second, double burst) {
    rate_ = rate_per_second;
    burst_ = std::max(1.0, burst);
    tokens_ = std::min(tokens_, burst_);
  }

  // Empties the bucket until `until`: used when the cloud itself says "slow down".
  void pause_until(clock::time_point until) {
    tokens_ = 0;
    last_ = std::max(last_, until);
  }

  [[nodiscard]] double rate() const { return rate_; }

 private:
  void refill(clock::time_point now) {
    if (now <= last_) return;
    const double elapsed = std::chrono::duration<double>(now - last_).count();
    tokens_ = std::min(burst_, tokens_ + elapsed * rate_);
    last_ = now;
  }

  double rate_;
  double burst_;
  double tokens_;
  clock::time_point last_;
};

}  // namespace cloudbrain
