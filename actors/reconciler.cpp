#include "actors/reconciler.hpp"

#include "core/log.hpp"
#include "core/uuid.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/channel.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <set>
#include <unordered_map>

namespace cloudbrain {
namespace asio = boost::asio;
using providers::vm;
using providers::vm_ref;
using providers::vm_status;

namespace {

constexpr auto ask_margin = std::chrono::seconds(30);  // beyond the provider's own deadline
constexpr std::size_t orphan_batch = 8;                // orphan deletes at once

bool live(const std::string& state) {
  return state == "creating" || state == "starting" || state == "running" || state == "terminating";
}

// The instance id a VM's label names, if it is a well-formed one.
std::optional<std::string> labelled_instance(const vm& v) {
  const auto it = v.labels_.find(providers::label_instance);
  if (it == v.labels_.end()) return std::nullopt;
  auto id = uuid::parse(it->second);
  if (!id) return std::nullopt;
  return id->str();
}

}  // namespace

reconciler::reconciler(asio::any_io_executor ex, provider_actor& provider, instance_store& store,
                       health& status, const leadership& lead, std::chrono::milliseconds interval,
                       std::chrono::milliseconds orphan_grace)
    : actor(std::move(ex), "reconciler." + provider.section().name, 16),
      provider_(provider),
      store_(store),
      health_(status),
      interval_(interval),
      orphan_grace_(orphan_grace),
      lead_(lead),
      warning_key_("reconciler." + provider.section().name) {}

void reconciler::start() { spawn(loop(), "loop"); }

void reconciler::handle(reconciler_message&&) {
  if (!running_pass_ && lead_.held()) spawn(pass(), "pass");
}

bool reconciler::leading(std::string_view before) const {
  if (lead_.held()) return true;
  log::info("no longer the provider's reconciler; the pass stops",
            {{"provider", provider_.section().name}, {"before", before}});
  return false;
}

asio::awaitable<void> reconciler::loop() {
  // Processes that start together spread their passes out.
  co_await sleep_for(std::chrono::milliseconds(
      std::uniform_int_distribution<std::int64_t>(0, interval_.count() / 2)(rng_)));
  while (!closed()) {
    if (!running_pass_ && lead_.held()) {
      auto passing = pass();
      co_await std::move(passing);
    } else if (!lead_.held()) {
      // What this node saw as a leader says nothing now that another node looks.
      provider_.reconciliation().frozen.store(false);
      health_.clear_warning(warning_key_);
    }
    const auto jitter =
        std::uniform_int_distribution<std::int64_t>(0, interval_.count() / 10)(rng_);
    co_await sleep_for(interval_ + std::chrono::milliseconds(jitter));
  }
}

void reconciler::freeze(const std::string& why) {
  const std::string text =
      "reconciler " + provider_.section().name + ": orphan collection frozen: " + why;
  if (!provider_.reconciliation().frozen.exchange(true)) {
    log::warn("reconciler view doubtful; nothing is deleted or marked until it clears",
              {{"provider", provider_.section().name}, {"error", why}});
  }
  health_.set_warning(warning_key_, text);
}

void reconciler::thaw() {
  if (provider_.reconciliation().frozen.exchange(false)) {
    log::info("reconciler view clear again", {{"provider", provider_.section().name}});
  }
  health_.clear_warning(warning_key_);
}

asio::awaitable<void> reconciler::delete_orphan(orphan o) {
  const std::string& provider = provider_.section().name;
  const vm_ref ref{o.v.name, o.v.zone, o.v.upstream_id};
  const std::string key = "orphan/" + o.v.name + "/" + o.v.upstream_id;
  auto deleting = ask<bool>(
      provider_,
      [ref, key](reply_to<bool> r) {
        return provider_message{delete_vm{ref, key, std::move(r)}};
      },
      after(std::chrono::minutes(2) + ask_margin));
  auto gone = co_await std::move(deleting);
  if (!gone) {
    log::warn("deleting an orphan VM failed; the next pass tries again",
              {{"provider", provider}, {"vm", o.v.name}, {"error", gone.error().message()}});
    co_return;
  }
  provider_.reconciliation().orphans_deleted.fetch_add(1);
  log::warn("orphan VM deleted", {{"provider", provider},
                                  {"vm", o.v.name},
                                  {"zone", o.v.zone},
                                  {"instance_id", o.instance_id.value_or("")},
                                  {"reason", o.why}});
  auto recording = store_.record_orphan_deleted(provider, o.v.name, o.instance_id,
                                                "orphan deleted by the reconciler: " + o.why);
  if (auto recorded = co_await std::move(recording); !recorded) {
    log::error("recording an orphan deletion failed",
               {{"provider", provider}, {"vm", o.v.name}, {"error", recorded.error().message()}});
  }
}

asio::awaitable<void> reconciler::pass() {
  // Not a destructor-based guard: a pass still suspended when the process stops is destroyed
  // with the io_context, after this actor, and must not touch it then.
  running_pass_ = true;
  try {
    auto passing = compare_and_repair();
    co_await std::move(passing);
  } catch (...) {
    running_pass_ = false;
    throw;
  }
  running_pass_ = false;
}

asio::awaitable<void> reconciler::compare_and_repair() {
  const std::string& provider = provider_.section().name;
  auto& stats = provider_.reconciliation();
  if (!lead_.held()) co_return;  // another node reconciles this provider

  // 1. What the cloud has. Anything short of a complete listing freezes the pass.
  const auto listed_at = system_clock::now();
  auto listing = ask<std::vector<vm>>(
      provider_,
      [](reply_to<std::vector<vm>> r) { return provider_message{list_vms{std::move(r)}}; },
      after(std::chrono::minutes(5) + ask_margin));
  auto listed = co_await std::move(listing);
  if (!listed) {
    freeze("listing the provider's VMs failed: " + listed.error().message());
    co_return;
  }

  // 2. What the database says about them and about every live instance.
  std::vector<std::string> ids;
  for (const auto& v : *listed) {
    if (auto id = labelled_instance(v)) ids.push_back(*id);
  }
  auto reading = store_.reconcile_view_of(provider, ids, listed_at);
  auto view = co_await std::move(reading);
  if (!view) {
    freeze("the database could not be read: " + view.error().message());
    co_return;
  }
  if (!leading("comparing")) co_return;
  thaw();
  stats.stuck_deletes.store(view->stuck_deletes);

  std::unordered_map<std::string, const instance_store::reconcile_row*> rows;
  for (const auto& r : view->rows) rows[r.id] = &r;
  std::set<std::string> vm_names;
  for (const auto& v : *listed) vm_names.insert(v.name);

  // 3. VMs: follow addresses; collect orphans past their grace.
  const auto now = system_clock::now();
  std::vector<orphan> orphans;
  for (const auto& v : *listed) {
    const auto id = labelled_instance(v);
    const auto row = id ? rows.find(*id) : rows.end();
    if (row != rows.end() && live(row->second->state)) {
      if (!leading("updating an address")) co_return;
      if (row->second->state == "running" && v.status == vm_status::running && v.ip_address &&
          *v.ip_address != row->second->ip_address) {
        auto updating = store_.update_address(*id, *v.ip_address);
        if (auto updated = co_await std::move(updating); updated && *updated) {
          log::info("address updated from the provider",
                    {{"instance_id", *id}, {"provider", provider}, {"ip_address", *v.ip_address}});
        }
      }
      continue;
    }
    if (v.status == vm_status::stopping) continue;  // already on its way out
    if (v.created_at == system_clock::time_point{} || now - v.created_at < orphan_grace_) {
      continue;  // too young to judge: its instance may be moments from being written
    }
    orphans.push_back(orphan{v, id,
                             row == rows.end() ? std::string("no instance behind it")
                                               : "its instance is " + row->second->state});
  }
  // Several at once (a delete is a long operation at a real cloud), never more than a few.
  for (std::size_t first = 0; first < orphans.size(); first += orphan_batch) {
    if (!leading("deleting orphans")) co_return;
    const std::size_t n = std::min(orphan_batch, orphans.size() - first);
    auto ex = co_await asio::this_coro::executor;
    auto finished =
        std::make_shared<asio::experimental::channel<void(boost::system::error_code)>>(ex, n);
    for (std::size_t i = first; i < first + n; ++i) {
      asio::co_spawn(
          ex,
          [this, o = orphans[i], finished]() -> asio::awaitable<void> {
            auto deleting = delete_orphan(o);
            co_await std::move(deleting);
            finished->try_send(boost::system::error_code{});
          },
          asio::detached);
    }
    for (std::size_t i = 0; i < n; ++i) {
      co_await finished->async_receive(asio::as_tuple(asio::use_awaitable));
    }
  }

  // 4. Instances whose VM is not in the listing: confirm with a direct read, then mark.
  for (const auto& r : view->rows) {
    if (r.busy || !r.settled || r.zone.empty()) continue;
    if (r.state != "starting" && r.state != "running" && r.state != "terminating") continue;
    const std::string name = providers::vm_name_for(r.id);
    if (vm_names.contains(name)) continue;
    const vm_ref ref{name, r.zone, ""};
    auto probing = ask<vm>(
        provider_,
        [ref](reply_to<vm> rep) {
          return provider_message{probe_vm{ref, std::move(rep)}};
        },
        after(std::chrono::minutes(2) + ask_margin));
    auto probed = co_await std::move(probing);
    if (probed || !probed.error().is(errc::cloud_not_found))
      continue;  // there after all, or unsure
    if (!leading("marking a vanished instance")) co_return;
    auto marking = store_.mark_vanished(r.id, r.state);
    auto marked = co_await std::move(marking);
    if (marked && *marked) {
      stats.vanished.fetch_add(1);
      log::warn("instance's VM vanished at the provider",
                {{"instance_id", r.id}, {"provider", provider}, {"was", r.state}});
    }
  }
  stats.passes.fetch_add(1);
}

}  // namespace cloudbrain
