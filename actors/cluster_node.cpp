#include "actors/cluster_node.hpp"

#include "core/backoff.hpp"
#include "core/log.hpp"
#include "core/pg/text.hpp"
#include "core/uuid.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <charconv>

namespace cloudbrain {
namespace asio = boost::asio;

namespace {

// A name is refused only while the process holding it still has its session: a restarted node
// (same name, new incarnation) takes its row over once the old session is gone.
constexpr const char* register_sql = R"(
INSERT INTO nodes AS n (name, incarnation, version, address, backend_pid, started_at, heartbeat_at)
VALUES ($1, $2::uuid, $3, $4, pg_backend_pid(), now(), now())
ON CONFLICT (name) DO UPDATE
   SET incarnation = EXCLUDED.incarnation, version = EXCLUDED.version,
       address = EXCLUDED.address, backend_pid = EXCLUDED.backend_pid, heartbeat_at = now(),
       started_at = CASE WHEN n.incarnation = EXCLUDED.incarnation THEN n.started_at
                         ELSE now() END
 WHERE n.incarnation = EXCLUDED.incarnation OR n.backend_pid IS NULL
    OR NOT EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.pid = n.backend_pid)
RETURNING 1)";

constexpr const char* heartbeat_sql = R"(
UPDATE nodes SET heartbeat_at = now(), backend_pid = pg_backend_pid()
WHERE name = $1 AND incarnation = $2::uuid)";

constexpr const char* try_locks_sql = R"(
SELECT id, pg_try_advisory_lock($2::int, id) FROM unnest($1::int[]) AS id)";

constexpr const char* record_leader_sql = R"(
UPDATE cluster_roles SET leader = $1, leader_since = now() WHERE id = ANY($2::int[]))";

constexpr const char* purge_sql =
    "DELETE FROM nodes WHERE heartbeat_at < now() - interval '1 hour' AND name <> $1";

constexpr const char* add_roles_sql = R"(
INSERT INTO cluster_roles (provider, role)
SELECT p, r FROM unnest($1::text[], $2::text[]) AS x(p, r)
ON CONFLICT (provider, role) DO NOTHING)";

constexpr const char* role_ids_sql = R"(
SELECT c.id, c.provider, c.role
FROM cluster_roles c JOIN unnest($1::text[], $2::text[]) AS x(p, r)
  ON c.provider = x.p AND c.role = x.r)";

constexpr const char* leave_sql = "SELECT pg_advisory_unlock_all()";
constexpr const char* unregister_sql =
    "DELETE FROM nodes WHERE name = $1 AND incarnation = $2::uuid";

constexpr unsigned purge_every_ticks = 60;

std::int64_t number(std::string_view s) {
  std::int64_t v = 0;
  std::from_chars(s.data(), s.data() + s.size(), v);
  return v;
}

}  // namespace

cluster_node::cluster_node(asio::any_io_executor ex, std::string direct_url, node_identity me,
                           health& status, revoked_callback on_revoked, cluster_timing timing)
    : actor(std::move(ex), "cluster_node", 256),
      direct_url_(std::move(direct_url)),
      me_(std::move(me)),
      incarnation_(uuid::generate_v7().str()),
      health_(status),
      on_revoked_(std::move(on_revoked)),
      timing_(timing) {}

pg::connect_options cluster_node::session_options() const {
  pg::connect_options o;
  o.application_name = "cloudbrain-node";
  o.statement_timeout = timing_.statement_timeout;
  o.client_connection_check_interval = std::chrono::milliseconds(1000);
  o.idle_session_timeout = timing_.session_idle_timeout;
  o.tcp_user_timeout = timing_.statement_timeout + timing_.tick;
  return o;
}

asio::awaitable<result<std::unique_ptr<pg::connection>>> cluster_node::open_session(deadline dl) {
  auto ex = co_await asio::this_coro::executor;
  pg::connect_options options = session_options();
  auto connecting = pg::connection::connect(ex, direct_url_, dl, std::move(options));
  co_return co_await std::move(connecting);
}

asio::awaitable<result<bool>> cluster_node::register_node(pg::connection& c, deadline dl) {
  const std::vector<pg::param> args{me_.name, incarnation_, me_.version, me_.address};
  auto r = co_await c.query(register_sql, args, dl);
  if (!r) co_return r.error();
  co_return r->size() == 1;
}

asio::awaitable<result<void>> cluster_node::join(deadline dl) {
  // On the strand, like every touch of this actor's state.
  co_return co_await asio::co_spawn(
      strand(),
      [this, dl]() -> asio::awaitable<result<void>> {
        backoff_policy policy{std::chrono::milliseconds(200), std::chrono::milliseconds(1000)};
        for (unsigned attempt = 0;; ++attempt) {
          auto opening = open_session(std::min(dl, after(std::chrono::seconds(5))));
          auto session = co_await std::move(opening);
          if (!session) co_return session.error();
          auto registering = register_node(**session, dl);
          auto registered = co_await std::move(registering);
          if (!registered) co_return registered.error();
          if (*registered) {
            joined_ = std::move(*session);
            log::info("joined the cluster",
                      {{"address", me_.address}, {"incarnation", incarnation_}});
            co_return result<void>{};
          }
          // The name's previous process may be a moment from losing its session (it was
          // killed, or it froze and the server is about to end its idle session).
          if (steady_clock::now() + policy.ceiling(attempt) >= dl) {
            co_return fail(errc::conflict, "node name '" + me_.name +
                                               "' is in use by a running process; give each "
                                               "process its own node-name");
          }
          co_await sleep_for(policy.delay(attempt, rng_));
        }
      },
      asio::use_awaitable);
}

