#include "actors/reservation_store.hpp"

#include "core/encoding.hpp"
#include "core/uuid.hpp"

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

namespace cloudbrain {
namespace asio = boost::asio;
namespace json = boost::json;

const char* const reservation_json_sql = R"(json_build_object(
  'id', r.id, 'provider', r.provider, 'instance_type', r.instance_type,
  'machine_type', r.machine_type, 'count', r.count, 'zones', to_json(r.zones), 'zone', r.zone,
  'state', r.state, 'upstream_id', r.upstream_id, 'in_use', r.in_use,
  'ends_at', to_char(r.ends_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
  'tags', r.tags, 'error_reason', r.error_reason, 'cancel_reason', r.cancel_reason,
  'set_id', r.set_id,
  'created_at', to_char(r.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
  'updated_at', to_char(r.updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')))";

const char* const release_job_cte = R"(
j AS (
  INSERT INTO jobs (kind, reservation_id, provider, cloud_key, max_attempts)
  SELECT 'release_reservation', id, provider, 'release-' || id, 2147483647 FROM upd
  ON CONFLICT (reservation_id, kind)
    WHERE state IN ('queued', 'running') AND reservation_id IS NOT NULL DO NOTHING
  RETURNING 1))";

namespace {

using params = std::vector<pg::param>;

std::string with_json(const char* before, const char* after) {
  return std::string(before) + reservation_json_sql + after;
}

// Serialises creates per provider for the rest of the transaction, so that two concurrent
// requests cannot both fit under the cap.
const char* const cap_lock_sql =
    "SELECT pg_advisory_xact_lock(hashtextextended('cloudbrain.reservations/' || $1, 0))";

const std::string create_sql = with_json(R"(
WITH held AS (
  SELECT coalesce(sum(count), 0)::bigint AS n FROM reservations
  WHERE provider = $2 AND state IN ('pending', 'active', 'cancelling')),
ins AS (
  INSERT INTO reservations AS r (id, provider, instance_type, count, zones, ends_at, tags,
                                 created_by)
  SELECT $1::uuid, $2, $3, $4::int, $5::text[], $6::timestamptz, $7::jsonb, $8::bigint
  FROM held WHERE held.n + $4::int <= $9::bigint
  RETURNING r.*),
j AS (
  INSERT INTO jobs (kind, reservation_id, provider, cloud_key, max_attempts)
  SELECT 'reserve', id, provider, 'reserve-' || id, $10::int FROM ins RETURNING 1),
body AS (SELECT )",
                                         R"(::text AS b FROM ins r),
k AS (
  INSERT INTO idempotency_keys (token_id, key, request_hash, reservation_id, response_status,
                                response_body)
  SELECT $8::bigint, $11, decode($12, 'hex'), (SELECT id FROM ins), 201, b::jsonb
  FROM body WHERE $11::text IS NOT NULL
  RETURNING 1)
SELECT (SELECT b FROM body), (SELECT n FROM held), (SELECT count(*) FROM j))");

// $2: the creator the caller is confined to, NULL for any.
const std::string get_sql = with_json("SELECT ",
                                      "::text FROM reservations r WHERE r.id = $1::uuid "
                                      "AND ($2::bigint IS NULL OR r.created_by = $2::bigint)");

// Two statements, one for a scoped caller (`r.created_by = $7`, which walks the creator's own
// rows in its index) and one for a caller that sees everything (the time index).
std::string list_sql(bool scoped) {
  const std::string tail = std::string(R"(::text,
  to_char(r.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'), r.id::text
FROM reservations r
WHERE ($1::text IS NULL OR r.provider = $1)
  AND ($2::reservation_state IS NULL OR r.state = $2::reservation_state)
  AND ($3::jsonb IS NULL OR r.tags @> $3::jsonb)
  AND ($4::timestamptz IS NULL OR (r.created_at, r.id) < ($4::timestamptz, $5::uuid)))") +
                           (scoped ? "\n  AND r.created_by = $7::bigint" : "") + R"(
ORDER BY r.created_at DESC, r.id DESC
LIMIT $6::int)";
  return with_json("SELECT ", tail.c_str());
}
const std::string list_all_sql = list_sql(false);
const std::string list_own_sql = list_sql(true);

const std::string cancel_sql = std::string(R"(
WITH upd AS (
  UPDATE reservations r SET state = 'cancelling', cancel_reason = 'requested'
  WHERE r.id = $1::uuid AND r.state IN ('pending', 'active')
    AND ($2::bigint IS NULL OR r.created_by = $2::bigint)
  RETURNING r.*),)") + release_job_cte +
                               with_json(R"(
SELECT (SELECT )",
                                         R"(::text FROM upd r),
       (SELECT )") + reservation_json_sql +
                               R"(::text FROM reservations r
        WHERE r.id = $1::uuid AND ($2::bigint IS NULL OR r.created_by = $2::bigint)),
       (SELECT count(*) FROM j))";

const std::string cancel_matching_sql = std::string(R"(
WITH upd AS (
  UPDATE reservations r SET state = 'cancelling', cancel_reason = 'requested'
  WHERE r.tags @> $1::jsonb AND ($2::text IS NULL OR r.provider = $2)
    AND r.state IN ('pending', 'active') AND ($3::bigint IS NULL OR r.created_by = $3::bigint)
  RETURNING r.*),)") + release_job_cte +
                                        with_json(R"(
SELECT coalesce(json_agg()",
                                                  R"( ORDER BY r.created_at DESC, r.id DESC),
                '[]')::text, (SELECT count(*) FROM j)
FROM upd r)");

const char* const refusal_sql = R"(
SELECT state::text, provider, instance_type, in_use, count FROM reservations
WHERE id = $1::uuid AND ($2::bigint IS NULL OR created_by = $2::bigint))";

const char* const activate_sql = R"(
UPDATE reservations
   SET zone = $2, upstream_id = $3, machine_type = $4,
       state = CASE WHEN state = 'pending' THEN 'active'::reservation_state ELSE state END
 WHERE id = $1::uuid AND state IN ('pending', 'cancelling'))";

const char* const released_sql = R"(
UPDATE reservations
   SET state = CASE WHEN cancel_reason = 'expired' THEN 'expired'::reservation_state
                    ELSE 'cancelled'::reservation_state END
 WHERE id = $1::uuid AND state = 'cancelling')";

