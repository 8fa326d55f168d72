#pragma once

#include "actors/cluster_node.hpp"
#include "actors/cluster_store.hpp"
#include "actors/health.hpp"
#include "actors/provider_actor.hpp"
#include "actors/reservation_set_reconciler.hpp"
#include "actors/scheduler.hpp"
#include "core/blocking_pool.hpp"
#include "core/metrics.hpp"
#include "core/pg/pool.hpp"
#include "net/router.hpp"
#include "providers/metered_driver.hpp"

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

namespace cloudbrain {

struct batch_counters;

// What the process itself uses, from /proc/self (read on the blocking pool).
struct process_figures {
  bool ok = false;
  double cpu_seconds = 0;
  double resident_bytes = 0;
  double virtual_bytes = 0;
  double open_fds = 0;
  double max_fds = 0;
  double start_time_seconds = 0;  // since the Unix epoch
};
[[nodiscard]] process_figures read_process_figures();

// Every metric of the service, in one registry, and GET /metrics. Figures that live elsewhere
// (an actor's atomics, the pool's gauges) are copied in at scrape time; figures that live in
// PostgreSQL (instances and reservations by state, the job queue) are read with one pipelined
// round trip at scrape time, at most every `database_refresh` and never by two scrapes at once.
class service_metrics {
 public:
  static constexpr std::chrono::seconds database_refresh{2};

  // `currency` names the unit of the spend figures (the configuration's `currency`; empty: none),
  // `spend_ceiling` is spend-ceiling-per-hour (decimal text; empty: not set).
  service_metrics(std::string_view version, blocking_pool& blocking, const health& status,
                  std::string_view currency = {}, std::string_view spend_ceiling = {});
  service_metrics(const service_metrics&) = delete;
  service_metrics& operator=(const service_metrics&) = delete;

  [[nodiscard]] metrics::registry& registry() { return registry_; }

  // The routes whose names become route templates in the HTTP metrics; call before serving.
  void learn_routes(const net::router& r);
  // The server's per-response hook (net::server_config::on_request_done).
  void request_done(std::string_view method, std::string_view route, unsigned status,
                    std::chrono::nanoseconds took);

  [[nodiscard]] providers::cloud_call_metrics cloud_calls();
  [[nodiscard]] metrics::histogram* db_query_seconds() { return &db_query_seconds_; }
  [[nodiscard]] scheduler_metrics for_scheduler();

  // What to report on. The pool before serving; its own config should carry
  // db_query_seconds(). Providers at any time (a reload adds them), from any thread.
  void watch(pg::pool& pool);
  void watch(provider_actor& p);
  void watch(const set_reconcile_stats& sets);
  // A batch queue (group commit), under `queue` in the label of the same name; it must outlive
  // this object's scrapes.
  void watch(std::string queue, const batch_counters& counters);
  // This node in its cluster, and the roles it may hold (of every provider, a reload's too).
  void watch(const cluster_node& node, const cluster_store& cluster);
  // `roles` lists them (provider_set::roles), from any thread.
  void watch_roles(std::function<std::vector<const leadership*>()> roles);

  // The outcome of reading the configuration again (SIGHUP).
  void config_reloaded(bool ok);

  // The handler of GET /metrics.
  [[nodiscard]] net::handler handler();

 private:
  boost::asio::awaitable<void> refresh_database();
  void collect();

  pg::pool* pool_ = nullptr;
  blocking_pool& blocking_;
  const health& health_;
  metrics::registry registry_;
  std::map<std::string, std::string, std::less<>> route_templates_;  // route name -> pattern
  [[nodiscard]] std::vector<provider_actor*> watched() const;

  mutable std::mutex providers_mutex_;
  std::vector<provider_actor*> providers_;  // guarded by providers_mutex_
  std::atomic<bool> refreshing_{false};
  std::atomic<steady_clock::rep> refreshed_at_{0};  // steady_clock ticks of the last attempt
  std::atomic<bool> database_ok_{false};

