#pragma once

#include "actors/cluster_node.hpp"
#include "actors/health.hpp"
#include "actors/instance_store.hpp"
#include "actors/provider_actor.hpp"
#include "actors/provider_registry.hpp"
#include "actors/reconciler.hpp"
#include "actors/reservation_janitor.hpp"
#include "actors/reservation_store.hpp"
#include "actors/scheduler.hpp"
#include "actors/service_metrics.hpp"
#include "core/blocking_pool.hpp"
#include "core/config.hpp"
#include "providers/driver.hpp"

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace cloudbrain {

// What a reload (SIGHUP) did. A configuration that does not read, or a new provider whose
// driver cannot be built, is refused whole: nothing changes.
struct reload_report {
  bool ok = false;
  std::string error;                       // why it was refused
  std::vector<std::string> added;          // providers now served
  std::vector<std::string> changed;        // sections that differ: still served as they were
  std::vector<std::string> removed;        // sections gone from the file: still served
  std::vector<std::string> needs_restart;  // top-level keys that differ, not applied
  bool log_level_changed = false;          // applied
  // token-rate-limit and token-rate-burst as the file now has them (0: none), when either
  // changed: to apply.
  std::optional<std::pair<double, unsigned>> token_rate;
  // One line for systemd's STATUS= and the log.
  [[nodiscard]] std::string summary() const;
};

// The drivers of `sections`, each wrapped to count its cloud calls; the first error names its
// section. May block (a driver reads its key file): before serving, or on the blocking pool.
[[nodiscard]] result<std::vector<std::unique_ptr<providers::driver>>> make_metered_drivers(
    const std::vector<provider_section>& sections, const providers::driver_context& ctx,
    service_metrics& meter);

// The providers a running service serves, and everything that exists once per provider: the
// provider actor with its driver, its reconciler and reservation janitor, its slot in the
// scheduler, its metrics, its name in the API's registry. Providers are brought up the same
// way at start and on SIGHUP; none is ever taken down while the process runs, since jobs,
// instances and reservations in flight may belong to it.
//
// Not thread-safe: start, reload and close run one after another in the service's main
// coroutine.
class provider_set {
 public:
  // Reads the configuration again, from the file and the environment it was read from.
  using config_reader = std::function<result<service_config>()>;

  provider_set(boost::asio::any_io_executor ex, const service_config& cfg, instance_store& store,
               reservation_store& reservations, scheduler& sched, health& status,
               service_metrics& meter, provider_registry& registry, blocking_pool& blocking,
               cluster_node& cluster, providers::driver_link* drivers = nullptr);

  // Before start(): brings up one provider per section, drivers[i] for sections[i].
  void add(const std::vector<provider_section>& sections,
           std::vector<std::unique_ptr<providers::driver>> drivers);
  // Starts every reconciler and janitor (once the database is known to be ready).
  void start();
  // Reads the configuration on the blocking pool, checks all of it, then adds the providers
  // it names that are not served yet and applies log-level; what it cannot apply is reported.
  boost::asio::awaitable<reload_report> reload(config_reader read);
  // Shutdown: the reconcilers and janitors take no more work.
  void close();
  // Every provider's cluster-wide roles, as this node holds them; read from any thread.
  [[nodiscard]] std::vector<const leadership*> roles() const;

  [[nodiscard]] std::size_t size() const { return actors_.size(); }

 private:
  void bring_up(const provider_section& section, std::unique_ptr<providers::driver> driver,
                bool live);

  boost::asio::any_io_executor ex_;
  const service_config& cfg_;
  service_config running_;  // what is applied: the start's configuration, plus reloads
  instance_store& store_;
  reservation_store& reservations_;
  scheduler& sched_;
  health& status_;
  service_metrics& meter_;
  provider_registry& registry_;
  blocking_pool& blocking_;
  cluster_node& cluster_;
  providers::driver_link* drivers_;
  std::atomic<bool> started_{false};  // also read by drivers' capacity callbacks
  std::vector<std::unique_ptr<provider_actor>> actors_;
  std::vector<std::unique_ptr<reconciler>> reconcilers_;
  std::vector<std::unique_ptr<reservation_janitor>> janitors_;
  // Two per provider (reconciler, janitor), never removed: their addresses are handed out.
  mutable std::mutex roles_mutex_;
  std::vector<std::unique_ptr<leadership>> roles_;
};

}  // namespace cloudbrain
