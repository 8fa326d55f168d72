#include "core/token_rate_limiter.hpp"

#include <algorithm>
#include <cmath>
#include <mutex>

namespace cloudbrain {

token_rate_limiter::token_rate_limiter(double per_second, unsigned burst, clock now,
                                       metrics::counter* refused)
    : interval_ns_(std::max<std::int64_t>(1, std::llround(1e9 / per_second))),
      tolerance_ns_(interval_ns_ * static_cast<std::int64_t>(std::max(burst, 1u) - 1)),
      now_(std::move(now)),
      refused_(refused) {}

std::int64_t token_rate_limiter::now_ns() const {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(now_().time_since_epoch()).count();
}

token_rate_limiter::decision token_rate_limiter::take(cell& c, std::int64_t now) const {
  std::int64_t full_at = c.full_at.load(std::memory_order_relaxed);
  for (;;) {
    const std::int64_t from = std::max(full_at, now);
    const std::int64_t ahead = from - now;
    if (ahead > tolerance_ns_) {
      // The next request fits once `ahead` is down to the tolerance again.
      const std::int64_t wait = ahead - tolerance_ns_;
      const auto seconds = std::max<std::int64_t>(1, (wait + 999'999'999) / 1'000'000'000);
      return decision{false, std::chrono::seconds(seconds)};
    }
    if (c.full_at.compare_exchange_weak(full_at, from + interval_ns_, std::memory_order_relaxed)) {
      return decision{};
    }
  }
}

token_rate_limiter::decision token_rate_limiter::admit(std::int64_t token_id) {
  const std::int64_t now = now_ns();
  auto& s = shards_[static_cast<std::uint64_t>(token_id) % shard_count];
  decision d;
  bool found = false;
  {
    const std::shared_lock lock(s.mutex);
    if (const auto it = s.cells.find(token_id); it != s.cells.end()) {
      d = take(*it->second, now);
      found = true;
    }
  }
  if (!found) {
    const std::unique_lock lock(s.mutex);
    auto [it, added] = s.cells.try_emplace(token_id);
    if (added) it->second = std::make_unique<cell>(now);
    d = take(*it->second, now);
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