const char* const settle_reserve_sql = R"(
WITH c AS (
  UPDATE jobs SET state = 'cancelled', finished_at = now(), updated_at = now(),
                  last_error = 'reservation cancelled before it was made', lease_owner = NULL
  WHERE reservation_id = $1::uuid AND kind = 'reserve'
    AND (state = 'queued' OR (state = 'running' AND lease_expires_at < now()))
  RETURNING id)
SELECT EXISTS (SELECT 1 FROM jobs WHERE reservation_id = $1::uuid AND kind = 'reserve'
               AND state = 'running' AND lease_expires_at >= now()
               AND id NOT IN (SELECT id FROM c)),
       (SELECT coalesce(intent, '{}'::jsonb)::text FROM jobs
        WHERE reservation_id = $1::uuid AND kind = 'reserve' ORDER BY id DESC LIMIT 1))";

const std::string reap_sql = std::string(R"(
WITH due AS (
  SELECT id, CASE WHEN ends_at <= now() THEN 'expired' ELSE 'unused' END AS why
  FROM reservations
  WHERE provider = $3
    AND ((state IN ('pending', 'active') AND ends_at <= now())
         OR (state = 'active' AND in_use = 0
             AND coalesce(last_used_at, activated_at, updated_at)
                 < now() - make_interval(secs => $1::double precision)))
  ORDER BY ends_at
  LIMIT $2::int
  FOR UPDATE SKIP LOCKED),
upd AS (
  UPDATE reservations r SET state = 'cancelling', cancel_reason = due.why
  FROM due WHERE r.id = due.id AND r.state IN ('pending', 'active')
  RETURNING r.id, r.provider, r.cancel_reason),)") +
                             release_job_cte + R"(
SELECT id::text, provider, cancel_reason FROM upd)";

const char* const rows_sql = R"(
SELECT r.id::text, r.state::text, coalesce(r.zone, ''),
       EXISTS (SELECT 1 FROM jobs j WHERE j.reservation_id = r.id
               AND j.state IN ('queued', 'running')),
       r.updated_at < $2::timestamptz
FROM reservations r WHERE r.id = ANY($1::uuid[]))";

const char* const orphan_event_sql = R"(
INSERT INTO reservation_events (reservation_id, kind, reason, provider, zone, name)
VALUES ((SELECT id FROM reservations WHERE id = $4::uuid), 'orphan_cancelled', $5, $1, $2, $3))";

const char* const census_sql = R"(
SELECT provider, state::text, count(*),
       count(*) FILTER (WHERE state IN ('pending', 'active') AND ends_at <= now())
FROM reservations GROUP BY provider, state)";