  // HTTP
  metrics::family<metrics::counter>& http_requests_;
  metrics::family<metrics::histogram>& http_seconds_;
  // Cloud calls and providers
  metrics::family<metrics::counter>& cloud_calls_;
  metrics::family<metrics::histogram>& cloud_seconds_;
  metrics::family<metrics::counter>& rate_limit_waits_;
  metrics::family<metrics::gauge>& circuit_;
  metrics::family<metrics::counter>& orphans_;
  metrics::family<metrics::counter>& vanished_;
  metrics::family<metrics::gauge>& stuck_deletes_;
  metrics::family<metrics::counter>& janitor_cancelled_;
  metrics::family<metrics::gauge>& frozen_;
  // Jobs
  metrics::family<metrics::counter>& job_outcomes_;
  metrics::family<metrics::counter>& jobs_claimed_;
  metrics::family<metrics::gauge>& jobs_running_;
  metrics::family<metrics::gauge>& jobs_queued_;
  metrics::family<metrics::gauge>& jobs_delayed_;
  metrics::family<metrics::gauge>& queue_lag_;
  // State in PostgreSQL
  metrics::family<metrics::gauge>& instances_;
  metrics::family<metrics::gauge>& reservations_;
  metrics::family<metrics::gauge>& reservations_past_end_;
  metrics::family<metrics::gauge>& reserved_unused_;
  metrics::family<metrics::gauge>& spend_per_hour_;
  metrics::family<metrics::gauge>& spend_ceiling_;
  metrics::counter& refresh_errors_;
  // Database pool
  metrics::family<metrics::gauge>& db_connections_;
  metrics::gauge& db_waiting_;
  metrics::gauge& db_max_connections_;
  metrics::counter& db_queries_;
  metrics::counter& db_errors_;
  metrics::counter& db_timeouts_;
  metrics::histogram& db_query_seconds_;
  // The process
  metrics::gauge& ready_;
  metrics::gauge& readiness_warnings_;
  metrics::counter& cpu_seconds_;
  metrics::gauge& resident_bytes_;
  metrics::gauge& virtual_bytes_;
  metrics::gauge& open_fds_;
  metrics::gauge& max_fds_;
  metrics::gauge& start_time_;
  // The cluster
  metrics::gauge& session_up_;
  metrics::counter& heartbeat_failures_;
  metrics::counter& revocations_heard_;
  metrics::family<metrics::gauge>& leading_;
  metrics::family<metrics::gauge>& leader_;
  metrics::family<metrics::gauge>& cluster_nodes_;
  metrics::family<metrics::counter>& call_slots_;
  metrics::family<metrics::counter>& call_slots_late_;
  const cluster_node* node_ = nullptr;
  const cluster_store* cluster_ = nullptr;
  std::function<std::vector<const leadership*>()> roles_;
  std::set<std::tuple<std::string, std::string, std::string>> leader_series_;  // refresh only
  // Batch queues
  metrics::family<metrics::counter>& batches_;
  metrics::family<metrics::counter>& batch_items_;
  metrics::family<metrics::counter>& batch_refused_;
  metrics::family<metrics::counter>& batch_expired_;
  metrics::family<metrics::gauge>& batch_waiting_;
  metrics::family<metrics::histogram>& batch_sizes_;
  std::vector<std::pair<std::string, const batch_counters*>> queues_;  // guarded by queues_mutex_
  mutable std::mutex queues_mutex_;
  // Reservation sets
  metrics::counter& set_passes_;
  metrics::counter& set_pass_failures_;
  metrics::counter& set_moves_;
  const set_reconcile_stats* set_stats_ = nullptr;
  // Configuration reloads
  metrics::family<metrics::counter>& config_reloads_;
  metrics::gauge& config_reload_ok_;
  metrics::gauge& config_reload_time_;
};

}  // namespace cloudbrain
