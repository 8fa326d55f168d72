#include "actors/reservation_set_store.hpp"

#include "core/encoding.hpp"
#include "core/uuid.hpp"

#include <boost/json/array.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <set>

namespace cloudbrain {
namespace asio = boost::asio;
namespace json = boost::json;

namespace {

using params = std::vector<pg::param>;

// The set `s` as API JSON, its members read from `members` (a table or a CTE, as `r`).
std::string set_json(std::string_view members) {
  return std::string(R"(json_build_object(
  'id', s.id, 'state', s.state, 'on_partial', s.on_partial,
  'ends_at', to_char(s.ends_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
  'tags', s.tags, 'error_reason', s.error_reason, 'cancel_reason', s.cancel_reason,
  'created_at', to_char(s.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
  'updated_at', to_char(s.updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
  'reservations', (SELECT coalesce(json_agg()") +
         reservation_json_sql + " ORDER BY r.set_index), '[]'::json) FROM " + std::string(members) +
         " r WHERE r.set_id = s.id))";
}

// Serialises reservations per provider for the rest of the transaction, as a single
// reservation's create does, so that concurrent requests cannot all fit under a cap.
const char* const cap_lock_sql =
    "SELECT pg_advisory_xact_lock(hashtextextended('cloudbrain.reservations/' || $1, 0))";

const std::string create_sql = R"(
WITH p AS (
  SELECT x.id, x.idx, x.provider, x.instance_type, x.count,
         ARRAY(SELECT jsonb_array_elements_text(x.zones)) AS zones
  FROM jsonb_to_recordset($2::jsonb)
       AS x(id uuid, idx int, provider text, instance_type text, count int, zones jsonb)),
need AS (SELECT provider, sum(count)::bigint AS asked FROM p GROUP BY provider),
held AS (
  SELECT need.provider, need.asked, ($3::jsonb ->> need.provider)::bigint AS cap,
         (SELECT coalesce(sum(r.count), 0)::bigint FROM reservations r
          WHERE r.provider = need.provider
            AND r.state IN ('pending', 'active', 'cancelling')) AS n
  FROM need),
fits AS (SELECT bool_and(n + asked <= cap) AS ok FROM held),
s AS (
  INSERT INTO reservation_sets AS s (id, on_partial, ends_at, tags, created_by)
  SELECT $1::uuid, $6, $4::timestamptz, $5::jsonb, $7::bigint FROM fits WHERE fits.ok
  RETURNING s.*),
ins AS (
  INSERT INTO reservations AS r (id, provider, instance_type, count, zones, ends_at, tags,
                                 created_by, set_id, set_index)
  SELECT p.id, p.provider, p.instance_type, p.count, p.zones, s.ends_at, s.tags, s.created_by,
         s.id, p.idx
  FROM p CROSS JOIN s
  RETURNING r.*),
j AS (
  INSERT INTO jobs (kind, reservation_id, provider, cloud_key, max_attempts)
  SELECT 'reserve', id, provider, 'reserve-' || id, $8::int FROM ins RETURNING 1),
body AS (SELECT )" + set_json("ins") +
                               R"(::text AS b FROM s),
k AS (
  INSERT INTO idempotency_keys (token_id, key, request_hash, reservation_set_id,
                                response_status, response_body)
  SELECT $7::bigint, $9, decode($10, 'hex'), (SELECT id FROM s), 201, b::jsonb
  FROM body WHERE $9::text IS NOT NULL
  RETURNING 1)
SELECT (SELECT b FROM body),
       (SELECT string_agg(format('provider %L allows at most %s reserved instances '
                                 '(max-reserved-instances); %s are reserved now and the set '
                                 'asks for %s more', provider, cap, n, asked), '; '
                          ORDER BY provider)
        FROM held WHERE n + asked > cap),
       (SELECT count(*) FROM j), (SELECT count(*) FROM k))";

// $2: the creator the caller is confined to, NULL for any.
const std::string get_sql = "SELECT " + set_json("reservations") +
                            "::text FROM reservation_sets s WHERE s.id = $1::uuid "
                            "AND ($2::bigint IS NULL OR s.created_by = $2::bigint)";

// Two statements, as for reservations: one for a scoped caller (`s.created_by = $6`, on the
// creator's index) and one for a caller that sees everything.
std::string list_sql(bool scoped) {
  return "SELECT " + set_json("reservations") + R"(::text,
  to_char(s.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'), s.id::text
FROM reservation_sets s
WHERE ($1::reservation_set_state IS NULL OR s.state = $1::reservation_set_state)
  AND ($2::jsonb IS NULL OR s.tags @> $2::jsonb)
  AND ($3::timestamptz IS NULL OR (s.created_at, s.id) < ($3::timestamptz, $4::uuid)))" +
         std::string(scoped ? "\n  AND s.created_by = $6::bigint" : "") + R"(
ORDER BY s.created_at DESC, s.id DESC
LIMIT $5::int)";
}
const std::string list_all_sql = list_sql(false);
const std::string list_own_sql = list_sql(true);

// The set first, then its members (see the class comment).
const std::string cancel_sql = std::string(R"(
WITH s AS (
  UPDATE reservation_sets s SET state = 'cancelling', cancel_reason = 'requested'
  WHERE s.id = $1::uuid AND s.state IN ('pending', 'active', 'partial')
    AND ($2::bigint IS NULL OR s.created_by = $2::bigint)
  RETURNING s.id),
upd AS (
  UPDATE reservations r SET state = 'cancelling', cancel_reason = 'requested'
  WHERE r.set_id IN (SELECT id FROM s) AND r.state IN ('pending', 'active')
  RETURNING r.id, r.provider),)") +
                               release_job_cte + R"(
SELECT (SELECT count(*) FROM s), (SELECT count(*) FROM j))";

// Members alone: the sets are read, not locked.
const std::string cancel_members_sql = std::string(R"(
WITH upd AS (
  UPDATE reservations r
     SET state = 'cancelling',
         cancel_reason = CASE WHEN s.cancel_reason = 'requested' THEN 'requested'
                              ELSE 'set_failed' END
    FROM reservation_sets s
   WHERE r.set_id = s.id AND s.state = 'cancelling' AND r.state IN ('pending', 'active')
     AND s.id IN (SELECT c.id FROM reservation_sets c
                  WHERE c.state = 'cancelling'
                    AND EXISTS (SELECT 1 FROM reservations cr WHERE cr.set_id = c.id
                                AND cr.state IN ('pending', 'active'))
                  ORDER BY c.id LIMIT $1::int)
  RETURNING r.id, r.provider),)") + release_job_cte +
                                       R"(
SELECT id::text FROM upd)";

// What each placement came to, for a set that failed or holds only part of what it asked.
const char* const placement_reasons_sql = R"((
  SELECT string_agg(format('placement %s (%s, %s %s): %s', r.set_index + 1, r.provider, r.count,
                           r.instance_type,
                           CASE WHEN r.state = 'failed' THEN coalesce(r.error_reason, 'failed')
                                WHEN r.cancel_reason = 'set_failed'
                                     OR (nx.now_state IN ('cancelling', 'failed')
                                         AND r.state IN ('pending', 'active'))
                                  THEN 'cancelled because another placement failed'
                                WHEN r.state IN ('cancelling', 'cancelled', 'expired')
                                  THEN r.state || ' (' || coalesce(r.cancel_reason, '-') || ')'
                                ELSE r.state || coalesce(' in ' || r.zone, '')
                           END), '; ' ORDER BY r.set_index)
  FROM reservations r WHERE r.set_id = nx.id))";

// Up to $1 unsettled sets after the cursor $2 (none: from the first) are read; only those that
// move are locked, and those locked by someone else (a twin's pass, a DELETE) are skipped: a
// later pass sees them. A set that stays as it is costs no write.
const std::string advance_sql = std::string(R"(
WITH cand AS (
  SELECT s.id, s.state, s.on_partial, s.cancel_reason FROM reservation_sets s
  WHERE s.state IN ('pending', 'active', 'partial', 'cancelling')
    AND ($2::uuid IS NULL OR s.id > $2::uuid)
  ORDER BY s.id
  LIMIT $1::int),
m AS (
  SELECT r.set_id AS id, count(*) AS n,
         count(*) FILTER (WHERE r.state = 'pending') AS pending,
         count(*) FILTER (WHERE r.state = 'active') AS active,
         count(*) FILTER (WHERE r.state = 'cancelling') AS cancelling,
         count(*) FILTER (WHERE r.state = 'failed') AS failed,
         count(*) FILTER (WHERE r.state = 'expired') AS expired,
         count(*) FILTER (WHERE r.state IN ('cancelled', 'expired')) AS ended,
         count(*) FILTER (WHERE r.state IN ('cancelling', 'cancelled')
                            AND r.cancel_reason IS DISTINCT FROM 'expired') AS cut
  FROM reservations r WHERE r.set_id IN (SELECT id FROM cand)
  GROUP BY r.set_id),
nx AS (
  SELECT c.id, c.state AS was, (CASE
    WHEN c.state = 'pending' AND c.on_partial = 'cancel_all'
         AND m.failed + m.cancelling + m.ended > 0 THEN 'cancelling'
    WHEN c.state = 'pending' AND m.pending > 0 THEN 'pending'
    WHEN c.state = 'pending' AND m.active = m.n THEN 'active'
    WHEN c.state = 'pending' AND m.active > 0 THEN 'partial'
    WHEN c.state = 'pending' THEN 'cancelling'
    WHEN c.state IN ('active', 'partial') AND m.pending + m.active + m.cancelling = 0 THEN
      CASE WHEN m.expired > 0 AND m.expired = m.n - m.failed THEN 'expired' ELSE 'cancelled' END
    WHEN c.state = 'active' AND m.cut > 0 THEN 'partial'
    WHEN c.state = 'cancelling' AND m.pending + m.active + m.cancelling = 0 THEN
      CASE WHEN c.cancel_reason = 'placement_failed' THEN 'failed' ELSE 'cancelled' END
    ELSE c.state::text
  END)::reservation_set_state AS now_state
  FROM cand c JOIN m ON m.id = c.id),
moving AS MATERIALIZED (
  SELECT s.id FROM reservation_sets s
  WHERE s.id IN (SELECT id FROM nx WHERE now_state <> was)
  ORDER BY s.id
  FOR UPDATE SKIP LOCKED),
upd AS (
  UPDATE reservation_sets s
     SET state = nx.now_state,
         cancel_reason = CASE
           WHEN nx.was = 'pending' AND nx.now_state = 'cancelling' THEN 'placement_failed'
           WHEN nx.was IN ('active', 'partial') AND nx.now_state = 'cancelled'
             THEN 'members_ended'
           ELSE s.cancel_reason END,
         error_reason = CASE
           WHEN nx.now_state = 'partial' AND nx.was = 'pending'
             OR nx.now_state = 'cancelling' AND nx.was = 'pending'
             OR nx.now_state = 'failed' THEN )") +
                                placement_reasons_sql + R"(
           ELSE s.error_reason END
    FROM nx
   WHERE s.id = nx.id AND s.id IN (SELECT id FROM moving) AND s.state = nx.was
     AND nx.now_state <> nx.was
  RETURNING s.id, nx.was, s.state, coalesce(s.error_reason, s.cancel_reason, '') AS reason)
SELECT (SELECT max(id::text) FROM cand), (SELECT count(*) FROM cand),
       (SELECT coalesce(json_agg(json_build_object('id', id, 'from', was, 'to', state,
                                                   'reason', reason)), '[]')::text FROM upd))";

const pg::statement stmt_set_get{"reservation_set_get", get_sql};
const pg::statement stmt_set_list{"reservation_set_list", list_all_sql};
const pg::statement stmt_set_list_own{"reservation_set_list_own", list_own_sql};
const pg::statement stmt_set_cancel_members{"reservation_set_cancel_members", cancel_members_sql};
const pg::statement stmt_set_advance{"reservation_set_advance", advance_sql};

}  // namespace

