#include "actors/provider_set.hpp"

#include "core/log.hpp"
#include "providers/metered_driver.hpp"

#include <algorithm>
#include <exception>
#include <optional>

namespace cloudbrain {
namespace asio = boost::asio;

namespace {

std::string joined(const std::vector<std::string>& words) {
  std::string out;
  for (const auto& w : words) {
    if (!out.empty()) out += ", ";
    out += w;
  }
  return out;
}

const provider_section* section_named(const std::vector<provider_section>& sections,
                                      std::string_view name) {
  const auto it = std::find_if(sections.begin(), sections.end(),
                               [name](const provider_section& s) { return s.name == name; });
  return it == sections.end() ? nullptr : &*it;
}

}  // namespace

std::string reload_report::summary() const {
  if (!ok) return "the configuration was refused, the running one kept: " + error;
  std::string out = "the configuration was reloaded";
  out += added.empty() ? "; no provider added" : "; providers added: " + joined(added);
  if (log_level_changed) out += "; log-level applied";
  if (token_rate) out += "; token-rate-limit applied";
  if (!changed.empty()) out += "; changed providers, kept as they were: " + joined(changed);
  if (!removed.empty())
    out += "; providers no longer in the file, still served: " + joined(removed);
  if (!needs_restart.empty()) out += "; not applied: " + joined(needs_restart);
  if (!changed.empty() || !removed.empty() || !needs_restart.empty()) out += " (restart to apply)";
  return out;
}

result<std::vector<std::unique_ptr<providers::driver>>> make_metered_drivers(
    const std::vector<provider_section>& sections, const providers::driver_context& ctx,
    service_metrics& meter) {
  std::vector<std::unique_ptr<providers::driver>> drivers;
  for (const auto& section : sections) {
    auto d = providers::make_driver(section, ctx);
    if (!d) return d.error();
    drivers.push_back(std::make_unique<providers::metered_driver>(std::move(*d), section.name,
                                                                  meter.cloud_calls()));
  }
  return drivers;
}

provider_set::provider_set(asio::any_io_executor ex, const service_config& cfg,
                           instance_store& store, reservation_store& reservations, scheduler& sched,
                           health& status, service_metrics& meter, provider_registry& registry,
                           blocking_pool& blocking, cluster_node& cluster,
                           providers::driver_link* drivers)
    : ex_(std::move(ex)),
      cfg_(cfg),
      running_(cfg),
      store_(store),
      reservations_(reservations),
      sched_(sched),
      status_(status),
      meter_(meter),
      registry_(registry),
      blocking_(blocking),
      cluster_(cluster),
      drivers_(drivers) {}

void provider_set::add(const std::vector<provider_section>& sections,
                       std::vector<std::unique_ptr<providers::driver>> drivers) {
  for (std::size_t i = 0; i < sections.size(); ++i) {
    bring_up(sections[i], std::move(drivers[i]), false);
  }
}

void provider_set::bring_up(const provider_section& section,
                            std::unique_ptr<providers::driver> driver, bool live) {
  actors_.push_back(std::make_unique<provider_actor>(
      ex_, section, std::move(driver), store_, reservations_, cfg_.deployment,
      [this](job j, job_outcome o) {
        if (!sched_.tell(job_done{std::move(j), std::move(o)})) {
          log::error("scheduler mailbox full; the job's lease will bring it back");
        }
      }));
  provider_actor& actor = *actors_.back();
  meter_.watch(actor);
  if (live) {
    sched_.add_provider_live(actor);
  } else {
    sched_.add_provider(actor);
  }
  auto reconciling = std::make_unique<leadership>(section.name, "reconciler");
  auto janitoring = std::make_unique<leadership>(section.name, "janitor");
  reconcilers_.push_back(std::make_unique<reconciler>(ex_, actor, store_, status_, *reconciling,
                                                      cfg_.reconcile_interval, cfg_.orphan_grace));
  janitors_.push_back(std::make_unique<reservation_janitor>(
      ex_, actor, reservations_, status_, *janitoring, cfg_.janitor_interval,
      cfg_.reservation_unused_grace, cfg_.orphan_grace));
  cluster_.offer({reconciling.get(), janitoring.get()});
  {
    const std::lock_guard lock(roles_mutex_);
    roles_.push_back(std::move(reconciling));
    roles_.push_back(std::move(janitoring));
  }
  // A driver whose capacity comes and goes (an out-of-tree driver connecting or leaving) wakes
  // the scheduler, which claims nothing for a provider without capacity, and has the
  // reconciler and the janitor look again, so that /readyz says what is true now.
  actor.driver().on_capacity_change(
      [this, r = reconcilers_.back().get(), j = janitors_.back().get()] {
        if (!sched_.tell(jobs_available{})) {
          log::warn("scheduler mailbox full; its tick claims later");
        }
        if (started_) {
          (void)r->tell(reconcile_now{});
          (void)j->tell(janitor_pass_now{});
        }
      });
  if (started_) {
    reconcilers_.back()->start();
    janitors_.back()->start();
  }
  // Last: a request names the provider only once everything behind it exists.
  registry_.add(actor);
}

void provider_set::start() {
  started_ = true;
  for (auto& r : reconcilers_) r->start();
  for (auto& j : janitors_) j->start();
}

std::vector<const leadership*> provider_set::roles() const {
  const std::lock_guard lock(roles_mutex_);
  std::vector<const leadership*> out;
  out.reserve(roles_.size());
  for (const auto& r : roles_) out.push_back(r.get());
  return out;
}

void provider_set::close() {
  for (auto& r : reconcilers_) r->close();
  for (auto& j : janitors_) j->close();
}

asio::awaitable<reload_report> provider_set::reload(config_reader read) {
  // What the blocking pool hands back: the configuration read, and drivers built for the
  // sections that are new, or why not.
  struct reading {
    std::optional<service_config> cfg;
    std::string error;
    std::vector<provider_section> fresh;
    std::vector<std::unique_ptr<providers::driver>> drivers;
  };
  std::vector<provider_section> served;
  for (const auto& a : actors_) served.push_back(a->section());
  const providers::driver_context ctx{ex_, cfg_.deployment, &blocking_, drivers_};

  auto got = co_await blocking_.run([read = std::move(read), &served, &ctx, this] {
    reading r;
    try {
      auto next = read();
      if (!next) {
        r.error = next.error().detail;
        return r;
      }
      for (const auto& s : next->providers) {
        if (!section_named(served, s.name)) r.fresh.push_back(s);
      }
      auto drivers = make_metered_drivers(r.fresh, ctx, meter_);
      if (!drivers) {
        r.error = drivers.error().detail;
        return r;
      }
      r.drivers = std::move(*drivers);
      r.cfg = std::move(*next);
    } catch (const std::exception& e) {
      r.error = e.what();
      r.drivers.clear();
    }
    return r;
  });

  reload_report rep;
  if (!got.cfg) {
    rep.error = got.error;
    co_return rep;
  }
  const service_config& next = *got.cfg;
  for (const auto& s : next.providers) {
    if (const auto* was = section_named(served, s.name); was && !(*was == s)) {
      rep.changed.push_back(s.name);
    }
  }
  for (const auto& s : served) {
    if (!section_named(next.providers, s.name)) rep.removed.push_back(s.name);
  }
  for (auto& key : changed_settings(running_, next)) {
    if (key != "log-level" && key != "token-rate-limit" && key != "token-rate-burst")
      rep.needs_restart.push_back(std::move(key));
  }
  if (next.token_rate_limit != running_.token_rate_limit ||
      next.token_rate_burst != running_.token_rate_burst) {
    running_.token_rate_limit = next.token_rate_limit;
    running_.token_rate_burst = next.token_rate_burst;
    rep.token_rate = {next.token_rate_limit, next.token_rate_burst};
  }
  if (next.log_level != running_.log_level) {
    log::set_level(next.log_level);
    running_.log_level = next.log_level;
    rep.log_level_changed = true;
  }
  for (std::size_t i = 0; i < got.fresh.size(); ++i) {
    bring_up(got.fresh[i], std::move(got.drivers[i]), true);
    running_.providers.push_back(got.fresh[i]);
    rep.added.push_back(got.fresh[i].name);
    log::info("provider added", {{"provider", got.fresh[i].name},
                                 {"type", got.fresh[i].type},
                                 {"zones", joined(got.fresh[i].zones)}});
  }
  rep.ok = true;
  co_return rep;
}

}  // namespace cloudbrain
