#include "actors/provider_actor.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json/array.hpp>

namespace cloudbrain {
namespace asio = boost::asio;
namespace json = boost::json;
using providers::vm;
using providers::vm_ref;
using providers::vm_status;

namespace {

std::vector<std::string> string_list(const json::object& o, std::string_view key) {
  std::vector<std::string> out;
  if (const auto* v = o.if_contains(key); v && v->is_array()) {
    for (const auto& e : v->as_array())
      if (e.is_string()) out.emplace_back(e.as_string());
  }
  return out;
}

}  // namespace

provider_actor::provider_actor(asio::any_io_executor ex, provider_section section,
                               std::unique_ptr<providers::driver> driver, instance_store& store,
                               reservation_store& reservations, std::string deployment,
                               completion done)
    : actor(std::move(ex), "provider." + section.name, section.max_in_flight * 4 + 64),
      section_(std::move(section)),
      driver_(std::move(driver)),
      store_(store),
      reservations_(reservations),
      deployment_(std::move(deployment)),
      done_(std::move(done)),
      pacer_(strand(), store_.pool(), section_.name, section_.rate_limit) {
  // The driver awaits this before each request it sends, on this actor's strand.
  driver_->set_pacer([this] { return pace(); });
}

void provider_actor::handle(provider_message&& m) {
  if (auto* r = std::get_if<run_job>(&m)) {
    ++jobs_in_flight_;
    spawn(run(std::move(r->j)), "job");
    return;
  }
  if (auto* l = std::get_if<list_vms>(&m)) {
    spawn(run_list(std::move(l->reply)), "list");
    return;
  }
  if (auto* p = std::get_if<probe_vm>(&m)) {
    spawn(run_probe(std::move(p->ref), std::move(p->reply)), "probe");
    return;
  }
  if (auto* d = std::get_if<delete_vm>(&m)) {
    spawn(run_delete(std::move(d->ref), std::move(d->idempotency_key), std::move(d->reply)),
          "delete_vm");
    return;
  }
  if (auto* l = std::get_if<list_cloud_reservations>(&m)) {
    spawn(run_list_reservations(std::move(l->reply)), "list_reservations");
    return;
  }
  if (auto* d = std::get_if<release_cloud_reservation>(&m)) {
    spawn(run_release_reservation(std::move(d->ref), std::move(d->idempotency_key),
                                  std::move(d->reply)),
          "release_reservation");
    return;
  }
  auto& q = std::get<provider_status_query>(m);
  provider_status s;
  s.name = section_.name;
  s.type = std::string(driver_->type());
  s.zones = driver_->zones();
  s.state = std::string(circuit_state());
  s.jobs_in_flight = jobs_in_flight_;
  s.rate_limit = section_.rate_limit;
  s.max_in_flight = section_.max_in_flight;
  s.last_error = last_error_;
  s.calls = calls_;
  s.rate_limit_waits = rate_limit_waits_;
  s.details = driver_->details();
  s.reconciler = {{"passes", reconcile_stats_.passes.load()},
                  {"orphans_deleted", reconcile_stats_.orphans_deleted.load()},
                  {"vanished", reconcile_stats_.vanished.load()},
                  {"stuck_deletes", reconcile_stats_.stuck_deletes.load()},
                  {"frozen", reconcile_stats_.frozen.load()}};
  s.janitor = {{"passes", janitor_stats_.passes.load()},
               {"expired", janitor_stats_.expired.load()},
               {"unused", janitor_stats_.unused.load()},
               {"orphans_cancelled", janitor_stats_.orphans_cancelled.load()},
               {"frozen", janitor_stats_.frozen.load()}};
  const auto& paced = pacer_.stats();
  s.pacing = {{"scope", "cluster"},
              {"window_bound", pacer_.window_bound()},
              {"slots", paced.slots.load()},
              {"late", paced.late.load()},
              {"refusals", paced.refusals.load()},
              {"db_failures", paced.db_failures.load()}};
  q.reply(std::move(s));
}

std::string_view provider_actor::circuit_state() const {
  if (const auto c = driver_->capacity(); c && *c == 0) return "disconnected";
  if (steady_clock::now() < open_until_.load()) return "open";
  return consecutive_failures_.load() > 0 ? "degraded" : "ok";
}

asio::awaitable<result<provider_status>> provider_actor::status(deadline dl) {
  return ask<provider_status>(
      *this,
      [](reply_to<provider_status> r) {
        return provider_message{provider_status_query{std::move(r)}};
      },
      dl);
}

asio::awaitable<void> provider_actor::run_list(reply_to<std::vector<vm>> reply) {
  auto listing = driver_->list(deployment_, after(list_timeout));
  auto listed = co_await std::move(listing);
  if (!listed) note_failure(listed.error());
  reply(std::move(listed));
}

asio::awaitable<void> provider_actor::run_probe(vm_ref ref, reply_to<vm> reply) {
  auto reading = driver_->get(ref, after(call_timeout));
  auto got = co_await std::move(reading);
  if (!got && !got.error().is(errc::cloud_not_found)) note_failure(got.error());
  reply(std::move(got));
}

asio::awaitable<void> provider_actor::run_delete(vm_ref ref, std::string key,
                                                 reply_to<bool> reply) {
  auto deleting = driver_->destroy(ref, key, after(call_timeout));
  auto gone = co_await std::move(deleting);
  if (!gone) {
    note_failure(gone.error());
    reply(gone.error());
    co_return;
  }
  note_success();
  reply(true);
}

asio::awaitable<void> provider_actor::pace() {
  const auto started = steady_clock::now();
  for (;;) {
    const auto now = steady_clock::now();
    const auto until = open_until_.load();
    if (now >= until) break;
    co_await sleep_for(until - now);
  }
  auto taking = pacer_.take();
  co_await std::move(taking);
  if (steady_clock::now() - started > std::chrono::milliseconds(1)) ++rate_limit_waits_;
  ++calls_;
}

void provider_actor::note_success() { consecutive_failures_ = 0; }

void provider_actor::note_failure(const error& e) {
  last_error_ = e.message();
  if (e.is(errc::cloud_rate_limited)) {
    // The cloud said slow down: the whole provider pauses, for as long as it asked if it
    // did, with jitter so that several processes do not come back in step.
    const auto asked = std::min(e.retry_after, std::chrono::milliseconds(300'000));
    const auto pause =
        asked > std::chrono::milliseconds::zero()
            ? asked + std::chrono::milliseconds(
                          std::uniform_int_distribution<std::int64_t>(0, asked.count() / 4)(rng_))
            : std::chrono::milliseconds(std::uniform_int_distribution<int>(1000, 3000)(rng_));
    pacer_.pause(pause);
  }
  if (e.is(errc::cloud_transient) || e.is(errc::timeout)) {
    if (++consecutive_failures_ >= 10) {
      open_until_ = steady_clock::now() + std::chrono::seconds(10);
      log::warn("provider circuit open", {{"provider", section_.name}, {"error", last_error_}});
      consecutive_failures_ = 0;
    }
  }
}

std::size_t provider_actor::capacity() const {
  const auto own = driver_->capacity();
  return own ? std::min(*own, section_.max_in_flight) : section_.max_in_flight;
}

job_outcome provider_actor::outcome_of(const error& e, const job& j) {
  job_outcome o;
  o.error = e.message();
  if (e.is(errc::cloud_unavailable)) {
    // Nothing reaches the cloud now (its driver is away): whatever the job is, it waits for
    // the cloud to come back without using an attempt. The scheduler claims nothing for this
    // provider meanwhile.
    o.what = job_outcome::kind::retry;
    o.counts_as_attempt = false;
    o.retry_after = std::chrono::milliseconds(std::uniform_int_distribution<int>(1000, 3000)(rng_));
    return o;
  }
  // Taking things down is retried whatever the cloud says, until it is done.
  const bool deleting = j.kind == "delete_instance" || j.kind == "release_reservation";
  if (!deleting &&
      (e.is(errc::cloud_quota) || e.is(errc::cloud_permanent) || e.is(errc::cloud_auth))) {
    o.what = job_outcome::kind::failed;
    o.error = e.detail.empty() ? e.message() : e.detail;
    return o;
  }
  o.what = job_outcome::kind::retry;
  if (e.is(errc::cloud_rate_limited)) {
    o.counts_as_attempt = false;
    o.retry_after =
        std::max(std::min(e.retry_after, std::chrono::milliseconds(300'000)),
                 std::chrono::milliseconds(std::uniform_int_distribution<int>(500, 2000)(rng_)));
    return o;
  }
  o.retry_after = retry_policy_.delay(static_cast<unsigned>(std::max(j.attempts - 1, 0)), rng_);
  return o;
}

std::string provider_actor::avoidance_key(const std::string& zone,
                                          const std::string& instance_type) {
  return zone + "\n" + (instance_type.empty() ? "standard" : instance_type);
}

std::vector<std::string> provider_actor::zones_to_try(const job& j) const {
  if (j.zone) return {*j.zone};
  // Configured order, but zones that recently ran out of room go last.
  std::vector<std::string> fresh;
  std::vector<std::string> avoided;
  const auto now = steady_clock::now();
  for (const auto& z : driver_->zones()) {
    const auto it = avoid_until_.find(avoidance_key(z, j.instance_type));
    (it != avoid_until_.end() && it->second > now ? avoided : fresh).push_back(z);
  }
  fresh.insert(fresh.end(), avoided.begin(), avoided.end());
  return fresh;
}

providers::instance_spec provider_actor::spec_for(const job& j, const std::string& zone) const {
  providers::instance_spec s;
  s.instance_id = j.instance_id;
  s.name = providers::vm_name_for(j.instance_id);
  s.image = j.image;
  s.instance_type = j.instance_type;
  s.public_ssh_key = j.public_ssh_key.value_or("");
  s.zone = zone;
  for (const auto& [k, v] : j.tags)
    if (v.is_string()) s.tags[std::string(k)] = std::string(v.as_string());
  s.deployment = deployment_;
  s.idempotency_key = j.cloud_key + "/" + zone;
  if (j.reservation_id) s.reservation_upstream = providers::reservation_name_for(*j.reservation_id);
  return s;
}

asio::awaitable<void> provider_actor::run(job j) {
  job_outcome o;
  try {
    if (j.kind == "create_instance") {
      o = co_await create_instance(j);
    } else if (j.kind == "delete_instance") {
      o = co_await delete_instance(j);
    } else if (j.kind == "reserve") {
      o = co_await reserve(j);
    } else {
      o = co_await release_reservation(j);
    }
  } catch (...) {
    --jobs_in_flight_;
    done_(j, job_outcome{job_outcome::kind::retry, std::chrono::seconds(5), "internal error"});
    throw;  // supervision logs and counts it
  }
  --jobs_in_flight_;
  done_(std::move(j), std::move(o));
}

asio::awaitable<job_outcome> provider_actor::create_instance(job& j) {
  if (j.delete_requested || (j.state != "creating" && j.state != "starting")) {
    co_return job_outcome{};  // deleted or settled meanwhile: the delete job owns it now
  }
  const std::string name = providers::vm_name_for(j.instance_id);

  // A VM from an earlier attempt (this process or one that died) is adopted, not doubled.
  for (const auto& zone : string_list(j.intent, "zones_tried")) {
    const vm_ref ref{name, zone, ""};
    auto found = co_await driver_->get(ref, after(call_timeout));
    if (found) {
      note_success();
      auto waiting = wait_until_running(j, std::move(*found));
      co_return co_await std::move(waiting);
    }
    if (!found.error().is(errc::cloud_not_found)) {
      note_failure(found.error());
      co_return outcome_of(found.error(), j);
    }
  }

  std::vector<std::string> tried = string_list(j.intent, "zones_tried");
  std::vector<std::string> capacity_errors;
  for (const auto& zone : zones_to_try(j)) {
    if (std::find(tried.begin(), tried.end(), zone) == tried.end()) tried.push_back(zone);
    json::array tried_json;
    for (const auto& z : tried) tried_json.emplace_back(z);
    // Intent before action: a crash after the call finds the VM by this record.
    const json::object args_1{{"name", name}, {"zone", zone}, {"zones_tried", tried_json}};
    auto recorded = co_await store_.record_intent(j, args_1);
    if (!recorded) co_return outcome_of(recorded.error(), j);
    j.intent["zones_tried"] = tried_json;

    const auto spec = spec_for(j, zone);
    auto created = co_await driver_->create(spec, after(call_timeout));
    if (!created && created.error().is(errc::cloud_already_exists)) {
      const vm_ref ref{name, zone, ""};
      created = co_await driver_->get(ref, after(call_timeout));
    }
    if (created) {
      note_success();
      log::info("instance accepted by the cloud", {{"instance_id", j.instance_id},
                                                   {"provider", section_.name},
                                                   {"zone", zone},
                                                   {"upstream_id", created->upstream_id}});
      auto waiting = wait_until_running(j, std::move(*created));
      co_return co_await std::move(waiting);
    }
    const error& e = created.error();
    if (e.is(errc::cloud_capacity)) {
      avoid_until_[avoidance_key(zone, j.instance_type)] = steady_clock::now() + zone_avoidance;
      capacity_errors.push_back(zone + ": " + (e.detail.empty() ? e.message() : e.detail));
      log::warn("zone out of capacity, trying the next",
                {{"instance_id", j.instance_id}, {"provider", section_.name}, {"zone", zone}});
      continue;
    }
    note_failure(e);
    log::warn("create failed", {{"instance_id", j.instance_id},
                                {"provider", section_.name},
                                {"zone", zone},
                                {"error", e.message()}});
    co_return outcome_of(e, j);
  }
  std::string reason = "no zone had capacity";
  for (const auto& c : capacity_errors) reason += "; " + c;
  job_outcome o = outcome_of(error(errc::cloud_capacity, reason), j);
  o.error = reason;
  co_return o;
}

asio::awaitable<job_outcome> provider_actor::wait_until_running(job& j, vm v) {
  const auto started = steady_clock::now();
  if (v.status != vm_status::running || !v.ip_address) {
    auto moved = co_await store_.mark_starting(j.instance_id, v.upstream_id, v.zone);
    if (!moved) co_return outcome_of(moved.error(), j);
  }
  std::chrono::milliseconds poll{100};
  for (;;) {
    if (v.status == vm_status::running && v.ip_address) {
      auto moved =
          co_await store_.mark_running(j.instance_id, *v.ip_address, v.upstream_id, v.zone);
      if (!moved) co_return outcome_of(moved.error(), j);
      if (*moved) {
        log::info("instance running", {{"instance_id", j.instance_id},
                                       {"provider", section_.name},
                                       {"ip_address", *v.ip_address}});
      }
      co_return job_outcome{};  // not moved: it is being deleted, which the delete job owns
    }
    if (v.status == vm_status::stopping || v.status == vm_status::terminated) {
      co_return job_outcome{job_outcome::kind::failed,
                            {},
                            "the VM stopped while starting (status " +
                                std::string(providers::to_string(v.status)) + ")"};
    }
    if (steady_clock::now() - started > boot_timeout) {
      co_return outcome_of(error(errc::cloud_transient, "the VM did not start within 10 minutes"),
                           j);
    }
    co_await sleep_for(poll);
    poll = std::min(poll * 2, std::chrono::milliseconds(5000));
    // Deleted meanwhile? Then stop polling; the delete job takes the VM down.
    auto state = co_await store_.instance_state(j.instance_id);
    if (state && *state != "creating" && *state != "starting") co_return job_outcome{};
    const vm_ref ref{v.name, v.zone, v.upstream_id};
    auto got = co_await driver_->get(ref, after(call_timeout));
    if (!got) {
      if (got.error().is(errc::cloud_not_found)) {
        co_return job_outcome{
            job_outcome::kind::failed, {}, "vanished at the provider while starting"};
      }
      note_failure(got.error());
      co_return outcome_of(got.error(), j);
    }
    note_success();
    v = std::move(*got);
  }
}

asio::awaitable<job_outcome> provider_actor::delete_instance(job& j) {
  if (j.state == "terminated") co_return job_outcome{};
  // A create job still at work would race us: cancel it if it has not started, else wait.
  auto view = co_await store_.settle_create_job(j.instance_id);
  if (!view) co_return outcome_of(view.error(), j);
  if (view->active) {
    co_return job_outcome{job_outcome::kind::wait, std::chrono::milliseconds(500),
                          "waiting for the create job to finish", false};
  }
  const std::string name = providers::vm_name_for(j.instance_id);
  std::vector<std::string> zones;
  if (j.zone) zones.push_back(*j.zone);
  for (auto& z : string_list(view->intent, "zones_tried"))
    if (std::find(zones.begin(), zones.end(), z) == zones.end()) zones.push_back(z);
  if (zones.empty() && !view->exists) zones = driver_->zones();
  for (const auto& zone : zones) {
    const vm_ref ref{name, zone, j.upstream_id.value_or("")};
    const std::string key = j.cloud_key + "/" + zone;
    auto gone = co_await driver_->destroy(ref, key, after(call_timeout));
    if (!gone) {
      note_failure(gone.error());
      log::warn("delete failed, will retry", {{"instance_id", j.instance_id},
                                              {"provider", section_.name},
                                              {"zone", zone},
                                              {"error", gone.error().message()}});
      co_return outcome_of(gone.error(), j);
    }
    note_success();
  }
  auto moved = co_await store_.mark_terminated(j.instance_id);
  if (!moved) co_return outcome_of(moved.error(), j);
  log::info("instance terminated", {{"instance_id", j.instance_id}, {"provider", section_.name}});
  co_return job_outcome{};
}

}  // namespace cloudbrain
