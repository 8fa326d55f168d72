#include "core/token_rate_limiter.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <mutex>

namespace cloudbrain {

token_rate_limiter::token_rate_limiter(double per_second, unsigned burst, clock now,
                                       metrics::counter* refused)
    : now_(std::move(now)), refused_(refused) {
  set_rate(per_second, burst);
}

void token_rate_limiter::set_rate(double per_second, unsigned burst) {
  // One request a nanosecond at most, and one in 1e9 seconds at least (a slower rate counts as
  // that); no rate (0 or less): no limit.
  const std::int64_t interval =
      per_second > 0 && std::isfinite(per_second)
          ? std::clamp<std::int64_t>(std::llround(1e9 / std::max(per_second, 1e-9)), 1,
                                     std::int64_t{1'000'000'000} * 1'000'000'000)
          : 0;
  // Saturating: a rate far below one a second with a large burst is tolerance enough.
  const std::int64_t more = static_cast<std::int64_t>(std::max(burst, 1u) - 1);
  constexpr std::int64_t most = std::numeric_limits<std::int64_t>::max() / 4;
  tolerance_ns_.store(more != 0 && interval > most / more ? most : interval * more,
                      std::memory_order_relaxed);
  interval_ns_.store(interval, std::memory_order_relaxed);
}

unsigned token_rate_limiter::burst_for(double per_second, unsigned burst) {
  if (burst != 0) return burst;
  return static_cast<unsigned>(std::clamp(std::ceil(per_second), 1.0, 4'294'967'295.0));
}

std::int64_t token_rate_limiter::now_ns() const {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(now_().time_since_epoch()).count();
}

token_rate_limiter::decision token_rate_limiter::take(cell& c, std::int64_t now,
                                                      std::int64_t interval) const {
  const std::int64_t tolerance = tolerance_ns_.load(std::memory_order_relaxed);
  std::int64_t full_at = c.full_at.load(std::memory_order_relaxed);
  for (;;) {
    const std::int64_t from = std::max(full_at, now);
    const std::int64_t ahead = from - now;
    if (ahead > tolerance) {
      // The next request fits once `ahead` is down to the tolerance again.
      const std::int64_t wait = ahead - tolerance;
      const auto seconds = std::max<std::int64_t>(1, (wait + 999'999'999) / 1'000'000'000);
      return decision{false, std::chrono::seconds(seconds)};
    }
    if (c.full_at.compare_exchange_weak(full_at, from + interval, std::memory_order_relaxed)) {
      return decision{};
    }
  }
}

token_rate_limiter::decision token_rate_limiter::admit(std::int64_t token_id) {
  const std::int64_t interval = interval_ns_.load(std::memory_order_relaxed);
  if (interval == 0) return decision{};
  const std::int64_t now = now_ns();
  auto& s = shards_[static_cast<std::uint64_t>(token_id) % shard_count];
  decision d;
  bool found = false;
  {
    const std::shared_lock lock(s.mutex);
    if (const auto it = s.cells.find(token_id); it != s.cells.end()) {
      d = take(*it->second, now, interval);
      found = true;
    }
  }
  if (!found) {
    const std::unique_lock lock(s.mutex);
    auto [it, added] = s.cells.try_emplace(token_id);
    if (added) it->second = std::make_unique<cell>(now);
    d = take(*it->second, now, interval);
    if (added && s.cells.size() >= s.sweep_at) {
      // Entries whose bucket is full again are as good as absent.
      std::erase_if(s.cells, [now, token_id](const auto& entry) {
        return entry.first != token_id &&
               entry.second->full_at.load(std::memory_order_relaxed) <= now;
      });
      s.sweep_at = std::max(min_sweep, s.cells.size() * 2);
    }
  }
  if (!d.allowed) {
    refusals_.fetch_add(1, std::memory_order_relaxed);
    if (refused_ != nullptr) refused_->inc();
  }
  return d;
}

std::size_t token_rate_limiter::tracked() const {
  std::size_t n = 0;
  for (const auto& s : shards_) {
    const std::shared_lock lock(s.mutex);
    n += s.cells.size();
  }
  return n;
}

}  // namespace cloudbrain
