#pragma once

#include "actors/cluster_rate_limiter.hpp"
#include "actors/instance_store.hpp"
#include "actors/reservation_store.hpp"
#include "core/actor.hpp"
#include "core/backoff.hpp"
#include "core/config.hpp"
#include "providers/driver.hpp"

#include <boost/json/object.hpp>

#include <atomic>
#include <functional>
#include <map>
#include <random>
#include <variant>

namespace cloudbrain {

struct provider_status {
  std::string name;
  std::string type;
  std::vector<std::string> zones;
  std::string state;  // ok | degraded | open | disconnected
  std::size_t jobs_in_flight = 0;
  double rate_limit = 0;
  std::size_t max_in_flight = 0;
  std::string last_error;
  std::uint64_t calls = 0;
  std::uint64_t rate_limit_waits = 0;
  boost::json::object details;  // the driver's own figures (the fake's VM count, ...)
  boost::json::object reconciler;
  boost::json::object janitor;
  boost::json::object pacing;  // the cluster-wide rate limit, as this node sees it
};

struct run_job {
  job j;
};
struct provider_status_query {
  reply_to<provider_status> reply;
};
// For the reconciler, run on the provider's strand where the driver lives.
struct list_vms {
  reply_to<std::vector<providers::vm>> reply;
};
struct probe_vm {
  providers::vm_ref ref;
  reply_to<providers::vm> reply;
};
struct delete_vm {
  providers::vm_ref ref;
  std::string idempotency_key;
  reply_to<bool> reply;
};
// For the reservation janitor.
struct list_cloud_reservations {
  reply_to<std::vector<providers::cloud_reservation>> reply;
};
struct release_cloud_reservation {
  providers::reservation_ref ref;
  std::string idempotency_key;
  reply_to<bool> reply;
};
using provider_message = std::variant<run_job, provider_status_query, list_vms, probe_vm, delete_vm,
                                      list_cloud_reservations, release_cloud_reservation>;

// What the provider's reconciler has done, for GET /providers. Written by the reconciler,
// read by anyone.
struct reconcile_stats {
  std::atomic<std::uint64_t> passes{0};
  std::atomic<std::uint64_t> orphans_deleted{0};
  std::atomic<std::uint64_t> vanished{0};
  std::atomic<std::int64_t> stuck_deletes{0};
  std::atomic<bool> frozen{false};
};

// What the provider's reservation janitor has done, for GET /providers and /metrics.
struct janitor_stats {
  std::atomic<std::uint64_t> passes{0};
  std::atomic<std::uint64_t> expired{0};
  std::atomic<std::uint64_t> unused{0};
  std::atomic<std::uint64_t> orphans_cancelled{0};
  std::atomic<bool> frozen{false};
};

// One per configured provider: owns the driver and runs jobs against it, at most
// `max-in-flight` at once across the cluster (the scheduler never claims more) and no more than
// `rate-limit` cloud calls per second across the cluster (cluster_rate_limiter), whatever the
// burst of API requests.
class provider_actor : public actor<provider_actor, provider_message> {
 public:
  using completion = std::function<void(job, job_outcome)>;

  provider_actor(boost::asio::any_io_executor ex, provider_section section,
                 std::unique_ptr<providers::driver> driver, instance_store& store,
                 reservation_store& reservations, std::string deployment, completion done);

  void handle(provider_message&& m);
  void on_restart() {}

  [[nodiscard]] const provider_section& section() const { return section_; }
  [[nodiscard]] providers::driver& driver() { return *driver_; }
  boost::asio::awaitable<result<provider_status>> status(deadline dl);
  [[nodiscard]] reconcile_stats& reconciliation() { return reconcile_stats_; }
  [[nodiscard]] janitor_stats& janitoring() { return janitor_stats_; }
  // For /metrics, from any thread.
  [[nodiscard]] std::string_view circuit_state() const;  // ok | degraded | open | disconnected
  // How many jobs it can run at once now: max-in-flight, or less while its driver says so
  // (0 while an out-of-tree driver is away). From any thread.
  [[nodiscard]] std::size_t capacity() const;
  [[nodiscard]] std::uint64_t rate_limit_waits() const { return rate_limit_waits_.load(); }
  [[nodiscard]] const rate_limiter_stats& pacing() const { return pacer_.stats(); }

 private:
  boost::asio::awaitable<void> run(job j);
  boost::asio::awaitable<job_outcome> create_instance(job& j);
  boost::asio::awaitable<job_outcome> delete_instance(job& j);
  boost::asio::awaitable<job_outcome> wait_until_running(job& j, providers::vm v);
  // Capacity reservations (provider_reservations.cpp).
  boost::asio::awaitable<job_outcome> reserve(job& j);
  boost::asio::awaitable<job_outcome> activate(job& j, const providers::cloud_reservation& held);
  boost::asio::awaitable<job_outcome> release_reservation(job& j);
  [[nodiscard]] providers::reservation_spec reservation_spec_for(const job& j,
                                                                 const std::string& zone) const;

  // Waits for the rate limit; every cloud call goes through here.
  boost::asio::awaitable<void> pace();
  // Turns a failed step into what the scheduler should do with the job.
  job_outcome outcome_of(const error& e, const job& j);
  void note_success();
  void note_failure(const error& e);
  [[nodiscard]] std::vector<std::string> zones_to_try(const job& j) const;
  [[nodiscard]] static std::string avoidance_key(const std::string& zone,
                                                 const std::string& instance_type);
  [[nodiscard]] providers::instance_spec spec_for(const job& j, const std::string& zone) const;

  boost::asio::awaitable<void> run_list(reply_to<std::vector<providers::vm>> reply);
  boost::asio::awaitable<void> run_probe(providers::vm_ref ref, reply_to<providers::vm> reply);
  boost::asio::awaitable<void> run_delete(providers::vm_ref ref, std::string key,
                                          reply_to<bool> reply);
  boost::asio::awaitable<void> run_list_reservations(
      reply_to<std::vector<providers::cloud_reservation>> reply);
  boost::asio::awaitable<void> run_release_reservation(providers::reservation_ref ref,
                                                       std::string key, reply_to<bool> reply);

  provider_section section_;
  reconcile_stats reconcile_stats_;
  janitor_stats janitor_stats_;
  std::unique_ptr<providers::driver> driver_;
  instance_store& store_;
  reservation_store& reservations_;
  std::string deployment_;
  completion done_;
  cluster_rate_limiter pacer_;
  backoff_policy retry_policy_{std::chrono::milliseconds(500), std::chrono::milliseconds(30'000)};
  std::mt19937_64 rng_{std::random_device{}()};
  // Zone and instance type pairs that ran out of capacity, tried last until then.
  std::map<std::string, steady_clock::time_point> avoid_until_;
  std::size_t jobs_in_flight_ = 0;
  // Written on the strand; atomic so that /metrics can read them from any thread.
  std::atomic<unsigned> consecutive_failures_{0};
  std::atomic<steady_clock::time_point> open_until_{};
  std::string last_error_;
  std::atomic<std::uint64_t> calls_{0};
  std::atomic<std::uint64_t> rate_limit_waits_{0};
  static constexpr std::chrono::minutes zone_avoidance{3};
  static constexpr std::chrono::seconds call_timeout{120};
  static constexpr std::chrono::minutes list_timeout{5};
  static constexpr std::chrono::minutes boot_timeout{10};
};

}  // namespace cloudbrain
