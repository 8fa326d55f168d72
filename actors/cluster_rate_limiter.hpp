#pragma once

#include "core/pg/pool.hpp"
#include "core/time.hpp"

#include <boost/asio/awaitable.hpp>
#include <boost/asio/steady_timer.hpp>

#include <atomic>
#include <deque>
#include <optional>
#include <random>
#include <string>

namespace cloudbrain {

// What a call pacer has done, for /metrics and GET /providers; read from any thread.
struct rate_limiter_stats {
  std::atomic<std::uint64_t> slots{0};        // calls let through
  std::atomic<std::uint64_t> late{0};         // slots given up: not used in time
  std::atomic<std::uint64_t> refusals{0};     // asked too far ahead: wait and ask again
  std::atomic<std::uint64_t> db_failures{0};  // asking for slots failed
};

// A provider's rate limit for the whole cluster. Every node takes its calls' slots from the
// provider's row of provider_pacing (take_call_slots, schema/deploy/cluster.sql): slots that
// follow each other 1/rate seconds apart whichever node takes them, a few at a time (at most a
// quarter second's worth), and none further than a second ahead. A call goes no earlier than
// its slot, and no later than `lateness` after it, or the slot is given up; so the calls that
// leave all nodes together in any one second are at most rate + rate * lateness + 1, and the
// cloud, which sees them after a network delay that varies by up to `transit` more, at most
// rate + rate * (lateness + transit) + 1 (window_bound()). When the database cannot be asked,
// no call goes. One per provider, on the provider actor's strand: take() and pause() are called
// there only.
class cluster_rate_limiter {
 public:
  static constexpr std::chrono::milliseconds lateness{50};
  static constexpr std::chrono::milliseconds transit{50};
  static constexpr std::chrono::milliseconds horizon{1000};

  // `strand`: the provider actor's, where take() and pause() are called.
  cluster_rate_limiter(boost::asio::any_io_executor strand, pg::pool& pool, std::string provider,
                       double rate);

  // Returns when this node may make one call to the provider.
  boost::asio::awaitable<void> take();
  // The cloud said "slow down" for `d`: no node makes a call before that.
  void pause(steady_clock::duration d);

  [[nodiscard]] const rate_limiter_stats& stats() const { return stats_; }
  // The most calls any one-second window at the cloud may see, as documented:
  // rate + rate * (lateness + transit) + 1.
  [[nodiscard]] std::int64_t window_bound() const;

 private:
  struct slot {
    steady_clock::time_point earliest;  // not before: no earlier than its place in the cluster
    steady_clock::time_point latest;    // not after: or it crowds the slots after it
  };
  struct waiter {
    explicit waiter(const boost::asio::any_io_executor& ex) : timer(ex) {}
    boost::asio::steady_timer timer;
    std::optional<slot> given;
  };

  boost::asio::awaitable<void> supply();
  void hand_out(slot s);

  boost::asio::any_io_executor strand_;
  pg::pool& pool_;
  std::string provider_;
  double rate_;
  double spacing_;             // seconds between two slots
  int batch_;                  // slots asked for at once, at most
  std::deque<waiter*> queue_;  // callers waiting for a slot, in order
  std::deque<slot> spare_;     // slots that came when nobody was waiting
  bool supplying_ = false;
  steady_clock::time_point paused_until_{};
  rate_limiter_stats stats_;
  std::mt19937_64 rng_{std::random_device{}()};
};

}  // namespace cloudbrain