asio::awaitable<result<reservation_set_store::created>> reservation_set_store::create(
    reservation_set_request req, std::int64_t token_id, std::map<std::string, std::size_t> caps,
    std::optional<idempotent_request> idem) {
  for (int round = 0; round < 2; ++round) {
    if (idem) {
      auto finding = find_replay(pool_, token_id, *idem);
      auto prior = co_await std::move(finding);
      if (!prior) co_return prior.error();
      if (*prior) co_return created{std::move((*prior)->id), std::move((*prior)->body), true};
    }
    const std::string id = uuid::generate_v7().str();
    json::array placements;
    std::set<std::string> providers;
    for (std::size_t i = 0; i < req.placements.size(); ++i) {
      const auto& p = req.placements[i];
      json::array zones;
      for (const auto& z : p.zones) zones.emplace_back(z);
      placements.push_back(json::object{{"id", uuid::generate_v7().str()},
                                        {"idx", i},
                                        {"provider", p.provider},
                                        {"instance_type", p.instance_type},
                                        {"count", p.count},
                                        {"zones", std::move(zones)}});
      providers.insert(p.provider);
    }
    json::object cap_json;
    for (const auto& name : providers) cap_json[name] = caps[name];

    // The providers' locks in one order (the set's sorted), so that two sets never wait on each
    // other; then the statement.
    std::vector<params> lock_args;
    lock_args.reserve(providers.size());
    for (const auto& name : providers) lock_args.push_back(params{name});
    const params args{id,
                      json::serialize(placements),
                      json::serialize(cap_json),
                      format_rfc3339(req.ends_at),
                      json::serialize(req.tags),
                      req.on_partial,
                      std::to_string(token_id),
                      std::to_string(max_attempts_),
                      idem ? std::optional<std::string>(idem->key) : std::nullopt,
                      idem ? std::optional<std::string>(idem->request_hash) : std::nullopt};
    std::vector<pg::batch_item> items;
    items.reserve(lock_args.size() + 1);
    for (const auto& a : lock_args) items.emplace_back(cap_lock_sql, a);
    items.emplace_back(create_sql, args);
    auto r = co_await pool_.pipeline(items);
    if (!r) {
      if (idem && r.error().is(errc::db_unique_violation)) continue;  // a concurrent twin
      co_return r.error();
    }
    const auto& rows = r->back();
    if (rows.is_null(0, 0)) {
      co_return fail(errc::invalid_argument, std::string(rows.text(0, 1)));
    }
    co_return created{id, std::string(rows.text(0, 0)), false};
  }
  co_return fail(errc::conflict, "this Idempotency-Key is being used by a concurrent request");
}

