// The provider actor's capacity-reservation jobs: reserve (zones in order, moving on after a
// capacity error once that zone holds nothing) and release; and the janitor's cloud calls.
#include "actors/provider_actor.hpp"

#include <boost/json/array.hpp>

namespace cloudbrain {
namespace asio = boost::asio;
namespace json = boost::json;
using providers::cloud_reservation;
using providers::reservation_ref;
using providers::reservation_status;

namespace {

std::vector<std::string> strings_of(const json::object& o, std::string_view key) {
  std::vector<std::string> out;
  if (const auto* v = o.if_contains(key); v && v->is_array()) {
    for (const auto& e : v->as_array())
      if (e.is_string()) out.emplace_back(e.as_string());
  }
  return out;
}

json::object object_of(const json::object& o, std::string_view key) {
  if (const auto* v = o.if_contains(key); v && v->is_object()) return v->as_object();
  return {};
}

std::string detail_of(const error& e) { return e.detail.empty() ? e.message() : e.detail; }

}  // namespace

providers::reservation_spec provider_actor::reservation_spec_for(const job& j,
                                                                 const std::string& zone) const {
  providers::reservation_spec s;
  s.reservation_id = *j.reservation_id;
  s.name = providers::reservation_name_for(*j.reservation_id);
  s.instance_type = j.instance_type;
  s.count = j.reservation->count;
  s.zone = zone;
  s.ends_at = j.reservation->ends_at;
  for (const auto& [k, v] : j.tags)
    if (v.is_string()) s.tags[std::string(k)] = std::string(v.as_string());
  s.deployment = deployment_;
  s.idempotency_key = j.cloud_key + "/" + zone;
  return s;
}

asio::awaitable<job_outcome> provider_actor::reserve(job& j) {
  if (!j.reservation_id || !j.reservation || j.state != "pending") {
    co_return job_outcome{};  // cancelled meanwhile: its release job owns it now
  }
  const std::string name = providers::reservation_name_for(*j.reservation_id);
  std::vector<std::string> tried = strings_of(j.intent, "zones_tried");
  json::object zone_errors = object_of(j.intent, "zone_errors");

  // A reservation an earlier attempt made (this process, or one that died) is adopted.
  for (const auto& zone : tried) {
    if (zone_errors.contains(zone)) continue;
    const reservation_ref ref{name, zone, ""};
    auto found = co_await driver_->get_reservation(ref, after(call_timeout));
    if (found) {
      note_success();
      auto activating = activate(j, *found);
      co_return co_await std::move(activating);
    }
    if (!found.error().is(errc::cloud_not_found)) {
      note_failure(found.error());
      co_return outcome_of(found.error(), j);
    }
  }

  const auto& zones = j.reservation->zones.empty() ? driver_->zones() : j.reservation->zones;
  for (const auto& zone : zones) {
    if (zone_errors.contains(zone)) continue;
    if (std::find(tried.begin(), tried.end(), zone) == tried.end()) tried.push_back(zone);
    json::array tried_json;
    for (const auto& z : tried) tried_json.emplace_back(z);
    j.intent["zones_tried"] = tried_json;
    j.intent["zone_errors"] = zone_errors;
    j.intent["name"] = name;
    j.intent["zone"] = zone;
    // Intent before action: whoever runs this job next looks for the reservation here first.
    auto recorded = co_await store_.record_intent(j, j.intent);
    if (!recorded) co_return outcome_of(recorded.error(), j);

    const auto spec = reservation_spec_for(j, zone);
    auto held = co_await driver_->reserve(spec, after(call_timeout));
    if (!held && held.error().is(errc::cloud_already_exists)) {
      const reservation_ref ref{name, zone, ""};
      held = co_await driver_->get_reservation(ref, after(call_timeout));
    }
    if (held) {
      note_success();
      auto activating = activate(j, *held);
      co_return co_await std::move(activating);
    }
    const error e = held.error();
    if (!e.is(errc::cloud_capacity)) {
      note_failure(e);
      log::warn("reservation failed", {{"reservation_id", *j.reservation_id},
                                       {"provider", section_.name},
                                       {"zone", zone},
                                       {"error", e.message()}});
      co_return outcome_of(e, j);
    }
    // No room here. Whatever the cloud may hold of it in this zone goes before the next one.
    const reservation_ref ref{name, zone, ""};
    auto gone =
        co_await driver_->release(ref, j.cloud_key + "/release/" + zone, after(call_timeout));
    if (!gone) {
      note_failure(gone.error());
      co_return outcome_of(gone.error(), j);
    }
    zone_errors[zone] = detail_of(e);
    j.intent["zone_errors"] = zone_errors;
    auto noted = co_await store_.record_intent(j, j.intent);
    if (!noted) co_return outcome_of(noted.error(), j);
    log::warn("zone out of capacity for a reservation, trying the next",
              {{"reservation_id", *j.reservation_id},
               {"provider", section_.name},
               {"zone", zone},
               {"error", detail_of(e)}});
  }

  std::string reason = "no zone had capacity";
  for (const auto& zone : zones) {
    if (const auto* why = zone_errors.if_contains(zone); why && why->is_string())
      reason += "; " + zone + ": " + std::string(why->as_string());
  }
  log::warn("reservation failed in every zone",
            {{"reservation_id", *j.reservation_id}, {"provider", section_.name}});
  co_return job_outcome{job_outcome::kind::failed, {}, reason};
}

asio::awaitable<job_outcome> provider_actor::activate(job& j, const cloud_reservation& held) {
  cloud_reservation r = held;
  const auto started = steady_clock::now();
  std::chrono::milliseconds poll{100};
  while (r.status == reservation_status::creating || r.status == reservation_status::updating) {
    if (steady_clock::now() - started > boot_timeout) {
      co_return outcome_of(
          error(errc::cloud_transient, "the reservation was not ready within 10 minutes"), j);
    }
    co_await sleep_for(poll);
    poll = std::min(poll * 2, std::chrono::milliseconds(5000));
    const reservation_ref ref{r.name, r.zone, r.upstream_id};
    auto got = co_await driver_->get_reservation(ref, after(call_timeout));
    if (!got) {
      note_failure(got.error());
      co_return outcome_of(got.error(), j);
    }
    r = std::move(*got);
  }
  if (r.status == reservation_status::deleting) {
    co_return outcome_of(error(errc::cloud_transient, "the reservation is being deleted"), j);
  }
  if (r.status == reservation_status::invalid) {
    // Broken at the cloud: it can only be deleted. The next attempt reserves afresh.
    const reservation_ref ref{r.name, r.zone, r.upstream_id};
    auto gone = co_await driver_->release(
        ref, j.cloud_key + "/invalid/" + r.zone + "/" + r.upstream_id, after(call_timeout));
    if (!gone) {
      note_failure(gone.error());
      co_return outcome_of(gone.error(), j);
    }
    co_return outcome_of(
        error(errc::cloud_transient, "the cloud reported the reservation INVALID in " + r.zone), j);
  }
  auto machine_type =
      r.machine_type.empty() ? driver_->machine_type_for(j.instance_type) : r.machine_type;
  auto moved = co_await reservations_.activate(*j.reservation_id, r.zone, r.upstream_id,
                                               std::move(machine_type));
  if (!moved) co_return outcome_of(moved.error(), j);
  if (!*moved) {
    // The row ended meanwhile (failed or released): what we hold has no owner. Let it go now
    // rather than leave it to the janitor.
    const reservation_ref ref{r.name, r.zone, r.upstream_id};
    auto gone =
        co_await driver_->release(ref, j.cloud_key + "/unowned/" + r.zone, after(call_timeout));
    if (!gone) {
      note_failure(gone.error());
      co_return outcome_of(gone.error(), j);
    }
    co_return job_outcome{};
  }
  log::info("reservation active", {{"reservation_id", *j.reservation_id},
                                   {"provider", section_.name},
                                   {"zone", r.zone},
                                   {"upstream_id", r.upstream_id}});
  co_return job_outcome{};
}

asio::awaitable<job_outcome> provider_actor::release_reservation(job& j) {
  if (!j.reservation_id || j.state != "cancelling") co_return job_outcome{};
  // A reserve job still at work would race us: cancel it if it has not started, else wait.
  auto view = co_await reservations_.settle_reserve_job(*j.reservation_id);
  if (!view) co_return outcome_of(view.error(), j);
  if (view->active) {
    co_return job_outcome{job_outcome::kind::wait, std::chrono::milliseconds(500),
                          "waiting for the reserve job to finish", false};
  }
  const std::string name = providers::reservation_name_for(*j.reservation_id);
  std::vector<std::string> zones;
  if (j.zone && !j.zone->empty()) zones.push_back(*j.zone);
  for (auto& z : strings_of(view->intent, "zones_tried"))
    if (std::find(zones.begin(), zones.end(), z) == zones.end()) zones.push_back(z);
  for (const auto& zone : zones) {
    const reservation_ref ref{name, zone, zone == j.zone ? j.upstream_id.value_or("") : ""};
    auto gone = co_await driver_->release(ref, j.cloud_key + "/" + zone, after(call_timeout));
    if (!gone) {
      note_failure(gone.error());
      log::warn("reservation release failed, will retry", {{"reservation_id", *j.reservation_id},
                                                           {"provider", section_.name},
                                                           {"zone", zone},
                                                           {"error", gone.error().message()}});
      co_return outcome_of(gone.error(), j);
    }
    note_success();
  }
  auto moved = co_await reservations_.mark_released(*j.reservation_id);
  if (!moved) co_return outcome_of(moved.error(), j);
  log::info("reservation released",
            {{"reservation_id", *j.reservation_id},
             {"provider", section_.name},
             {"reason", j.reservation ? j.reservation->cancel_reason : std::string()}});
  co_return job_outcome{};
}

asio::awaitable<void> provider_actor::run_list_reservations(
    reply_to<std::vector<cloud_reservation>> reply) {
  auto listing = driver_->list_reservations(deployment_, after(list_timeout));
  auto listed = co_await std::move(listing);
  if (!listed && !listed.error().is(errc::cloud_permanent)) note_failure(listed.error());
  reply(std::move(listed));
}

asio::awaitable<void> provider_actor::run_release_reservation(reservation_ref ref, std::string key,
                                                              reply_to<bool> reply) {
  auto releasing = driver_->release(ref, key, after(call_timeout));
  auto gone = co_await std::move(releasing);
  if (!gone) {
    note_failure(gone.error());
    reply(gone.error());
    co_return;
  }
  note_success();
  reply(true);
}

}  // namespace cloudbrain
