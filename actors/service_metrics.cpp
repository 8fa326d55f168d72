#include "actors/service_metrics.hpp"

#include "core/batch_queue.hpp"
#include "core/log.hpp"
#include "net/problem.hpp"

#include <dirent.h>
#include <unistd.h>

#include <charconv>
#include <fstream>
#include <sstream>

namespace cloudbrain {
namespace asio = boost::asio;
namespace http = net::http;

namespace {

const std::vector<double> http_buckets{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                       0.25,  0.5,    1,     2.5,  5,     10};
const std::vector<double> cloud_buckets{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                        1,     2.5,  5,     10,   30,  60,   120};
// Items in a batch: the powers of two of batch_counters::sizes.
const std::vector<double> batch_size_buckets{1, 2, 4, 8, 16, 32, 64, 128, 256};
static_assert(batch_counters::size_buckets == 10, "one bound per bucket of batch_counters, +Inf");

const std::vector<double> db_buckets{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                     0.1,    0.25,  0.5,    1,     2.5,  5};

// The states counted from PostgreSQL: the live ones. Terminated instances and finished
// reservations only grow; their rates are in the job and cloud call counters.
constexpr std::string_view instance_states[] = {"creating", "starting", "running", "terminating",
                                                "errored"};
constexpr std::string_view reservation_states[] = {"pending", "active", "cancelling"};
constexpr std::string_view circuit_states[] = {"ok", "degraded", "open", "disconnected"};

// One round trip for all three: the pipeline sends them together.
constexpr const char* instances_sql =
    "SELECT provider, state::text, count(*) FROM instances "
    "WHERE state IN ('creating', 'starting', 'running', 'terminating', 'errored') "
    "GROUP BY 1, 2";
constexpr const char* reservations_sql =
    "SELECT provider, state::text, count(*), "
    "count(*) FILTER (WHERE state IN ('pending', 'active') AND ends_at < now()) "
    "FROM reservations WHERE state IN ('pending', 'active', 'cancelling') GROUP BY 1, 2";
// What each provider runs outside a reservation and holds in reservations now, by instance
// type: the spend estimate, and the reserved places no instance uses.
constexpr const char* spend_sql =
    "SELECT provider, instance_type, sum(running)::bigint, sum(held)::bigint, "
    "sum(unused)::bigint FROM ("
    "  SELECT i.provider, i.instance_type, count(*) AS running, 0 AS held, 0 AS unused "
    "  FROM instances i LEFT JOIN reservations r ON r.id = i.reservation_id "
    "    AND r.state IN ('active', 'cancelling') AND r.activated_at IS NOT NULL "
    "  WHERE i.state IN ('running', 'terminating') AND r.id IS NULL GROUP BY 1, 2 "
    "  UNION ALL "
    "  SELECT provider, instance_type, 0, sum(count), "
    "    coalesce(sum(count - in_use) FILTER (WHERE state = 'active'), 0) "
    "  FROM reservations WHERE state IN ('active', 'cancelling') AND activated_at IS NOT NULL "
    "  GROUP BY 1, 2) x "
    "GROUP BY 1, 2";
constexpr std::string_view instance_types[] = {"standard", "premium"};

// Due: queued and due, or held under a lease that ran out (claimable again). Delayed: queued
// for later (a retry's backoff). Lag: how long the oldest due job has been waiting.
constexpr const char* jobs_sql =
    "SELECT provider, "
    "count(*) FILTER (WHERE due), count(*) FILTER (WHERE state = 'queued' AND NOT due), "
    "coalesce(extract(epoch FROM now() - min(due_since) FILTER (WHERE due)), 0)::float8 "
    "FROM (SELECT provider, state, "
    "  (state = 'queued' AND run_at <= now()) OR (state = 'running' AND lease_expires_at < now()) "
    "  AS due, CASE WHEN state = 'queued' THEN run_at ELSE lease_expires_at END AS due_since "
    "  FROM jobs WHERE state IN ('queued', 'running')) j "
    "GROUP BY 1";

double number(std::string_view s) {
  double v = 0;
  std::from_chars(s.data(), s.data() + s.size(), v);
  return v;
}

std::string in_currency(std::string_view currency) {
  return currency.empty() ? std::string(" (no currency is configured)")
                          : ", in " + std::string(currency);
}

double price(const std::string& text) { return text.empty() ? 0 : number(text); }

std::string read_file(const char* path) {
  std::ifstream f(path);
  std::ostringstream out;
  out << f.rdbuf();
  return out.str();
}

}  // namespace

process_figures read_process_figures() {
  process_figures p;
  const long ticks = sysconf(_SC_CLK_TCK);
  const long page = sysconf(_SC_PAGESIZE);
  // /proc/self/stat: the command may hold spaces and parentheses, so fields count from the
  // last ')'. utime and stime are fields 14 and 15, starttime 22, vsize 23, rss 24.
  const std::string stat = read_file("/proc/self/stat");
  const auto close = stat.rfind(')');
  if (close == std::string::npos || ticks <= 0) return p;
  std::istringstream fields(stat.substr(close + 2));
  std::vector<std::string> f;
  for (std::string w; fields >> w;) f.push_back(w);
  if (f.size() < 22) return p;  // f[0] is field 3 (state)
  p.cpu_seconds = (number(f[11]) + number(f[12])) / static_cast<double>(ticks);
  const double start_ticks = number(f[19]);
  p.virtual_bytes = number(f[20]);
  p.resident_bytes = number(f[21]) * static_cast<double>(page);

  // The boot time, to turn the start (in ticks since boot) into seconds since the epoch.
  std::istringstream system(read_file("/proc/stat"));
  for (std::string line; std::getline(system, line);) {
    if (line.starts_with("btime ")) {
      p.start_time_seconds = number(line.substr(6)) + start_ticks / static_cast<double>(ticks);
      break;
    }
  }

  if (DIR* d = opendir("/proc/self/fd")) {
    double n = 0;
    while (const dirent* e = readdir(d)) {
      if (e->d_name[0] != '.') ++n;
    }
    closedir(d);
    p.open_fds = n - 1;  // not the descriptor that reads the directory
  }
  std::istringstream limits(read_file("/proc/self/limits"));
  for (std::string line; std::getline(limits, line);) {
    if (line.starts_with("Max open files")) {
      std::istringstream words(line.substr(14));
      std::string soft;
      words >> soft;
      p.max_fds = soft == "unlimited" ? 0 : number(soft);
      break;
    }
  }
  p.ok = true;
  return p;
}

service_metrics::service_metrics(std::string_view version, blocking_pool& blocking,
                                 const health& status, std::string_view currency,
                                 std::string_view spend_ceiling)
    : blocking_(blocking),
      health_(status),
      http_requests_(registry_.add_counter(
          "cloudbrain_http_requests_total",
          "HTTP responses sent, by method, route template (or unmatched, invalid, rejected) and "
          "status.",
          {"method", "route", "status"})),
      http_seconds_(registry_.add_histogram(
          "cloudbrain_http_request_duration_seconds",
          "From the first byte of a request to its response written, by method and route.",
          {"method", "route"}, http_buckets)),
      cloud_calls_(registry_.add_counter(
          "cloudbrain_cloud_calls_total",
          "Driver calls to a cloud, by provider, operation and outcome (ok or the kind of error).",
          {"provider", "operation", "outcome"})),
      cloud_seconds_(registry_.add_histogram(
          "cloudbrain_cloud_call_duration_seconds",
          "How long a driver call to a cloud took (all its requests), by provider and operation.",
          {"provider", "operation"}, cloud_buckets)),
      rate_limit_waits_(registry_.add_counter(
          "cloudbrain_provider_rate_limit_waits_total",
          "Times a cloud request waited for the provider's rate limit or open circuit.",
          {"provider"})),
      circuit_(registry_.add_gauge(
          "cloudbrain_provider_circuit_state",
          "1 for the provider's circuit state (ok, degraded: failing calls, open: paused, "
          "disconnected: its out-of-tree driver is away), 0 for the others.",
          {"provider", "state"})),
      orphans_(registry_.add_counter(
          "cloudbrain_orphans_deleted_total",
          "Cloud resources of this deployment with no live row behind them that were removed: "
          "VMs by the reconciler, reservations by the reservation janitor.",
          {"provider", "resource"})),
      vanished_(registry_.add_counter(
          "cloudbrain_instances_vanished_total",
          "Instances whose VM the reconciler found gone behind our back.", {"provider"})),
      stuck_deletes_(registry_.add_gauge(
          "cloudbrain_stuck_deletes",
          "Instances being deleted whose delete keeps failing (still retried).", {"provider"})),
      janitor_cancelled_(registry_.add_counter(
          "cloudbrain_reservations_cancelled_by_janitor_total",
          "Reservations the janitor cancelled, by reason (expired: past ends_at; unused).",
          {"provider", "reason"})),
      frozen_(registry_.add_gauge(
          "cloudbrain_cleanup_frozen",
          "1 while the reconciler or the reservation janitor deletes nothing because its last "
          "view of the cloud or the database was incomplete.",
          {"provider", "component"})),
      job_outcomes_(registry_.add_counter(
          "cloudbrain_jobs_finished_total",
          "Job runs by provider, kind and outcome (succeeded, retried, waiting, failed: given up).",
          {"provider", "kind", "outcome"})),
      jobs_claimed_(registry_.add_counter("cloudbrain_jobs_claimed_total",
                                          "Jobs this process claimed from the queue.",
                                          {"provider"})),
      jobs_running_(registry_.add_gauge("cloudbrain_jobs_running", "Jobs this process is running.",
                                        {"provider"})),
      jobs_queued_(registry_.add_gauge(
          "cloudbrain_jobs_queued",
          "Jobs due and not held by anyone (in PostgreSQL, shared by every process).",
          {"provider"})),
      jobs_delayed_(registry_.add_gauge("cloudbrain_jobs_delayed",
                                        "Jobs queued for later: retries waiting out a backoff.",
                                        {"provider"})),
      queue_lag_(registry_.add_gauge("cloudbrain_jobs_queue_lag_seconds",
                                     "How long the oldest due job has been waiting to be claimed.",
                                     {"provider"})),
      instances_(registry_.add_gauge("cloudbrain_instances",
                                     "Instances by provider and live state (from PostgreSQL).",
                                     {"provider", "state"})),
      reservations_(
          registry_.add_gauge("cloudbrain_reservations",
                              "Capacity reservations by provider and live state (from PostgreSQL).",
                              {"provider", "state"})),
      reservations_past_end_(registry_.add_gauge(
          "cloudbrain_reservations_past_end",
          "Pending or active reservations whose ends_at has passed: the janitor should have "
          "cancelled them.",
          {"provider"})),
      reserved_unused_(registry_.add_gauge(
          "cloudbrain_reserved_unused_instances",
          "Instances that active reservations hold and no instance uses: paid for, unused "
          "(from PostgreSQL).",
          {"provider", "instance_type"})),
      spend_per_hour_(registry_.add_gauge(
          "cloudbrain_estimated_spend_per_hour",
          "Estimated spend per hour of what the provider runs and holds now" +
              in_currency(currency) +
              ": instances running outside a reservation at their type's price, reserved "
              "instances at reserved-price-per-hour (else their type's price); only providers "
              "with prices, and what has no price counts nothing.",
          {"provider"})),
      spend_ceiling_(registry_.add_gauge("cloudbrain_spend_ceiling_per_hour",
                                         "The configuration's spend-ceiling-per-hour" +
                                             in_currency(currency) +
                                             ": the spend alert fires above it. Absent when "
                                             "none is set.")),
      refresh_errors_(registry_
                          .add_counter("cloudbrain_state_refresh_errors_total",
                                       "Scrapes whose read of the instance, reservation and job "
                                       "figures from PostgreSQL failed (the last values stay).")
                          .get()),
      db_connections_(registry_.add_gauge("cloudbrain_db_connections",
                                          "PostgreSQL pool connections, by state.", {"state"})),
      db_waiting_(registry_
                      .add_gauge("cloudbrain_db_connection_waiters",
                                 "Callers queued for a PostgreSQL connection.")
                      .get()),
      db_max_connections_(registry_
                              .add_gauge("cloudbrain_db_connections_max",
                                         "The PostgreSQL pool's size (db-pool-size).")
                              .get()),
      db_queries_(
          registry_.add_counter("cloudbrain_db_queries_total", "Statements run through the pool.")
              .get()),
      db_errors_(registry_
                     .add_counter("cloudbrain_db_query_errors_total",
                                  "Statements that failed, timeouts included.")
                     .get()),
      db_timeouts_(registry_
                       .add_counter("cloudbrain_db_query_timeouts_total",
                                    "Statements that ran past their deadline.")
                       .get()),
      db_query_seconds_(
          registry_
              .add_histogram("cloudbrain_db_query_duration_seconds",
                             "Statement latency, waiting for a pool connection included.", {},
                             db_buckets)
              .get()),
      ready_(registry_
                 .add_gauge("cloudbrain_ready",
                            "1 when the process would pass /readyz (not draining, schema at the "
                            "version needed, no readiness problem, PostgreSQL answered the last "
                            "refresh), else 0.")
                 .get()),
      readiness_warnings_(
          registry_
              .add_gauge("cloudbrain_readiness_warnings", "Warnings /readyz shows without failing.")
              .get()),
      cpu_seconds_(registry_
                       .add_counter("process_cpu_seconds_total",
                                    "Total user and system CPU time spent in seconds.")
                       .get()),
      resident_bytes_(
          registry_.add_gauge("process_resident_memory_bytes", "Resident memory size in bytes.")
              .get()),
      virtual_bytes_(
          registry_.add_gauge("process_virtual_memory_bytes", "Virtual memory size in bytes.")
              .get()),
      open_fds_(registry_.add_gauge("process_open_fds", "Number of open file descriptors.").get()),
      max_fds_(
          registry_.add_gauge("process_max_fds", "Maximum number of open file descriptors.").get()),
      start_time_(registry_
                      .add_gauge("process_start_time_seconds",
                                 "Start time of the process since unix epoch in seconds.")
                      .get()),
      session_up_(registry_
                      .add_gauge("cloudbrain_cluster_session_up",
                                 "1 while this node's coordination session (heartbeat, roles, "
                                 "token revocations) is up, else 0.")
                      .get()),
      heartbeat_failures_(registry_
                              .add_counter("cloudbrain_cluster_heartbeat_failures_total",
                                           "Heartbeats of this node that failed, each ending its "
                                           "coordination session and the roles it held.")
                              .get()),
      revocations_heard_(registry_
                             .add_counter("cloudbrain_token_revocations_heard_total",
                                          "Token revocations this node heard announced (NOTIFY "
                                          "cloudbrain_tokens) and applied at once.")
                             .get()),
      leading_(registry_.add_gauge(
          "cloudbrain_leading",
          "1 while this node holds the provider's cluster-wide role (reconciler, janitor).",
          {"provider", "role"})),
      leader_(registry_.add_gauge(
          "cloudbrain_provider_leader",
          "1 for the node that holds the provider's role (reconciler, janitor) now, 0 for the "
          "nodes that held it before (from PostgreSQL, the same on every node).",
          {"provider", "role", "node"})),
      cluster_nodes_(registry_.add_gauge(
          "cloudbrain_cluster_nodes",
          "The deployment's nodes by state: live (heartbeat within 5 s) or lost (from PostgreSQL).",
          {"state"})),
      call_slots_(registry_.add_counter(
          "cloudbrain_provider_call_slots_total",
          "Cloud calls this node made in slots taken from the provider's cluster-wide pacing.",
          {"provider"})),
      call_slots_late_(registry_.add_counter(
          "cloudbrain_provider_call_slots_late_total",
          "Call slots this node gave up because it could not use them in time.", {"provider"})),
      batches_(registry_.add_counter(
          "cloudbrain_batch_queue_batches_total",
          "Batches run by a group-commit queue (one statement and one commit each), by queue.",
          {"queue"})),
      batch_items_(registry_.add_counter(
          "cloudbrain_batch_queue_items_total",
          "Requests that a group-commit queue put in a batch, by queue (divided by the batches: "
          "the mean batch size).",
          {"queue"})),
      batch_refused_(registry_.add_counter(
          "cloudbrain_batch_queue_refused_total",
          "Requests refused at once because the queue was full (503 with Retry-After), by queue.",
          {"queue"})),
      batch_expired_(registry_.add_counter(
          "cloudbrain_batch_queue_expired_total",
          "Requests whose deadline passed while they waited for a batch, by queue.", {"queue"})),
      batch_waiting_(registry_.add_gauge("cloudbrain_batch_queue_waiting",
                                         "Requests waiting for a batch now, by queue.", {"queue"})),
      batch_sizes_(registry_.add_histogram("cloudbrain_batch_queue_batch_size",
                                           "Requests per batch, by queue.", {"queue"},
                                           batch_size_buckets)),
      set_passes_(registry_
                      .add_counter("cloudbrain_reservation_set_passes_total",
                                   "Passes of this process's reservation set reconciliation.")
                      .get()),
      set_pass_failures_(registry_
                             .add_counter("cloudbrain_reservation_set_pass_failures_total",
                                          "Passes of the reservation set reconciliation that the "
                                          "database refused (the next one tries again).")
                             .get()),
      set_moves_(registry_
                     .add_counter("cloudbrain_reservation_set_moves_total",
                                  "Reservation sets this process moved to another state.")
                     .get()),
      config_reloads_(registry_.add_counter(
          "cloudbrain_config_reloads_total",
          "Times SIGHUP had the configuration read again, by outcome (success: it was valid and "
          "applied; failure: it was refused and the running configuration kept).",
          {"outcome"})),
      config_reload_ok_(registry_
                            .add_gauge("cloudbrain_config_last_reload_successful",
                                       "1 when the last reading of the configuration (at start "
                                       "or on SIGHUP) succeeded, else 0.")
                            .get()),
      config_reload_time_(registry_
                              .add_gauge("cloudbrain_config_last_reload_success_timestamp_seconds",
                                         "When the configuration was last read successfully, "
                                         "since the Unix epoch.")
                              .get()) {
  config_reloads_.with({"success"});
  config_reloads_.with({"failure"});
  config_reload_ok_.set(1);
  config_reload_time_.set(
      std::chrono::duration<double>(system_clock::now().time_since_epoch()).count());
  registry_.add_gauge("cloudbrain_build_info", "The running build; always 1.", {"version"})
      .with({version})
      .set(1);
  if (!spend_ceiling.empty()) spend_ceiling_.get().set(number(spend_ceiling));
  registry_.on_collect([this] { collect(); });
}

void service_metrics::learn_routes(const net::router& r) {
  for (const auto& route : r.routes()) route_templates_[route.name] = route.pattern;
}

void service_metrics::request_done(std::string_view method, std::string_view route, unsigned status,
                                   std::chrono::nanoseconds took) {
  // Route names map to their templates ("/instances/:id"); the server's own outcomes
  // (unmatched, invalid, rejected) stay as they are. Never the raw path.
  const auto it = route_templates_.find(route);
  const std::string_view label =
      it != route_templates_.end() ? std::string_view(it->second) : route;
  char code[4] = {};
  const auto end = std::to_chars(code, code + sizeof code, status).ptr;
  const std::string_view status_label(code, static_cast<std::size_t>(end - code));
  http_requests_.with({method, label, status_label}).inc();
  http_seconds_.with({method, label}).observe(std::chrono::duration<double>(took).count());
}

providers::cloud_call_metrics service_metrics::cloud_calls() {
  return {cloud_calls_, cloud_seconds_};
}

scheduler_metrics service_metrics::for_scheduler() {
  return {&job_outcomes_, &jobs_claimed_, &jobs_running_};
}

void service_metrics::watch(pg::pool& pool) {
  pool_ = &pool;
  db_max_connections_.set(static_cast<double>(pool.config().max_connections));
}

void service_metrics::config_reloaded(bool ok) {
  config_reloads_.with({ok ? "success" : "failure"}).inc();
  config_reload_ok_.set(ok ? 1 : 0);
  if (ok) {
    config_reload_time_.set(
        std::chrono::duration<double>(system_clock::now().time_since_epoch()).count());
  }
}

std::vector<provider_actor*> service_metrics::watched() const {
  const std::lock_guard lock(providers_mutex_);
  return providers_;
}

void service_metrics::watch(const set_reconcile_stats& sets) { set_stats_ = &sets; }

void service_metrics::watch(std::string queue, const batch_counters& counters) {
  // Every series from the start, at 0.
  batches_.with({queue});
  batch_items_.with({queue});
  batch_refused_.with({queue});
  batch_expired_.with({queue});
  batch_waiting_.with({queue}).set(0);
  batch_sizes_.with({queue});
  const std::lock_guard lock(queues_mutex_);
  queues_.emplace_back(std::move(queue), &counters);
}

void service_metrics::watch(const cluster_node& node, const cluster_store& cluster) {
  node_ = &node;
  cluster_ = &cluster;
  registry_.add_gauge("cloudbrain_node_info", "This process's node name; always 1.", {"node"})
      .with({node.identity().name})
      .set(1);
  for (const char* state : {"live", "lost"}) cluster_nodes_.with({state}).set(0);
}

void service_metrics::watch_roles(std::function<std::vector<const leadership*>()> roles) {
  roles_ = std::move(roles);
}

void service_metrics::watch(provider_actor& p) {
  {
    const std::lock_guard lock(providers_mutex_);
    providers_.push_back(&p);
  }
  // Every series of a provider exists from the start, at 0, so that rates and alerts see it.
  const std::string& name = p.section().name;
  for (auto state : instance_states) instances_.with({name, state}).set(0);
  for (auto state : reservation_states) reservations_.with({name, state}).set(0);
  reservations_past_end_.with({name}).set(0);
  for (auto type : instance_types) reserved_unused_.with({name, type}).set(0);
  const auto& section = p.section();
  if (!section.standard_price_per_hour.empty() || !section.premium_price_per_hour.empty() ||
      !section.reserved_price_per_hour.empty()) {
    spend_per_hour_.with({name}).set(0);
  }
  jobs_queued_.with({name}).set(0);
  jobs_delayed_.with({name}).set(0);
  queue_lag_.with({name}).set(0);
  jobs_running_.with({name}).set(0);
  jobs_claimed_.with({name});
}

void service_metrics::collect() {
  for (provider_actor* p : watched()) {
    const std::string& name = p->section().name;
    const std::string_view state = p->circuit_state();
    for (auto s : circuit_states) circuit_.with({name, s}).set(s == state ? 1 : 0);
    rate_limit_waits_.with({name}).mirror(static_cast<double>(p->rate_limit_waits()));
    const auto& rec = p->reconciliation();
    const auto& jan = p->janitoring();
    orphans_.with({name, "vm"}).mirror(static_cast<double>(rec.orphans_deleted.load()));
    orphans_.with({name, "reservation"}).mirror(static_cast<double>(jan.orphans_cancelled.load()));
    vanished_.with({name}).mirror(static_cast<double>(rec.vanished.load()));
    stuck_deletes_.with({name}).set(static_cast<double>(rec.stuck_deletes.load()));
    janitor_cancelled_.with({name, "expired"}).mirror(static_cast<double>(jan.expired.load()));
    janitor_cancelled_.with({name, "unused"}).mirror(static_cast<double>(jan.unused.load()));
    frozen_.with({name, "reconciler"}).set(rec.frozen.load() ? 1 : 0);
    frozen_.with({name, "janitor"}).set(jan.frozen.load() ? 1 : 0);
    call_slots_.with({name}).mirror(static_cast<double>(p->pacing().slots.load()));
    call_slots_late_.with({name}).mirror(static_cast<double>(p->pacing().late.load()));
  }
  if (node_ != nullptr) {
    const auto& n = node_->stats();
    session_up_.set(n.session_up.load() ? 1 : 0);
    heartbeat_failures_.mirror(static_cast<double>(n.heartbeat_failures.load()));
    revocations_heard_.mirror(static_cast<double>(n.revocations_heard.load()));
  }
  if (roles_) {
    for (const leadership* l : roles_()) {
      leading_.with({l->provider(), l->role()}).set(l->held() ? 1 : 0);
    }
  }
  if (pool_ != nullptr) {
    const auto s = pool_->stats();
    db_connections_.with({"in_use"}).set(static_cast<double>(s.in_use));
    db_connections_.with({"idle"}).set(static_cast<double>(s.idle));
    db_waiting_.set(static_cast<double>(s.waiting));
    db_queries_.mirror(static_cast<double>(s.queries));
    db_errors_.mirror(static_cast<double>(s.errors));
    db_timeouts_.mirror(static_cast<double>(s.timeouts));
  }
  {
    const std::lock_guard lock(queues_mutex_);
    for (const auto& [queue, c] : queues_) {
      const std::string_view label = queue;
      // Items first: a scrape never shows more batches than their items can fill.
      const auto items = c->items.load(std::memory_order_relaxed);
      std::array<std::uint64_t, batch_counters::size_buckets> sizes{};
      for (std::size_t i = 0; i < sizes.size(); ++i) {
        sizes[i] = c->sizes[i].load(std::memory_order_relaxed);
      }
      batches_.with({label}).mirror(static_cast<double>(c->batches.load()));
      batch_items_.with({label}).mirror(static_cast<double>(items));
      batch_refused_.with({label}).mirror(static_cast<double>(c->refused.load()));
      batch_expired_.with({label}).mirror(static_cast<double>(c->expired.load()));
      batch_waiting_.with({label}).set(
          static_cast<double>(std::max<std::int64_t>(c->queued.load(), 0)));
      batch_sizes_.with({label}).mirror(sizes, static_cast<double>(items));
    }
  }
  if (set_stats_ != nullptr) {
    set_passes_.mirror(static_cast<double>(set_stats_->passes.load()));
    set_pass_failures_.mirror(static_cast<double>(set_stats_->failures.load()));
    set_moves_.mirror(static_cast<double>(set_stats_->moves.load()));
  }
  const bool ready = !health_.draining() && health_.schema_ok() && health_.problems().empty() &&
                     database_ok_.load();
  ready_.set(ready ? 1 : 0);
  readiness_warnings_.set(static_cast<double>(health_.warnings().size()));
}

asio::awaitable<void> service_metrics::refresh_database() {
  const auto now = steady_clock::now();
  const auto last = steady_clock::time_point(steady_clock::duration(refreshed_at_.load()));
  if (now - last < database_refresh) co_return;
  // One refresh at a time; a scrape meanwhile serves the values of the last one.
  if (pool_ == nullptr || refreshing_.exchange(true)) co_return;
  refreshed_at_.store(now.time_since_epoch().count());
  const std::vector<pg::param> lost_after{cluster_ != nullptr ? cluster_->lost_after_seconds()
                                                              : std::string("5")};
  const pg::batch_item items[] = {pg::batch_item(instances_sql),
                                  pg::batch_item(reservations_sql),
                                  pg::batch_item(jobs_sql),
                                  pg::batch_item(spend_sql),
                                  pg::batch_item(cluster_store::role_holders_sql),
                                  pg::batch_item(cluster_store::node_states_sql, lost_after)};
  // Cleared however the read ends, a shutdown's cancellation included; this object outlives
  // every scrape.
  struct done_refreshing {
    std::atomic<bool>& flag;
    ~done_refreshing() { flag.store(false); }
  } guard{refreshing_};
  auto reading = pool_->pipeline(items, after(std::chrono::seconds(2)));
  auto got = co_await std::move(reading);
  if (!got || got->size() != 6) {
    database_ok_.store(false);
    refresh_errors_.inc();
    log::warn("reading figures for /metrics failed",
              {{"error", got ? std::string("short reply") : got.error().message()}});
    co_return;
  }
  database_ok_.store(true);
  const pg::rows& inst = (*got)[0];
  const pg::rows& res = (*got)[1];
  const pg::rows& jobs = (*got)[2];
  const pg::rows& spend = (*got)[3];
  const pg::rows& holders = (*got)[4];
  const pg::rows& node_states = (*got)[5];
  // Counted first and set once each, so that a scrape rendering meanwhile never sees a zero
  // that is not one. What the queries do not list is zero; rows of providers no longer
  // configured are left out (labels come from the configuration).
  std::map<std::pair<std::string, std::string>, double> instances;
  std::map<std::pair<std::string, std::string>, double> reservations;
  struct per_provider {
    double past_end = 0, queued = 0, delayed = 0, lag = 0;
  };
  std::map<std::string, per_provider, std::less<>> figures;
  std::map<std::pair<std::string, std::string>, double> unused;
  std::map<std::string, double, std::less<>> spend_rate;  // priced providers only
  std::map<std::string, const provider_section*, std::less<>> sections;
  for (provider_actor* p : watched()) {
    const std::string& name = p->section().name;
    sections[name] = &p->section();
    for (auto type : instance_types) unused[{name, std::string(type)}] = 0;
    const auto& s = p->section();
    if (!s.standard_price_per_hour.empty() || !s.premium_price_per_hour.empty() ||
        !s.reserved_price_per_hour.empty()) {
      spend_rate[name] = 0;
    }
    for (auto state : instance_states) instances[{name, std::string(state)}] = 0;
    for (auto state : reservation_states) reservations[{name, std::string(state)}] = 0;
    figures[name] = {};
  }
  const auto set_if_known = [](auto& counts, std::string_view provider, std::string_view state,
                               double n) {
    if (auto it = counts.find({std::string(provider), std::string(state)}); it != counts.end()) {
      it->second = n;
    }
  };
  for (int i = 0; i < static_cast<int>(inst.size()); ++i) {
    set_if_known(instances, inst.text(i, 0), inst.text(i, 1), number(inst.text(i, 2)));
  }
  for (int i = 0; i < static_cast<int>(res.size()); ++i) {
    set_if_known(reservations, res.text(i, 0), res.text(i, 1), number(res.text(i, 2)));
    if (auto it = figures.find(res.text(i, 0)); it != figures.end()) {
      it->second.past_end += number(res.text(i, 3));
    }
  }
  for (int i = 0; i < static_cast<int>(jobs.size()); ++i) {
    if (auto it = figures.find(jobs.text(i, 0)); it != figures.end()) {
      it->second.queued = number(jobs.text(i, 1));
      it->second.delayed = number(jobs.text(i, 2));
      it->second.lag = number(jobs.text(i, 3));
    }
  }
  for (int i = 0; i < static_cast<int>(spend.size()); ++i) {
    const std::string_view provider = spend.text(i, 0);
    const std::string_view type = spend.text(i, 1);
    set_if_known(unused, provider, type, number(spend.text(i, 4)));
    const auto rate = spend_rate.find(provider);
    if (rate == spend_rate.end()) continue;
    const provider_section& s = *sections.at(std::string(provider));
    const std::string& type_price =
        type == "premium" ? s.premium_price_per_hour : s.standard_price_per_hour;
    const std::string& held_price =
        s.reserved_price_per_hour.empty() ? type_price : s.reserved_price_per_hour;
    rate->second +=
        number(spend.text(i, 2)) * price(type_price) + number(spend.text(i, 3)) * price(held_price);
  }
  for (const auto& [key, n] : unused) reserved_unused_.with({key.first, key.second}).set(n);
  for (const auto& [name, rate] : spend_rate) spend_per_hour_.with({name}).set(rate);
  for (const auto& [key, n] : instances) instances_.with({key.first, key.second}).set(n);
  for (const auto& [key, n] : reservations) reservations_.with({key.first, key.second}).set(n);
  // Who leads: the holder 1, every node seen holding it before 0. A scrape that meanwhile
  // renders may see a role without a holder for a moment, never two holders.
  std::set<std::tuple<std::string, std::string, std::string>> holding;
  for (int i = 0; i < static_cast<int>(holders.size()); ++i) {
    if (holders.text(i, 2).empty()) continue;
    holding.emplace(holders.text(i, 0), holders.text(i, 1), holders.text(i, 2));
  }
  {
    const std::lock_guard lock(providers_mutex_);
    for (const auto& [provider, role, node] : leader_series_) {
      if (!holding.contains({provider, role, node})) leader_.with({provider, role, node}).set(0);
    }
    for (const auto& [provider, role, node] : holding) {
      leader_.with({provider, role, node}).set(1);
      leader_series_.emplace(provider, role, node);
    }
  }
  std::map<std::string, double> states{{"live", 0}, {"lost", 0}};
  for (int i = 0; i < static_cast<int>(node_states.size()); ++i) {
    states[std::string(node_states.text(i, 0))] = number(node_states.text(i, 1));
  }
  for (const auto& [state, n] : states) cluster_nodes_.with({state}).set(n);
  for (const auto& [name, f] : figures) {
    reservations_past_end_.with({name}).set(f.past_end);
    jobs_queued_.with({name}).set(f.queued);
    jobs_delayed_.with({name}).set(f.delayed);
    queue_lag_.with({name}).set(f.lag);
  }
}

net::handler service_metrics::handler() {
  return [this](net::request_context&) -> asio::awaitable<net::response> {
    co_await refresh_database();
    const process_figures p = co_await blocking_.run([] { return read_process_figures(); });
    if (p.ok) {
      cpu_seconds_.mirror(p.cpu_seconds);
      resident_bytes_.set(p.resident_bytes);
      virtual_bytes_.set(p.virtual_bytes);
      open_fds_.set(p.open_fds);
      max_fds_.set(p.max_fds);
      start_time_.set(p.start_time_seconds);
    }
    co_return net::text_response(http::status::ok, metrics::content_type, registry_.expose());
  };
}

}  // namespace cloudbrain