namespace {
pg::param owner_param(std::optional<std::int64_t> owner) {
  return owner ? pg::param(std::to_string(*owner)) : pg::param();
}
}  // namespace

asio::awaitable<result<std::string>> reservation_set_store::get_json(
    std::string id, std::optional<std::int64_t> owner) {
  const params args{id, owner_param(owner)};
  auto r = co_await pool_.execute(stmt_set_get, args);
  if (!r) co_return r.error();
  if (r->size() == 0) co_return fail(errc::not_found, "no reservation set " + id);
  co_return std::string(r->text(0, 0));
}

asio::awaitable<result<reservation_set_page>> reservation_set_store::list(
    reservation_set_filter f) {
  std::optional<std::string> after_time;
  std::optional<std::string> after_id;
  if (f.after) {
    const auto decoded = base64_decode(*f.after, true);
    const auto bar = decoded ? decoded->find('|') : std::string::npos;
    if (bar == std::string::npos || !uuid::parse(decoded->substr(bar + 1)) ||
        !parse_rfc3339(decoded->substr(0, bar))) {
      co_return fail(errc::invalid_argument, "'after' is not a cursor this service gave out");
    }
    after_time = decoded->substr(0, bar);
    after_id = decoded->substr(bar + 1);
  }
  std::optional<std::string> tags;
  if (!f.tags.empty()) tags = json::serialize(f.tags);
  params args{f.state, tags, after_time, after_id, std::to_string(f.limit + 1)};
  if (f.created_by) args.push_back(owner_param(f.created_by));
  auto r = co_await pool_.execute(f.created_by ? stmt_set_list_own : stmt_set_list, args);
  if (!r) co_return r.error();
  reservation_set_page page;
  const int shown = static_cast<int>(std::min<std::size_t>(r->size(), f.limit));
  page.sets_json += '[';
  for (int row = 0; row < shown; ++row) {
    if (row) page.sets_json += ',';
    page.sets_json += r->text(row, 0);
  }
  page.sets_json += ']';
  if (r->size() > f.limit && shown > 0) {
    page.next = base64_encode(
        std::string(r->text(shown - 1, 1)) + "|" + std::string(r->text(shown - 1, 2)), true);
  }
  co_return page;
}