void cluster_node::start() {
  started_ = true;
  spawn(loop(), "loop");
}

void cluster_node::handle(cluster_message&& m) {
  auto& offer = std::get<cluster_offer_roles>(m);
  for (leadership* l : offer.roles) roles_.push_back(role_slot{l, 0, false});
}

void cluster_node::offer(std::vector<leadership*> roles) {
  // Not through the mailbox: a reload must not be refused for a full one.
  asio::dispatch(strand(), [this, roles = std::move(roles)]() mutable {
    handle(cluster_message{cluster_offer_roles{std::move(roles)}});
  });
}

void cluster_node::drop_all(std::string_view why) {
  for (auto& r : roles_) {
    if (!r.held) continue;
    r.held = false;
    r.lead->drop();
    stats_.roles_lost.fetch_add(1, std::memory_order_relaxed);
    log::warn("cluster role given up",
              {{"provider", r.lead->provider()}, {"role", r.lead->role()}, {"reason", why}});
  }
}

asio::awaitable<result<void>> cluster_node::register_roles(pg::connection& c) {
  std::vector<std::string> providers;
  std::vector<std::string> names;
  for (const auto& r : roles_) {
    if (r.id != 0) continue;
    providers.push_back(r.lead->provider());
    names.push_back(r.lead->role());
  }
  if (providers.empty()) co_return result<void>{};
  const std::vector<pg::param> args{pg::text_array(providers), pg::text_array(names)};
  const pg::batch_item items[] = {pg::batch_item(add_roles_sql, args),
                                  pg::batch_item(role_ids_sql, args)};
  auto got = co_await c.pipeline(items, after(timing_.statement_timeout));
  if (!got) co_return got.error();
  const pg::rows& ids = (*got)[1];
  for (int i = 0; i < static_cast<int>(ids.size()); ++i) {
    for (auto& r : roles_) {
      if (r.id == 0 && r.lead->provider() == ids.text(i, 1) && r.lead->role() == ids.text(i, 2)) {
        r.id = static_cast<std::int32_t>(number(ids.text(i, 0)));
      }
    }
  }
  co_return result<void>{};
}

asio::awaitable<result<void>> cluster_node::tick(pg::connection& c) {
  if (auto registering = co_await register_roles(c); !registering) co_return registering.error();
  // Indices, not references: an offer may add roles while this waits for the server.
  std::vector<std::size_t> trying;
  std::string ids = "{";
  for (std::size_t i = 0; i < roles_.size(); ++i) {
    if (roles_[i].held || roles_[i].id == 0) continue;
    if (ids.size() > 1) ids += ',';
    ids += std::to_string(roles_[i].id);
    trying.push_back(i);
  }
  ids += '}';
  const std::vector<pg::param> beat{me_.name, incarnation_};
  const std::vector<pg::param> locks{ids, std::to_string(role_lock_space)};
  std::vector<pg::batch_item> items{pg::batch_item(heartbeat_sql, beat)};
  if (!trying.empty()) items.emplace_back(try_locks_sql, locks);
  const auto sent = steady_clock::now();
  auto got = co_await c.pipeline(items, sent + timing_.statement_timeout);
  if (!got) co_return got.error();
  if ((*got)[0].affected() != 1) {
    // Our row was taken over by a process of the same name while we were away: ours again only
    // if that one is gone. Until then this process holds nothing.
    auto again = co_await register_node(c, after(timing_.statement_timeout));
    if (!again) co_return again.error();
    if (!*again) {
      co_return fail(errc::conflict,
                     "another running process has taken this node's name '" + me_.name + "'");
    }
  }
  stats_.heartbeats.fetch_add(1, std::memory_order_relaxed);
  const auto valid_until = sent + timing_.hold_for;
  std::vector<std::size_t> won;
  if (!trying.empty()) {
    const pg::rows& answers = (*got)[1];
    for (int i = 0; i < static_cast<int>(answers.size()); ++i) {
      if (answers.text(i, 1) != "t") continue;
      const auto id = number(answers.text(i, 0));
      for (const std::size_t at : trying) {
        if (roles_[at].id == id) won.push_back(at);
      }
    }
  }
  for (auto& r : roles_) {
    if (r.held) r.lead->hold_until(valid_until);
  }
  if (!won.empty()) {
    std::string won_ids = "{";
    for (const std::size_t at : won) {
      auto& r = roles_[at];
      r.held = true;
      r.lead->hold_until(valid_until);
      stats_.roles_gained.fetch_add(1, std::memory_order_relaxed);
      log::info("cluster role taken", {{"provider", r.lead->provider()}, {"role", r.lead->role()}});
      if (won_ids.size() > 1) won_ids += ',';
      won_ids += std::to_string(r.id);
    }
    won_ids += '}';
    const std::vector<pg::param> record{me_.name, won_ids};
    auto recorded = co_await c.query(record_leader_sql, record, after(timing_.statement_timeout));
    if (!recorded) co_return recorded.error();
  }
  co_return result<void>{};
}

