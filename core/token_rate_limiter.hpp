#pragma once

#include "core/metrics.hpp"
#include "core/time.hpp"

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <shared_mutex>
#include <unordered_map>

namespace cloudbrain {

// A request rate per API token (token-rate-limit, token-rate-burst): each token may make
// `burst` requests at once and `per_second` on average. Any thread, no global lock: tokens are
// spread over shards, each with its own lock, held shared to find a token and exclusive only
// to add one; a token's allowance is one atomic number, changed by compare-and-swap.
//
// The allowance is kept as the generic cell rate algorithm's "theoretical arrival time": the
// moment at which the token's bucket would be full again. A request is allowed while that
// moment is no more than (burst - 1) intervals ahead of now, and moves it one interval on. A
// token whose moment has passed holds nothing a fresh one would not, so such entries are
// dropped when a shard grows: memory follows the tokens in use, not every token ever seen.
class token_rate_limiter {
 public:
  using clock = std::function<steady_clock::time_point()>;

  struct decision {
    bool allowed = true;
    // When a refused request may be tried again: whole seconds, at least 1.
    std::chrono::seconds retry_after{0};
  };

  // `refused`, if given, counts every refusal. A rate of 0 (or less) admits everything.
  token_rate_limiter(double per_second, unsigned burst, clock now = steady_clock::now,
                     metrics::counter* refused = nullptr);
  token_rate_limiter(const token_rate_limiter&) = delete;
  token_rate_limiter& operator=(const token_rate_limiter&) = delete;

  [[nodiscard]] decision admit(std::int64_t token_id);

  // A new rate and burst, from the next request on (a reload): 0 (or less) admits everything.
  // What each token has used so far stays counted. Requests that run while it changes may see
  // the new interval with the old burst, or the reverse.
  void set_rate(double per_second, unsigned burst);
  [[nodiscard]] bool enabled() const { return interval_ns_.load(std::memory_order_relaxed) > 0; }

  // The burst token-rate-burst means: as given, or the rate rounded up (at least 1) when 0.
  [[nodiscard]] static unsigned burst_for(double per_second, unsigned burst);

  // Tokens with an entry now (for tests and the curious).
  [[nodiscard]] std::size_t tracked() const;
  [[nodiscard]] std::uint64_t refusals() const { return refusals_.load(); }

 private:
  struct cell {
    explicit cell(std::int64_t at) : full_at(at) {}
    std::atomic<std::int64_t> full_at;  // nanoseconds on the clock
  };
  struct shard {
    mutable std::shared_mutex mutex;
    std::unordered_map<std::int64_t, std::unique_ptr<cell>> cells;
    std::size_t sweep_at = min_sweep;
  };
  static constexpr std::size_t shard_count = 64;
  static constexpr std::size_t min_sweep = 1024;

  [[nodiscard]] decision take(cell& c, std::int64_t now, std::int64_t interval) const;
  [[nodiscard]] std::int64_t now_ns() const;

  std::atomic<std::int64_t> interval_ns_{0};  // 0: no limit
  std::atomic<std::int64_t> tolerance_ns_{0};
  clock now_;
  metrics::counter* refused_;
  std::atomic<std::uint64_t> refusals_{0};
  std::array<shard, shard_count> shards_;
};

}  // namespace cloudbrain