const pg::statement stmt_create{"reservation_create", create_sql};
const pg::statement stmt_get{"reservation_get", get_sql};
const pg::statement stmt_list{"reservation_list", list_all_sql};
const pg::statement stmt_list_own{"reservation_list_own", list_own_sql};
const pg::statement stmt_cancel{"reservation_cancel", cancel_sql};
const pg::statement stmt_activate{"reservation_activate", activate_sql};
const pg::statement stmt_released{"reservation_released", released_sql};
const pg::statement stmt_settle{"reservation_settle_reserve", settle_reserve_sql};

json::object parse_object(std::string_view text) {
  boost::system::error_code ec;
  auto v = json::parse(text, ec);
  if (ec || !v.is_object()) return {};
  return std::move(v.as_object());
}

std::string pg_array(const std::vector<std::string>& items) {
  // Only zones and UUIDs go through here: checked names without quotes, commas or braces.
  std::string out = "{";
  for (const auto& s : items) {
    if (out.size() > 1) out += ',';
    out += s;
  }
  out += '}';
  return out;
}

}  // namespace

asio::awaitable<result<reservation_store::created>> reservation_store::create(
    reservation_request req, std::int64_t token_id, std::size_t cap,
    std::optional<idempotent_request> idem) {
  for (int round = 0; round < 2; ++round) {
    if (idem) {
      auto finding = find_replay(pool_, token_id, *idem);
      auto prior = co_await std::move(finding);
      if (!prior) co_return prior.error();
      if (*prior) co_return created{std::move((*prior)->id), std::move((*prior)->body), true};
    }
    const std::string id = uuid::generate_v7().str();
    const params lock_args{req.provider};
    const params args{id,
                      req.provider,
                      req.instance_type,
                      std::to_string(req.count),
                      pg_array(req.zones),
                      format_rfc3339(req.ends_at),
                      json::serialize(req.tags),
                      std::to_string(token_id),
                      std::to_string(cap),
                      std::to_string(max_attempts_),
                      idem ? std::optional<std::string>(idem->key) : std::nullopt,
                      idem ? std::optional<std::string>(idem->request_hash) : std::nullopt};
    const pg::batch_item items[] = {pg::batch_item(cap_lock_sql, lock_args),
                                    pg::batch_item(stmt_create, args)};
    auto r = co_await pool_.pipeline(items);
    if (!r) {
      if (idem && r.error().is(errc::db_unique_violation)) continue;  // a concurrent twin
      co_return r.error();
    }
    const auto& rows = (*r)[1];
    if (rows.is_null(0, 0)) {
      co_return fail(errc::invalid_argument,
                     "provider '" + req.provider + "' allows at most " + std::to_string(cap) +
                         " reserved instances (max-reserved-instances); " +
                         std::string(rows.text(0, 1)) + " are reserved now and " +
                         std::to_string(req.count) + " more were asked for");
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

asio::awaitable<result<std::string>> reservation_store::get_json(
    std::string id, std::optional<std::int64_t> owner) {
  const params args{id, owner_param(owner)};
  auto r = co_await pool_.execute(stmt_get, args);
  if (!r) co_return r.error();
  if (r->size() == 0) co_return fail(errc::not_found, "no reservation " + id);
  co_return std::string(r->text(0, 0));
}

asio::awaitable<result<reservation_page>> reservation_store::list(reservation_filter f) {
  std::optional<std::string> after_time;
  std::optional<std::string> after_id;
  if (f.after) {
    after_time = f.after->created_at;
    after_id = f.after->id;
  }
  std::optional<std::string> tags;
  if (!f.tags.empty()) tags = json::serialize(f.tags);
  params args{f.provider, f.state, tags, after_time, after_id, std::to_string(f.limit + 1)};
  if (f.created_by) args.push_back(owner_param(f.created_by));
  auto r = co_await pool_.execute(f.created_by ? stmt_list_own : stmt_list, args);
  if (!r) co_return r.error();
  reservation_page page;
  const int shown = static_cast<int>(std::min<std::size_t>(r->size(), f.limit));
  page.reservations_json += '[';
  for (int row = 0; row < shown; ++row) {
    if (row) page.reservations_json += ',';
    page.reservations_json += r->text(row, 0);
  }
  page.reservations_json += ']';
  if (r->size() > f.limit && shown > 0) {
    page.next = encode_list_cursor(r->text(shown - 1, 1), r->text(shown - 1, 2));
  }
  co_return page;
}

asio::awaitable<result<std::string>> reservation_store::cancel(std::string id,
                                                               std::optional<std::int64_t> owner) {
  const params args{id, owner_param(owner)};
  auto r = co_await pool_.execute(stmt_cancel, args);
  if (!r) co_return r.error();
  if (!r->is_null(0, 0)) co_return std::string(r->text(0, 0));
  if (!r->is_null(0, 1)) co_return std::string(r->text(0, 1));
  co_return fail(errc::not_found, "no reservation " + id);
}

asio::awaitable<result<std::string>> reservation_store::cancel_matching(
    json::object tags, std::optional<std::string> provider, std::optional<std::int64_t> owner) {
  const params args{json::serialize(tags), provider, owner_param(owner)};
  auto r = co_await pool_.query(cancel_matching_sql, args);
  if (!r) co_return r.error();
  co_return std::string(r->text(0, 0));
}

asio::awaitable<result<reservation_refusal>> reservation_store::refusal_for(
    std::string id, std::string provider, std::string instance_type,
    std::optional<std::int64_t> owner) {
  const params args{id, owner_param(owner)};
  auto r = co_await pool_.query(refusal_sql, args);
  if (!r) co_return r.error();
  if (r->size() == 0) co_return reservation_refusal::not_found;
  if (r->text(0, 0) != "active") co_return reservation_refusal::not_active;
  if (r->text(0, 1) != provider) co_return reservation_refusal::other_provider;
  if (r->text(0, 2) != instance_type) co_return reservation_refusal::other_type;
  if (r->text(0, 3) == r->text(0, 4)) co_return reservation_refusal::full;
  co_return reservation_refusal::none;
}

asio::awaitable<result<bool>> reservation_store::activate(std::string id, std::string zone,
                                                          std::string upstream_id,
                                                          std::string machine_type) {
  const params args{id, zone, upstream_id, machine_type};
  auto r = co_await pool_.execute(stmt_activate, args);
  if (!r) co_return r.error();
  co_return r->affected() == 1;
}

asio::awaitable<result<bool>> reservation_store::mark_released(std::string id) {
  const params args{id};
  auto r = co_await pool_.execute(stmt_released, args);
  if (!r) co_return r.error();
  co_return r->affected() == 1;
}

asio::awaitable<result<reservation_store::reserve_job_view>> reservation_store::settle_reserve_job(
    std::string id) {
  const params args{id};
  auto r = co_await pool_.execute(stmt_settle, args);
  if (!r) co_return r.error();
  reserve_job_view v;
  v.active = r->text(0, 0) == "t";
  if (!r->is_null(0, 1)) v.intent = parse_object(r->text(0, 1));
  co_return v;
}

asio::awaitable<result<std::vector<reservation_store::reaped>>> reservation_store::reap(
    std::string provider, std::chrono::milliseconds unused_grace, std::size_t max) {
  const params args{std::to_string(static_cast<double>(unused_grace.count()) / 1000.0),
                    std::to_string(max), provider};
  auto r = co_await pool_.query(reap_sql, args);
  if (!r) co_return r.error();
  std::vector<reaped> out;
  for (int i = 0; i < static_cast<int>(r->size()); ++i)
    out.push_back(
        {std::string(r->text(i, 0)), std::string(r->text(i, 1)), std::string(r->text(i, 2))});
  co_return out;
}

asio::awaitable<result<std::map<std::string, reservation_row>>> reservation_store::rows_for(
    std::vector<std::string> ids, system_clock::time_point listed_at) {
  const params args{pg_array(ids), format_rfc3339(listed_at)};
  auto r = co_await pool_.query(rows_sql, args);
  if (!r) co_return r.error();
  std::map<std::string, reservation_row> out;
  for (int i = 0; i < static_cast<int>(r->size()); ++i) {
    reservation_row row;
    row.id = std::string(r->text(i, 0));
    row.state = std::string(r->text(i, 1));
    row.zone = std::string(r->text(i, 2));
    row.busy = r->text(i, 3) == "t";
    row.settled = r->text(i, 4) == "t";
    out.emplace(row.id, row);
  }
  co_return out;
}

asio::awaitable<result<void>> reservation_store::record_orphan_cancelled(
    std::string provider, std::string zone, std::string name,
    std::optional<std::string> reservation_id, std::string reason) {
  const params args{provider, zone, name, reservation_id, reason};
  auto r = co_await pool_.query(orphan_event_sql, args);
  if (!r) co_return r.error();
  co_return result<void>{};
}

asio::awaitable<result<reservation_store::census>> reservation_store::take_census() {
  auto r = co_await pool_.query(census_sql);
  if (!r) co_return r.error();
  census c;
  for (int i = 0; i < static_cast<int>(r->size()); ++i) {
    census_row row{std::string(r->text(i, 0)), std::string(r->text(i, 1)),
                   std::stoll(std::string(r->text(i, 2)))};
    c.overdue[row.provider] += std::stoll(std::string(r->text(i, 3)));
    c.by_state.push_back(std::move(row));
  }
  co_return c;
}

}  // namespace cloudbrain