asio::awaitable<void> cluster_node::serve_session(pg::connection& c) {
  auto listening = co_await c.listen("cloudbrain_tokens", after(timing_.statement_timeout));
  if (!listening) {
    log::warn("cluster session: LISTEN failed", {{"error", listening.error().message()}});
    co_return;
  }
  stats_.session_up.store(true);
  health_.clear_warning("cluster");
  unsigned ticks = 0;
  auto next = steady_clock::now();
  std::uniform_int_distribution<std::int64_t> jitter(0, timing_.tick.count() / 10);
  while (!leaving_) {
    if (steady_clock::now() >= next) {
      auto ticking = tick(c);
      if (auto ticked = co_await std::move(ticking); !ticked) {
        stats_.heartbeat_failures.fetch_add(1, std::memory_order_relaxed);
        log::warn("cluster heartbeat failed; the session is given up",
                  {{"error", ticked.error().message()}});
        break;
      }
      if (++ticks % purge_every_ticks == 0) {
        const std::vector<pg::param> me{me_.name};
        auto purged = co_await c.query(purge_sql, me, after(timing_.statement_timeout));
        if (!purged) break;
      }
      next = steady_clock::now() + timing_.tick -
             std::chrono::milliseconds(timing_.tick.count() / 20) +
             std::chrono::milliseconds(jitter(rng_));
    }
    auto n = co_await c.wait_notification(next);
    if (n) {
      if (n->channel == "cloudbrain_tokens") {
        std::int64_t id = 0;
        const auto& p = n->payload;
        if (std::from_chars(p.data(), p.data() + p.size(), id).ptr == p.data() + p.size()) {
          stats_.revocations_heard.fetch_add(1, std::memory_order_relaxed);
          on_revoked_(id);
        }
      }
      continue;
    }
    if (n.error().is(errc::timeout)) continue;
    log::warn("cluster session lost", {{"error", n.error().message()}});
    break;
  }
  stats_.session_up.store(false);
}

asio::awaitable<void> cluster_node::loop() {
  backoff_policy policy{std::chrono::milliseconds(100), std::chrono::milliseconds(2000)};
  unsigned failures = 0;
  std::unique_ptr<pg::connection> session = std::move(joined_);
  while (!leaving_) {
    if (!session) {
      auto opening = open_session(after(std::chrono::seconds(5)));
      auto opened = co_await std::move(opening);
      if (opened) {
        auto registering = register_node(**opened, after(timing_.statement_timeout));
        auto registered = co_await std::move(registering);
        if (registered && *registered) {
          session = std::move(*opened);
        } else {
          log::warn("cluster session: registering this node failed",
                    {{"error", registered ? std::string("the name is taken by a running process")
                                          : registered.error().message()}});
        }
      } else {
        log::warn("cluster session: cannot connect", {{"error", opened.error().message()}});
      }
    }
    if (session) {
      stats_.sessions.fetch_add(1, std::memory_order_relaxed);
      failures = 0;
      auto serving = serve_session(*session);
      co_await std::move(serving);
      if (leaving_) break;
      // The server may still think the session alive; closing it makes sure it lets go.
      session.reset();
    }
    drop_all("the coordination session ended");
    health_.set_warning("cluster",
                        "cluster session down: this node takes no cluster-wide role until it is "
                        "back");
    for (auto& r : roles_) r.id = 0;  // asked again on the next session (a restore may renumber)
    co_await sleep_for(policy.delay(failures++, rng_));
  }
  // Leaving: let go of every role at once, then of the row.
  if (session && session->healthy()) {
    auto unlocked = co_await session->query(leave_sql, {}, after(timing_.statement_timeout));
    const std::vector<pg::param> me{me_.name, incarnation_};
    auto gone = co_await session->query(unregister_sql, me, after(timing_.statement_timeout));
    if (!unlocked || !gone) log::warn("leaving the cluster cleanly failed");
  }
  session.reset();
  left_ = true;
  log::info("left the cluster");
}

asio::awaitable<void> cluster_node::leave(deadline dl) {
  co_await asio::co_spawn(strand(), leave_here(dl), asio::use_awaitable);
}

asio::awaitable<void> cluster_node::leave_here(deadline dl) {
  leaving_ = true;
  drop_all("shutting down");
  close();
  if (!started_) {
    joined_.reset();
    co_return;
  }
  while (!left_ && steady_clock::now() < dl) co_await sleep_for(std::chrono::milliseconds(50));
}

}  // namespace cloudbrain
