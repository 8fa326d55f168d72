#pragma once

#include "actors/instance_store.hpp"
#include "actors/provider_actor.hpp"
#include "core/actor.hpp"
#include "core/metrics.hpp"

#include <map>
#include <unordered_map>
#include <variant>

namespace cloudbrain {

struct job_done {
  job j;
  job_outcome outcome;
};
struct jobs_available {};  // a NOTIFY arrived, or a timer fired
using scheduler_message = std::variant<job_done, jobs_available>;

struct scheduler_stats {
  std::atomic<std::uint64_t> claimed{0};
  std::atomic<std::uint64_t> succeeded{0};
  std::atomic<std::uint64_t> retried{0};
  std::atomic<std::uint64_t> failed{0};
  std::atomic<std::int64_t> running{0};
};

// Where the scheduler counts; any may be null.
struct scheduler_metrics {
  metrics::family<metrics::counter>* outcomes = nullptr;  // provider, kind, outcome
  metrics::family<metrics::counter>* claimed = nullptr;   // provider
  metrics::family<metrics::gauge>* running = nullptr;     // provider: jobs this process holds
};

// Hands queued jobs to the provider actors. Jobs are claimed from PostgreSQL with
// FOR UPDATE SKIP LOCKED and a lease that this process renews while it works on them, so
// several processes share one queue and a dead process's jobs come back when its leases end.
// It wakes on NOTIFY, and once a second regardless (delayed retries, expired leases).
class scheduler : public actor<scheduler, scheduler_message> {
 public:
  scheduler(boost::asio::any_io_executor ex, instance_store& store, std::string conninfo,
            std::chrono::milliseconds lease);

  // Before start().
  void add_provider(provider_actor& p);
  // While running (a reload): the provider gets its slot on the scheduler's strand, and jobs.
  void add_provider_live(provider_actor& p);
  void start();
  void handle(scheduler_message&& m);
  void on_restart();

  // Stops claiming, waits for jobs in flight until `dl`, then hands the rest back.
  boost::asio::awaitable<void> drain(deadline dl);

  [[nodiscard]] const scheduler_stats& stats() const { return stats_; }
  // Before start().
  void set_metrics(scheduler_metrics m) { metrics_ = m; }

 private:
  struct slot {
    provider_actor* actor = nullptr;
    std::size_t in_flight = 0;  // at most actor->capacity() when claimed
    bool claiming = false;
    bool again = false;  // more work was signalled while a claim ran
  };

  void claim_more();
  void note_running(const std::string& provider, const slot& s);
  boost::asio::awaitable<void> claim(std::string provider);
  boost::asio::awaitable<void> record(job j, job_outcome o);
  boost::asio::awaitable<void> record_here(job j, job_outcome o);
  boost::asio::awaitable<void> drain_here(deadline dl);
  boost::asio::awaitable<void> listen_loop();
  boost::asio::awaitable<void> tick_loop();
  boost::asio::awaitable<void> renew_loop();

  instance_store& store_;
  std::string conninfo_;
  std::chrono::milliseconds lease_;
  std::map<std::string, slot> slots_;
  std::unordered_map<std::int64_t, std::string> in_flight_;  // job id -> provider
  bool draining_ = false;
  std::size_t records_pending_ = 0;
  scheduler_stats stats_;
  scheduler_metrics metrics_;
};

}  // namespace cloudbrain
