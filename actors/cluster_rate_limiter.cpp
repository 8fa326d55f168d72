#include "actors/cluster_rate_limiter.hpp"

#include "core/backoff.hpp"
#include "core/log.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <algorithm>
#include <charconv>
#include <cmath>

namespace cloudbrain {
namespace asio = boost::asio;

namespace {

constexpr const char* take_sql =
    "SELECT granted, first_in, retry_in FROM take_call_slots($1, $2::int, $3::float8, $4::float8)";
constexpr const char* pause_sql = "SELECT pause_calls($1, $2::float8)";

double number(std::string_view s) {
  double v = 0;
  std::from_chars(s.data(), s.data() + s.size(), v);
  return v;
}

std::string seconds(double s) {
  char buf[32];
  const auto end = std::to_chars(buf, buf + sizeof buf, s).ptr;
  return std::string(buf, end);
}

steady_clock::duration of_seconds(double s) {
  return std::chrono::duration_cast<steady_clock::duration>(std::chrono::duration<double>(s));
}

}  // namespace

cluster_rate_limiter::cluster_rate_limiter(asio::any_io_executor strand, pg::pool& pool,
                                           std::string provider, double rate)
    : strand_(std::move(strand)),
      pool_(pool),
      provider_(std::move(provider)),
      rate_(rate),
      spacing_(1.0 / rate),
      batch_(std::max(1, static_cast<int>(std::ceil(rate / 4)))) {}

std::int64_t cluster_rate_limiter::window_bound() const {
  const double spread_s = std::chrono::duration<double>(lateness + transit).count();
  return static_cast<std::int64_t>(std::floor(rate_ + rate_ * spread_s)) + 1;
}

void cluster_rate_limiter::pause(steady_clock::duration d) {
  const auto until = steady_clock::now() + d;
  if (until <= paused_until_) return;
  paused_until_ = until;
  spare_.clear();
  // Every other node too: the cloud counts the calls of all of them.
  const double s = std::chrono::duration<double>(d).count();
  asio::co_spawn(
      strand_,
      [this, s]() -> asio::awaitable<void> {
        const std::vector<pg::param> args{provider_, seconds(s)};
        auto r = co_await pool_.query(pause_sql, args, after(std::chrono::seconds(2)));
        if (!r) {
          log::warn("telling the other nodes to pause the provider failed",
                    {{"provider", provider_}, {"error", r.error().message()}});
        }
      },
      asio::detached);
}

void cluster_rate_limiter::hand_out(slot s) {
  if (queue_.empty()) {
    spare_.push_back(s);
    return;
  }
  waiter* w = queue_.front();
  queue_.pop_front();
  w->given = s;
  w->timer.cancel();
}

asio::awaitable<void> cluster_rate_limiter::take() {
  for (;;) {
    std::optional<slot> s;
    while (!spare_.empty() && !s) {
      if (spare_.front().latest >= steady_clock::now()) {
        s = spare_.front();
      } else {
        stats_.late.fetch_add(1, std::memory_order_relaxed);
      }
      spare_.pop_front();
    }
    if (!s) {
      waiter w(strand_);
      queue_.push_back(&w);
      if (!supplying_) {
        supplying_ = true;
        asio::co_spawn(strand_, supply(), [this](std::exception_ptr e) {
          supplying_ = false;
          if (!e) return;
          log::error("pacing a provider's calls failed", {{"provider", provider_}});
          // Those waiting start another supply.
          for (waiter* q : queue_) q->timer.cancel();
          queue_.clear();
        });
      }
      // Woken when a slot is handed over; the deadline only guards against a lost wake-up.
      w.timer.expires_after(std::chrono::seconds(30));
      (void)co_await w.timer.async_wait(asio::as_tuple(asio::use_awaitable));
      if (!w.given) {
        std::erase(queue_, &w);
        continue;
      }
      s = w.given;
    }
    if (const auto now = steady_clock::now(); s->earliest > now) {
      co_await sleep_for(s->earliest - now);
    }
    const auto now = steady_clock::now();
    if (now <= s->latest && now >= paused_until_) {
      stats_.slots.fetch_add(1, std::memory_order_relaxed);
      co_return;
    }
    stats_.late.fetch_add(1, std::memory_order_relaxed);
  }
}

asio::awaitable<void> cluster_rate_limiter::supply() {
  backoff_policy policy{std::chrono::milliseconds(100), std::chrono::milliseconds(2000)};
  unsigned failures = 0;
  while (!queue_.empty()) {
    if (const auto now = steady_clock::now(); paused_until_ > now) {
      co_await sleep_for(paused_until_ - now);
      continue;
    }
    const int wanted = std::min<int>(static_cast<int>(queue_.size()), batch_);
    const std::vector<pg::param> args{provider_, std::to_string(wanted), seconds(spacing_),
                                      seconds(std::chrono::duration<double>(horizon).count())};
    const auto sent = steady_clock::now();
    auto r = co_await pool_.query(take_sql, args, sent + std::chrono::seconds(2));
    const auto received = steady_clock::now();
    if (!r || r->size() != 1) {
      stats_.db_failures.fetch_add(1, std::memory_order_relaxed);
      if (failures == 0) {
        log::warn("no call slots: the provider's calls wait for the database",
                  {{"provider", provider_},
                   {"error", r ? std::string("no answer") : r.error().message()}});
      }
      co_await sleep_for(policy.delay(failures++, rng_));
      continue;
    }
    failures = 0;
    const int granted = static_cast<int>(number(r->text(0, 0)));
    if (granted <= 0) {
      stats_.refusals.fetch_add(1, std::memory_order_relaxed);
      // The other nodes hold the next second: ask again when it has room, spread out.
      const double wait = std::max(0.0, number(r->text(0, 2))) +
                          std::uniform_real_distribution<double>(0, spacing_)(rng_);
      co_await sleep_for(of_seconds(wait));
      continue;
    }
    // first_in counts from the server's clock after the slots were taken. Counted from when the
    // answer arrived, a slot is never early; counted from when the question left, a late one is
    // given up no later than `lateness` after its place.
    const double first_in = number(r->text(0, 1));
    for (int i = 0; i < granted; ++i) {
      const auto offset = of_seconds(first_in + spacing_ * i);
      hand_out(slot{received + offset, sent + offset + lateness});
    }
  }
}

}  // namespace cloudbrain
