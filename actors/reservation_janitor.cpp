#include "actors/reservation_janitor.hpp"

#include "core/log.hpp"
#include "core/uuid.hpp"

namespace cloudbrain {
namespace asio = boost::asio;
using providers::cloud_reservation;
using providers::reservation_ref;
using providers::reservation_status;

namespace {

constexpr auto ask_margin = std::chrono::seconds(30);  // beyond the provider's own deadline
constexpr std::size_t reap_batch = 100;                // reservations moved per statement

// The reservation id a cloud reservation's marker names, if it is a well-formed one.
std::optional<std::string> marked_reservation(const cloud_reservation& r) {
  const auto it = r.labels_.find(providers::label_reservation);
  if (it == r.labels_.end()) return std::nullopt;
  auto id = uuid::parse(it->second);
  if (!id) return std::nullopt;
  return id->str();
}

bool final_state(const std::string& s) {
  return s == "cancelled" || s == "expired" || s == "failed";
}

}  // namespace

reservation_janitor::reservation_janitor(asio::any_io_executor ex, provider_actor& provider,
                                         reservation_store& store, health& status,
                                         const leadership& lead, std::chrono::milliseconds interval,
                                         std::chrono::milliseconds unused_grace,
                                         std::chrono::milliseconds orphan_grace)
    : actor(std::move(ex), "janitor." + provider.section().name, 16),
      provider_(provider),
      store_(store),
      health_(status),
      interval_(interval),
      unused_grace_(unused_grace),
      orphan_grace_(orphan_grace),
      lead_(lead),
      warning_key_("janitor." + provider.section().name) {}

void reservation_janitor::start() { spawn(loop(), "loop"); }

void reservation_janitor::handle(janitor_message&&) {
  if (!running_pass_ && lead_.held()) spawn(pass(), "pass");
}

bool reservation_janitor::leading(std::string_view before) const {
  if (lead_.held()) return true;
  log::info("no longer the provider's reservation janitor; the pass stops",
            {{"provider", provider_.section().name}, {"before", before}});
  return false;
}

asio::awaitable<void> reservation_janitor::loop() {
  co_await sleep_for(std::chrono::milliseconds(
      std::uniform_int_distribution<std::int64_t>(0, interval_.count() / 2)(rng_)));
  while (!closed()) {
    if (!running_pass_ && lead_.held()) {
      auto passing = pass();
      co_await std::move(passing);
    } else if (!lead_.held()) {
      // What this node saw as a leader says nothing now that another node looks.
      provider_.janitoring().frozen.store(false);
      health_.clear_warning(warning_key_);
    }
    const auto jitter =
        std::uniform_int_distribution<std::int64_t>(0, interval_.count() / 10)(rng_);
    co_await sleep_for(interval_ + std::chrono::milliseconds(jitter));
  }
}

void reservation_janitor::freeze(const std::string& why) {
  const std::string text =
      "reservation janitor " + provider_.section().name + ": orphan release frozen: " + why;
  if (!provider_.janitoring().frozen.exchange(true)) {
    log::warn("reservation janitor view doubtful; nothing is released until it clears",
              {{"provider", provider_.section().name}, {"error", why}});
  }
  health_.set_warning(warning_key_, text);
}

void reservation_janitor::thaw() {
  if (provider_.janitoring().frozen.exchange(false)) {
    log::info("reservation janitor view clear again", {{"provider", provider_.section().name}});
  }
  health_.clear_warning(warning_key_);
}

asio::awaitable<void> reservation_janitor::pass() {
  // Not a destructor-based guard: a pass still suspended when the process stops is destroyed
  // with the io_context, after this actor, and must not touch it then.
  running_pass_ = true;
  try {
    auto sweeping = sweep();
    co_await std::move(sweeping);
  } catch (...) {
    running_pass_ = false;
    throw;
  }
  running_pass_ = false;
}

asio::awaitable<void> reservation_janitor::sweep() {
  const std::string& provider = provider_.section().name;
  auto& stats = provider_.janitoring();
  if (!lead_.held()) co_return;  // another node looks after this provider's reservations

  // 1. Rows past their end or idle too long: cancelled through the queue like a user's cancel.
  for (;;) {
    if (!leading("cancelling reservations")) co_return;
    auto reaping = store_.reap(provider, unused_grace_, reap_batch);
    auto reaped = co_await std::move(reaping);
    if (!reaped) {
      freeze("the database could not be read: " + reaped.error().message());
      co_return;
    }
    for (const auto& r : *reaped) {
      (r.reason == "expired" ? stats.expired : stats.unused).fetch_add(1);
      log::warn(r.reason == "expired" ? "reservation past its end: cancelling it"
                                      : "reservation unused past its grace: cancelling it",
                {{"reservation_id", r.id}, {"provider", provider}, {"reason", r.reason}});
    }
    if (reaped->size() < reap_batch) break;
  }

  // 2. What the cloud holds for this deployment. Anything short of a complete listing: stop.
  const auto listed_at = system_clock::now();
  auto listing = ask<std::vector<cloud_reservation>>(
      provider_,
      [](reply_to<std::vector<cloud_reservation>> r) {
        return provider_message{list_cloud_reservations{std::move(r)}};
      },
      after(std::chrono::minutes(5) + ask_margin));
  auto listed = co_await std::move(listing);
  if (!listed) {
    if (listed.error().is(errc::cloud_permanent)) {
      // A provider type without reservations has nothing to collect.
      thaw();
      stats.passes.fetch_add(1);
      co_return;
    }
    freeze("listing the provider's reservations failed: " + listed.error().message());
    co_return;
  }
  std::vector<std::string> ids;
  for (const auto& r : *listed)
    if (auto id = marked_reservation(r)) ids.push_back(*id);
  auto reading = store_.rows_for(ids, listed_at);
  auto rows = co_await std::move(reading);
  if (!rows) {
    freeze("the database could not be read: " + rows.error().message());
    co_return;
  }
  thaw();

  // 3. Orphans: no row, a row that has ended, or a row held in another zone; none of them
  // young, none with a job at work on it.
  const auto now = system_clock::now();
  std::vector<orphan> orphans;
  for (const auto& r : *listed) {
    if (r.status == reservation_status::deleting) continue;  // already on its way out
    if (r.created_at == system_clock::time_point{} || now - r.created_at < orphan_grace_) continue;
    const auto id = marked_reservation(r);
    const auto row = id ? rows->find(*id) : rows->end();
    std::string why;
    if (row == rows->end()) {
      why = "no reservation behind it";
    } else {
      const auto& rr = row->second;
      if (rr.busy || !rr.settled) continue;
      if (final_state(rr.state)) {
        why = "its reservation is " + rr.state;
      } else if (rr.state == "active" && !rr.zone.empty() && rr.zone != r.zone) {
        why = "its reservation is held in " + rr.zone;
      } else {
        continue;
      }
    }
    orphans.push_back(orphan{r, id, why});
  }
  for (auto& o : orphans) {
    if (!leading("releasing orphans")) co_return;
    auto releasing = release_orphan(std::move(o));
    co_await std::move(releasing);
  }
  stats.passes.fetch_add(1);
}

asio::awaitable<void> reservation_janitor::release_orphan(orphan o) {
  const std::string& provider = provider_.section().name;
  const reservation_ref ref{o.r.name, o.r.zone, o.r.upstream_id};
  const std::string key = "orphan/" + o.r.name + "/" + o.r.zone + "/" + o.r.upstream_id;
  auto releasing = ask<bool>(
      provider_,
      [ref, key](reply_to<bool> r) {
        return provider_message{release_cloud_reservation{ref, key, std::move(r)}};
      },
      after(std::chrono::minutes(2) + ask_margin));
  auto gone = co_await std::move(releasing);
  if (!gone) {
    log::warn(
        "releasing an orphan reservation failed; the next pass tries again",
        {{"provider", provider}, {"reservation", o.r.name}, {"error", gone.error().message()}});
    co_return;
  }
  provider_.janitoring().orphans_cancelled.fetch_add(1);
  log::warn("orphan reservation released", {{"provider", provider},
                                            {"reservation", o.r.name},
                                            {"zone", o.r.zone},
                                            {"reservation_id", o.reservation_id.value_or("")},
                                            {"reason", o.why}});
  auto recording = store_.record_orphan_cancelled(provider, o.r.zone, o.r.name, o.reservation_id,
                                                  "orphan released by the janitor: " + o.why);
  if (auto recorded = co_await std::move(recording); !recorded) {
    log::error(
        "recording an orphan release failed",
        {{"provider", provider}, {"reservation", o.r.name}, {"error", recorded.error().message()}});
  }
}

}  // namespace cloudbrain
