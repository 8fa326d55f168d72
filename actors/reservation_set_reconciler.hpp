#pragma once

#include "actors/reservation_set_store.hpp"
#include "core/actor.hpp"

#include <atomic>
#include <optional>
#include <random>
#include <variant>

namespace cloudbrain {

struct set_pass_now {};
using set_reconciler_message = std::variant<set_pass_now>;

// What the set reconciliation has done, for /metrics; read from any thread.
struct set_reconcile_stats {
  std::atomic<std::uint64_t> passes{0};
  std::atomic<std::uint64_t> failures{0};  // passes the database refused
  std::atomic<std::uint64_t> moves{0};
};

// One per process: every `interval` it moves reservation sets on as their members move
// (reservation_set_store::reconcile) and cancels the members of sets that are being cancelled.
// Every process of a deployment runs one; their passes skip the sets another holds, and every
// move is conditional, so they never fight. A pass the database refuses changes nothing and
// the next one tries again: sets wait, nothing is lost.
class reservation_set_reconciler
    : public actor<reservation_set_reconciler, set_reconciler_message> {
 public:
  reservation_set_reconciler(boost::asio::any_io_executor ex, reservation_set_store& store,
                             std::chrono::milliseconds interval);

  void start();
  void handle(set_reconciler_message&& m);
  void on_restart() { running_pass_ = false; }

  [[nodiscard]] const set_reconcile_stats& stats() const { return stats_; }

 private:
  boost::asio::awaitable<void> loop();
  boost::asio::awaitable<void> pass();  // one at a time (running_pass_)
  boost::asio::awaitable<void> reconcile_sets();

  reservation_set_store& store_;
  std::chrono::milliseconds interval_;
  std::optional<std::string> cursor_;  // where the next pass goes on from
  bool running_pass_ = false;
  bool failing_ = false;  // the last pass failed: said once in the log, not every pass
  set_reconcile_stats stats_;
  std::mt19937_64 rng_{std::random_device{}()};
};

}  // namespace cloudbrain