asio::awaitable<result<std::string>> reservation_set_store::cancel(
    std::string id, std::optional<std::int64_t> owner) {
  const params args{id, owner_param(owner)};
  // One transaction: the cancel, then the set as it left it.
  const pg::batch_item items[] = {pg::batch_item(cancel_sql, args),
                                  pg::batch_item(stmt_set_get, args)};
  auto r = co_await pool_.pipeline(items);
  if (!r) co_return r.error();
  const auto& got = (*r)[1];
  if (got.size() == 0) co_return fail(errc::not_found, "no reservation set " + id);
  co_return std::string(got.text(0, 0));
}

asio::awaitable<result<reservation_set_store::pass>> reservation_set_store::reconcile(
    std::optional<std::string> after, std::size_t max) {
  const params advance_args{std::to_string(max), after};
  pass out;
  auto advanced = co_await pool_.execute(stmt_set_advance, advance_args);
  if (!advanced) co_return advanced.error();
  if (!advanced->is_null(0, 0)) out.last = std::string(advanced->text(0, 0));
  out.full = std::stoull(std::string(advanced->text(0, 1))) >= max;
  boost::system::error_code ec;
  const auto moves = json::parse(advanced->text(0, 2), ec);
  if (!ec && moves.is_array()) {
    for (const auto& m : moves.as_array()) {
      if (!m.is_object()) continue;
      const auto text = [&m](std::string_view key) {
        const auto* v = m.as_object().if_contains(key);
        return v && v->is_string() ? std::string(v->as_string()) : std::string();
      };
      out.moves.push_back({text("id"), text("from"), text("to"), text("reason")});
    }
  }
  // After the moves: a set that has just become cancelling loses its members in this pass.
  const params cancel_args{std::to_string(max)};
  auto cancelled = co_await pool_.execute(stmt_set_cancel_members, cancel_args);
  if (!cancelled) co_return cancelled.error();
  for (int i = 0; i < static_cast<int>(cancelled->size()); ++i) {
    out.members_cancelled.emplace_back(cancelled->text(i, 0));
  }
  co_return out;
}

}  // namespace cloudbrain
