#include "actors/scheduler.hpp"

#include "core/pg/connection.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace cloudbrain {
namespace asio = boost::asio;

scheduler::scheduler(asio::any_io_executor ex, instance_store& store, std::string conninfo,
                     std::chrono::milliseconds lease)
    : actor(std::move(ex), "scheduler", 65536),
      store_(store),
      conninfo_(std::move(conninfo)),
      lease_(lease) {}

void scheduler::add_provider(provider_actor& p) {
  slots_[p.section().name] = slot{&p, 0, false, false};
}

void scheduler::add_provider_live(provider_actor& p) {
  // Not through the mailbox: a reload must not be refused because jobs are busy.
  asio::dispatch(strand(), [this, &p] {
    add_provider(p);
    note_running(p.section().name, slots_[p.section().name]);
    claim_more();
  });
}

void scheduler::start() {
  spawn(listen_loop(), "listen_loop");
  spawn(tick_loop(), "tick_loop");
  spawn(renew_loop(), "renew_loop");
}

void scheduler::on_restart() {
  for (auto& [name, s] : slots_) s.claiming = false;
  claim_more();
}

void scheduler::handle(scheduler_message&& m) {
  if (auto* d = std::get_if<job_done>(&m)) {
    in_flight_.erase(d->j.id);
    if (auto it = slots_.find(d->j.provider); it != slots_.end() && it->second.in_flight > 0) {
      --it->second.in_flight;
      note_running(it->first, it->second);
    }
    stats_.running.store(static_cast<std::int64_t>(in_flight_.size()));
    spawn(record(std::move(d->j), std::move(d->outcome)), "record");
  }
  claim_more();
}

void scheduler::note_running(const std::string& provider, const slot& s) {
  if (metrics_.running) metrics_.running->with({provider}).set(static_cast<double>(s.in_flight));
}

void scheduler::claim_more() {
  if (draining_) return;
  for (auto& [name, s] : slots_) {
    if (s.claiming) {
      s.again = true;
      continue;
    }
    // The provider's capacity now: 0 while its out-of-tree driver is away, so its jobs stay
    // queued (not failed, no attempt used) until one connects and wakes us.
    if (s.in_flight >= s.actor->capacity()) continue;
    s.claiming = true;
    s.again = false;
    spawn(claim(name), "claim");
  }
}

asio::awaitable<void> scheduler::claim(std::string provider) {
  auto& s = slots_.at(provider);
  for (;;) {
    const std::size_t capacity = s.actor->capacity();
    const std::size_t room = capacity > s.in_flight ? capacity - s.in_flight : 0;
    if (room == 0 || draining_) break;
    auto jobs = co_await store_.claim(provider, room, lease_, capacity);
    if (!jobs) {
      log::warn(
          "claiming jobs failed",
          {{"actor", "scheduler"}, {"provider", provider}, {"error", jobs.error().message()}});
      break;  // the tick tries again
    }
    for (auto& j : *jobs) {
      const auto id = j.id;
      in_flight_[id] = provider;
      ++s.in_flight;
      stats_.claimed.fetch_add(1, std::memory_order_relaxed);
      if (metrics_.claimed) metrics_.claimed->with({provider}).inc();
      if (!s.actor->tell(run_job{std::move(j)})) {
        // Cannot happen while capacity ≤ the mailbox; if it does, the lease brings it back.
        in_flight_.erase(id);
        --s.in_flight;
        log::error("provider mailbox full; job left to its lease", {{"provider", provider}});
      }
    }
    stats_.running.store(static_cast<std::int64_t>(in_flight_.size()));
    note_running(provider, s);
    if (jobs->size() < room && !s.again) break;  // the queue is empty for now
    s.again = false;
  }
  s.claiming = false;
}

asio::awaitable<void> scheduler::record(job j, job_outcome o) {
  ++records_pending_;
  auto recording = record_here(std::move(j), std::move(o));
  co_await std::move(recording);
  --records_pending_;
}

asio::awaitable<void> scheduler::record_here(job j, job_outcome o) {
  using k = job_outcome::kind;
  switch (o.what) {
    case k::succeeded: stats_.succeeded.fetch_add(1, std::memory_order_relaxed); break;
    case k::failed: stats_.failed.fetch_add(1, std::memory_order_relaxed); break;
    default: stats_.retried.fetch_add(1, std::memory_order_relaxed); break;
  }
  if (metrics_.outcomes) {
    const std::string_view outcome = o.gives_up(j)            ? "failed"
                                     : o.what == k::succeeded ? "succeeded"
                                     : o.what == k::wait      ? "waiting"
                                                              : "retried";
    metrics_.outcomes->with({j.provider, j.kind, outcome}).inc();
  }
  if (o.gives_up(j)) {
    log::warn("job failed", {{"job_id", j.id},
                             {"kind", j.kind},
                             {"instance_id", j.instance_id},
                             {"attempts", j.attempts},
                             {"error", o.error}});
  }
  // The database may be briefly away; if it stays away the lease runs out and the job is
  // simply run again, which its idempotency makes harmless.
  backoff_policy policy{std::chrono::milliseconds(100), std::chrono::milliseconds(2000)};
  std::mt19937 rng(static_cast<unsigned>(j.id));
  for (unsigned attempt = 0; attempt < 8; ++attempt) {
    auto r = co_await store_.finish(j, o);
    if (r) co_return;
    log::warn("recording a job outcome failed", {{"job_id", j.id}, {"error", r.error().message()}});
    co_await sleep_for(policy.delay(attempt, rng));
  }
}

asio::awaitable<void> scheduler::listen_loop() {
  backoff_policy policy{std::chrono::milliseconds(200), std::chrono::milliseconds(5000)};
  std::mt19937 rng(std::random_device{}());
  unsigned failures = 0;
  while (!draining_) {
    auto ex = co_await asio::this_coro::executor;
    // Arguments named first: GCC 12 bitwise-copies by-value class arguments (here the
    // defaulted connect_options) that are temporaries inside a co_await full-expression.
    pg::connect_options options;
    auto connecting =
        pg::connection::connect(ex, conninfo_, after(std::chrono::seconds(5)), std::move(options));
    auto conn = co_await std::move(connecting);
    if (conn) {
      auto listening = co_await (*conn)->listen("cloudbrain_jobs", after(std::chrono::seconds(5)));
      if (listening) {
        failures = 0;
        claim_more();  // catch up on what arrived while we were not listening
        while (!draining_) {
          auto n = co_await (*conn)->wait_notification(after(std::chrono::seconds(30)));
          if (n) {
            if (!tell(jobs_available{})) claim_more();
            continue;
          }
          if (n.error().is(errc::timeout)) continue;
          break;
        }
      }
    }
    if (draining_) break;
    co_await sleep_for(policy.delay(failures++, rng));
  }
}

asio::awaitable<void> scheduler::tick_loop() {
  unsigned ticks = 0;
  while (!draining_) {
    co_await sleep_for(std::chrono::seconds(1));
    claim_more();
    if (++ticks % 300 == 0) {
      // Idempotency records answer replays for 24 hours; after that they are only weight.
      auto purged = co_await store_.purge_idempotency_keys();
      if (!purged)
        log::warn("purging idempotency keys failed", {{"error", purged.error().message()}});
    }
  }
}

asio::awaitable<void> scheduler::renew_loop() {
  while (!draining_ || !in_flight_.empty()) {
    co_await sleep_for(lease_ / 3);
    if (in_flight_.empty()) {
      if (draining_) break;
      continue;
    }
    std::vector<std::int64_t> ids;
    ids.reserve(in_flight_.size());
    for (const auto& [id, p] : in_flight_) ids.push_back(id);
    auto r = co_await store_.renew(ids, lease_);
    if (!r) log::warn("renewing job leases failed", {{"error", r.error().message()}});
  }
}

asio::awaitable<void> scheduler::drain(deadline dl) {
  // On the scheduler's strand, like every other touch of its state.
  co_await asio::co_spawn(strand(), drain_here(dl), asio::use_awaitable);
}

asio::awaitable<void> scheduler::drain_here(deadline dl) {
  draining_ = true;
  while ((!in_flight_.empty() || records_pending_ > 0) && steady_clock::now() < dl) {
    co_await sleep_for(std::chrono::milliseconds(50));
  }
  // Whatever is still ours goes back to the queue for another process (or our restart).
  auto r = co_await store_.release_all();
  if (!r) log::warn("handing back job leases failed", {{"error", r.error().message()}});
  log::info("scheduler drained", {{"jobs_left", in_flight_.size()}});
}

}  // namespace cloudbrain
