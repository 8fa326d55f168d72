#include "actors/instance_store.hpp"

#include "core/encoding.hpp"
#include "core/uuid.hpp"

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

namespace cloudbrain {
namespace asio = boost::asio;
namespace json = boost::json;

const char* const instance_json_sql = R"(json_build_object(
  'id', i.id, 'provider', i.provider, 'image', i.image, 'instance_type', i.instance_type,
  'public_ssh_key', i.public_ssh_key, 'zone', i.zone, 'reservation_id', i.reservation_id,
  'tags', i.tags, 'ip_address', host(i.ip_address), 'upstream_id', i.upstream_id,
  'state', i.state, 'error_reason', i.error_reason,
  'created_at', to_char(i.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
  'updated_at', to_char(i.updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')))";

namespace {

using params = std::vector<pg::param>;

std::string sql_with_json(const char* before, const char* after) {
  return std::string(before) + instance_json_sql + after;
}

const std::string create_sql = sql_with_json(R"(
WITH res AS (
  -- A slot of the reservation, taken here so that concurrent creates cannot overfill it.
  UPDATE reservations r SET in_use = r.in_use + 1, last_used_at = now()
  WHERE $7::uuid IS NOT NULL AND r.id = $7::uuid AND r.state = 'active' AND r.provider = $2
    AND r.instance_type = $4 AND r.in_use < r.count AND ($6::text IS NULL OR r.zone = $6)
  RETURNING r.zone),
ins AS (
  INSERT INTO instances AS i (id, provider, image, instance_type, public_ssh_key, zone,
                              reservation_id, tags, created_by)
  SELECT $1::uuid, $2, $3, $4, $5, coalesce((SELECT zone FROM res), $6), $7::uuid, $8::jsonb,
         $9::bigint
  WHERE $7::uuid IS NULL OR EXISTS (SELECT 1 FROM res)
  RETURNING i.*),
j AS (
  INSERT INTO jobs (kind, instance_id, provider, cloud_key, max_attempts)
  SELECT 'create_instance', id, provider, $10, $11::int FROM ins RETURNING id),
body AS (SELECT )",
                                             R"(::text AS b FROM ins i),
k AS (
  INSERT INTO idempotency_keys (token_id, key, request_hash, instance_id, response_status,
                                response_body)
  SELECT $9::bigint, $12, decode($13, 'hex'), (SELECT id FROM ins), 201, b::jsonb
  FROM body WHERE $12::text IS NOT NULL
  RETURNING 1)
SELECT b, (SELECT count(*) FROM j), (SELECT count(*) FROM k) FROM body)");

const std::string get_sql =
    sql_with_json("SELECT ", "::text FROM instances i WHERE i.id = $1::uuid");

const std::string list_sql = sql_with_json("SELECT ", R"(::text,
  to_char(i.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'), i.id::text
FROM instances i
WHERE ($1::text IS NULL OR i.provider = $1)
  AND ($2::instance_state IS NULL OR i.state = $2::instance_state)
  AND ($3::jsonb IS NULL OR i.tags @> $3::jsonb)
  AND ($4::timestamptz IS NULL OR (i.created_at, i.id) < ($4::timestamptz, $5::uuid))
ORDER BY i.created_at DESC, i.id DESC
LIMIT $6::int)");

const std::string delete_sql = sql_with_json(R"(
WITH upd AS (
  UPDATE instances i SET state = 'terminating', delete_requested = true
  WHERE i.id = $1::uuid AND i.state IN ('creating', 'starting', 'running', 'errored')
  RETURNING i.*),
j AS (
  INSERT INTO jobs (kind, instance_id, provider, cloud_key, max_attempts)
  SELECT 'delete_instance', id, provider, $2, 2147483647 FROM upd
  ON CONFLICT (instance_id, kind) WHERE state IN ('queued', 'running') DO NOTHING
  RETURNING 1)
SELECT (SELECT )",
                                             R"(::text FROM upd i),
       (SELECT )") + instance_json_sql +
                               R"(::text FROM instances i WHERE i.id = $1::uuid),
       (SELECT count(*) FROM j))";

const char* const claim_sql = R"(
WITH claimed AS (
  UPDATE jobs j
  SET state = 'running', lease_owner = $1,
      lease_expires_at = now() + make_interval(secs => $2::double precision),
      attempts = j.attempts + 1, updated_at = now()
  FROM (SELECT jj.id FROM jobs jj
        WHERE jj.provider = $3
          AND ((jj.state = 'queued' AND jj.run_at <= now())
               OR (jj.state = 'running' AND jj.lease_expires_at < now()))
        ORDER BY jj.run_at, jj.id
        -- max-in-flight holds for the cluster: what every node runs under a live lease counts
        LIMIT least($4::int, greatest(0, $5::int - (
          SELECT count(*) FROM jobs r
          WHERE r.provider = $3 AND r.state = 'running' AND r.lease_expires_at >= now())))
        FOR UPDATE SKIP LOCKED) c
  WHERE j.id = c.id
  RETURNING j.*)
SELECT j.id, j.kind, coalesce(j.instance_id::text, ''), j.attempts, j.max_attempts, j.cloud_key,
       coalesce(j.intent, '{}'::jsonb)::text, coalesce(i.state::text, r.state::text),
       coalesce(i.image, ''), coalesce(i.instance_type, r.instance_type), i.public_ssh_key,
       coalesce(i.zone, r.zone), coalesce(i.upstream_id, r.upstream_id),
       coalesce(i.tags, r.tags)::text, coalesce(i.delete_requested, false),
       coalesce(j.reservation_id, i.reservation_id)::text, r.count, to_json(r.zones)::text,
       to_char(r.ends_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'), r.cancel_reason
FROM claimed j
LEFT JOIN instances i ON i.id = j.instance_id
LEFT JOIN reservations r ON r.id = coalesce(j.reservation_id, i.reservation_id))";

// Claims of one provider take turns on its row, so that each counts the jobs running across
// the cluster after the one before it committed (the claim must be the next statement: a
// statement that waited for a lock still reads from before the wait).
const char* const claim_lock_sql = R"(
INSERT INTO provider_claims (provider) VALUES ($1)
ON CONFLICT (provider) DO UPDATE SET provider = EXCLUDED.provider)";

const char* const renew_sql = R"(
UPDATE jobs SET lease_expires_at = now() + make_interval(secs => $2::double precision)
WHERE id = ANY($1::bigint[]) AND lease_owner = $3 AND state = 'running')";

const char* const succeed_sql = R"(
UPDATE jobs SET state = 'succeeded', finished_at = now(), updated_at = now(),
                lease_owner = NULL, lease_expires_at = NULL, last_error = NULL
WHERE id = $1 AND lease_owner = $2 AND state = 'running')";

const char* const retry_sql = R"(
UPDATE jobs SET state = 'queued', updated_at = now(),
                run_at = now() + make_interval(secs => $3::double precision),
                last_error = $4, lease_owner = NULL, lease_expires_at = NULL,
                attempts = attempts - (CASE WHEN $5::boolean THEN 0 ELSE 1 END)
WHERE id = $1 AND lease_owner = $2 AND state = 'running')";

const char* const fail_sql = R"(
WITH f AS (
  UPDATE jobs SET state = 'failed', finished_at = now(), updated_at = now(), last_error = $3,
                  lease_owner = NULL, lease_expires_at = NULL
  WHERE id = $1 AND lease_owner = $2 AND state = 'running'
  RETURNING instance_id, reservation_id, kind),
i AS (
  UPDATE instances i SET state = 'errored', error_reason = $3
  FROM f WHERE i.id = f.instance_id AND f.kind = 'create_instance'
    AND i.state IN ('creating', 'starting')
  RETURNING 1)
UPDATE reservations r SET state = 'failed', error_reason = $3
FROM f WHERE r.id = f.reservation_id AND f.kind = 'reserve' AND r.state = 'pending')";

const char* const release_sql = R"(
UPDATE jobs SET state = 'queued', lease_owner = NULL, lease_expires_at = NULL,
                attempts = greatest(attempts - 1, 0), updated_at = now()
WHERE lease_owner = $1 AND state = 'running')";

const char* const intent_sql = R"(
UPDATE jobs SET intent = $3::jsonb, updated_at = now()
WHERE id = $1 AND lease_owner = $2 AND state = 'running')";

const char* const starting_sql = R"(
UPDATE instances SET state = 'starting', upstream_id = $2, zone = $3
WHERE id = $1::uuid AND state = 'creating')";

const char* const running_sql = R"(
UPDATE instances SET state = 'running', ip_address = $2::inet, upstream_id = $3, zone = $4
WHERE id = $1::uuid AND state IN ('creating', 'starting'))";

const char* const terminated_sql = R"(
UPDATE instances SET state = 'terminated' WHERE id = $1::uuid AND state = 'terminating')";

const char* const settle_sql = R"(
WITH c AS (
  UPDATE jobs SET state = 'cancelled', finished_at = now(), updated_at = now(),
                  last_error = 'instance deleted before it was created', lease_owner = NULL
  WHERE instance_id = $1::uuid AND kind = 'create_instance'
    AND (state = 'queued' OR (state = 'running' AND lease_expires_at < now()))
  RETURNING id)
SELECT (SELECT count(*) FROM c),
       EXISTS (SELECT 1 FROM jobs WHERE instance_id = $1::uuid AND kind = 'create_instance'
               AND state = 'running' AND lease_expires_at >= now()
               AND id NOT IN (SELECT id FROM c)),
       (SELECT coalesce(intent, '{}'::jsonb)::text FROM jobs
        WHERE instance_id = $1::uuid AND kind = 'create_instance' ORDER BY id DESC LIMIT 1))";

const char* const reconcile_view_sql = R"(
SELECT i.id::text, i.state::text, coalesce(host(i.ip_address), ''), coalesce(i.zone, ''),
       EXISTS (SELECT 1 FROM jobs j WHERE j.instance_id = i.id AND j.state IN ('queued', 'running')),
       i.updated_at < $3::timestamptz
FROM instances i
WHERE i.provider = $1
  AND (i.state IN ('creating', 'starting', 'running', 'terminating') OR i.id = ANY($2::uuid[])))";

const char* const stuck_deletes_sql = R"(
SELECT count(*) FROM jobs WHERE provider = $1 AND kind = 'delete_instance'
  AND state IN ('queued', 'running') AND attempts >= $2::int)";

const char* const vanished_sql = R"(
UPDATE instances
   SET state = CASE WHEN state = 'terminating' THEN 'terminated'::instance_state
                    ELSE 'errored'::instance_state END,
       error_reason = CASE WHEN state = 'terminating' THEN error_reason
                           ELSE 'vanished at the provider' END
 WHERE id = $1::uuid AND state = $2::instance_state
   AND NOT EXISTS (SELECT 1 FROM jobs WHERE instance_id = $1::uuid
                   AND state IN ('queued', 'running')))";

const char* const address_sql = R"(
UPDATE instances SET ip_address = $2::inet
 WHERE id = $1::uuid AND state = 'running' AND ip_address IS DISTINCT FROM $2::inet)";

const char* const orphan_event_sql = R"(
INSERT INTO instance_events (instance_id, from_state, to_state, reason, kind, provider, vm_name)
VALUES ((SELECT id FROM instances WHERE id = $1::uuid), NULL, 'terminated', $4,
        'orphan_deleted', $2, $3))";

const pg::statement stmt_instance_create{"instance_create", create_sql};
const pg::statement stmt_instance_get{"instance_get", get_sql};
const pg::statement stmt_instance_list{"instance_list", list_sql};
const pg::statement stmt_instance_delete{"instance_delete", delete_sql};
const pg::statement stmt_job_claim{"job_claim", claim_sql};
const pg::statement stmt_job_renew{"job_renew", renew_sql};
const pg::statement stmt_job_succeed{"job_succeed", succeed_sql};
const pg::statement stmt_job_fail{"job_fail", fail_sql};
const pg::statement stmt_job_retry{"job_retry", retry_sql};
const pg::statement stmt_job_intent{"job_intent", intent_sql};
const pg::statement stmt_instance_starting{"instance_starting", starting_sql};
const pg::statement stmt_instance_running{"instance_running", running_sql};
const pg::statement stmt_instance_terminated{"instance_terminated", terminated_sql};
const pg::statement stmt_job_settle_create{"job_settle_create", settle_sql};
const pg::statement stmt_reconcile_view{"reconcile_view", reconcile_view_sql};
const pg::statement stmt_stuck_deletes{"stuck_deletes", stuck_deletes_sql};
const pg::statement stmt_instance_vanished{"instance_vanished", vanished_sql};
const pg::statement stmt_instance_address{"instance_address", address_sql};
const pg::statement stmt_orphan_event{"orphan_event", orphan_event_sql};

// A delete job this many attempts old counts as stuck (it is still retried, forever).
constexpr int stuck_delete_attempts = 3;

std::string seconds(std::chrono::milliseconds d) {
  return std::to_string(static_cast<double>(d.count()) / 1000.0);
}

json::object parse_object(std::string_view text) {
  boost::system::error_code ec;
  auto v = json::parse(text, ec);
  if (ec || !v.is_object()) return {};
  return std::move(v.as_object());
}

std::optional<std::string> opt(const pg::rows& r, int row, int col) {
  if (r.is_null(row, col)) return std::nullopt;
  return std::string(r.text(row, col));
}

}  // namespace

asio::awaitable<result<created_instance>> instance_store::create(
    const instance_request& req, std::int64_t token_id,
    const std::optional<idempotent_request>& idem) {
  for (int round = 0; round < 2; ++round) {
    if (idem) {
      auto finding = find_replay(pool_, token_id, *idem);
      auto prior = co_await std::move(finding);
      if (!prior) co_return prior.error();
      if (*prior) {
        co_return created_instance{(*prior)->status, std::move((*prior)->body),
                                   std::move((*prior)->id), true};
      }
    }
    const std::string id = uuid::generate_v7().str();
    const params query_args_3{id,
                              req.provider,
                              req.image,
                              req.instance_type,
                              req.public_ssh_key,
                              req.zone,
                              req.reservation_id,
                              json::serialize(req.tags),
                              std::to_string(token_id),
                              "create-" + id,
                              std::to_string(max_attempts_),
                              idem ? std::optional<std::string>(idem->key) : std::nullopt,
                              idem ? std::optional<std::string>(idem->request_hash) : std::nullopt};
    auto r = co_await pool_.execute(stmt_instance_create, query_args_3);
    if (!r) {
      if (idem && r.error().is(errc::db_unique_violation)) continue;  // a concurrent twin
      co_return r.error();
    }
    if (r->size() == 0) {
      co_return fail(errc::conflict, "the reservation cannot take this instance");
    }
    created_instance out;
    out.body = std::string(r->text(0, 0));
    out.id = id;
    co_return out;
  }
  co_return fail(errc::conflict, "this Idempotency-Key is being used by a concurrent request");
}

asio::awaitable<result<std::string>> instance_store::get_json(const std::string& id) {
  const params query_args_4{id};
  auto r = co_await pool_.execute(stmt_instance_get, query_args_4);
  if (!r) co_return r.error();
  if (r->size() == 0) co_return fail(errc::not_found, "no instance " + id);
  co_return std::string(r->text(0, 0));
}

asio::awaitable<result<list_page>> instance_store::list(const list_filter& f) {
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
  const params query_args_5{f.provider, f.state,  tags,
                            after_time, after_id, std::to_string(f.limit + 1)};
  auto r = co_await pool_.execute(stmt_instance_list, query_args_5);
  if (!r) co_return r.error();
  list_page page;
  const int shown = static_cast<int>(std::min<std::size_t>(r->size(), f.limit));
  page.instances_json.reserve(static_cast<std::size_t>(shown) * 512 + 2);
  page.instances_json += '[';
  for (int row = 0; row < shown; ++row) {
    if (row) page.instances_json += ',';
    page.instances_json += r->text(row, 0);
  }
  page.instances_json += ']';
  if (r->size() > f.limit && shown > 0) {
    page.next = base64_encode(
        std::string(r->text(shown - 1, 1)) + "|" + std::string(r->text(shown - 1, 2)), true);
  }
  co_return page;
}

asio::awaitable<result<std::string>> instance_store::request_delete(const std::string& id) {
  const params query_args_6{id, "delete-" + id};
  auto r = co_await pool_.execute(stmt_instance_delete, query_args_6);
  if (!r) co_return r.error();
  if (!r->is_null(0, 0)) co_return std::string(r->text(0, 0));
  if (!r->is_null(0, 1)) co_return std::string(r->text(0, 1));
  co_return fail(errc::not_found, "no instance " + id);
}

asio::awaitable<result<std::vector<job>>> instance_store::claim(const std::string& provider,
                                                                std::size_t max,
                                                                std::chrono::milliseconds lease,
                                                                std::size_t cluster_max) {
  const params lock_args{provider};
  const params query_args_7{owner_, seconds(lease), provider, std::to_string(max),
                            std::to_string(cluster_max)};
  // One round trip, one transaction: the lock, then the claim.
  const pg::batch_item items[] = {pg::batch_item(claim_lock_sql, lock_args),
                                  pg::batch_item(stmt_job_claim, query_args_7)};
  auto claimed = co_await pool_.pipeline(items);
  if (!claimed) co_return claimed.error();
  const pg::rows* r = &(*claimed)[1];
  std::vector<job> jobs;
  jobs.reserve(r->size());
  for (int row = 0; row < static_cast<int>(r->size()); ++row) {
    job j;
    j.id = std::stoll(std::string(r->text(row, 0)));
    j.kind = r->text(row, 1);
    j.instance_id = r->text(row, 2);
    j.provider = provider;
    j.attempts = std::stoi(std::string(r->text(row, 3)));
    j.max_attempts = std::stoi(std::string(r->text(row, 4)));
    j.cloud_key = r->text(row, 5);
    j.intent = parse_object(r->text(row, 6));
    j.state = r->text(row, 7);
    j.image = r->text(row, 8);
    j.instance_type = r->text(row, 9);
    j.public_ssh_key = opt(*r, row, 10);
    j.zone = opt(*r, row, 11);
    j.upstream_id = opt(*r, row, 12);
    j.tags = parse_object(r->text(row, 13));
    j.delete_requested = r->text(row, 14) == "t";
    j.reservation_id = opt(*r, row, 15);
    if (!r->is_null(row, 16)) {
      reservation_facts res;
      res.count = std::stoi(std::string(r->text(row, 16)));
      boost::system::error_code ec;
      const auto zones = json::parse(r->text(row, 17), ec);
      if (!ec && zones.is_array()) {
        for (const auto& z : zones.as_array())
          if (z.is_string()) res.zones.emplace_back(z.as_string());
      }
      if (auto ends = parse_rfc3339(r->text(row, 18))) res.ends_at = *ends;
      res.cancel_reason = opt(*r, row, 19).value_or("");
      j.reservation = std::move(res);
    }
    jobs.push_back(std::move(j));
  }
  co_return jobs;
}

asio::awaitable<result<void>> instance_store::renew(const std::vector<std::int64_t>& ids,
                                                    std::chrono::milliseconds lease) {
  if (ids.empty()) co_return result<void>{};
  std::string array = "{";
  for (std::size_t i = 0; i < ids.size(); ++i) {
    if (i) array += ',';
    array += std::to_string(ids[i]);
  }
  array += '}';
  const params query_args_8{array, seconds(lease), owner_};
  auto r = co_await pool_.execute(stmt_job_renew, query_args_8);
  if (!r) co_return r.error();
  co_return result<void>{};
}

asio::awaitable<result<void>> instance_store::finish(const job& j, const job_outcome& o) {
  using k = job_outcome::kind;
  const std::string id = std::to_string(j.id);
  result<pg::rows> r = fail(errc::internal);
  if (o.what == k::succeeded) {
    const params query_args_9{id, owner_};
    r = co_await pool_.execute(stmt_job_succeed, query_args_9);
  } else if (o.gives_up(j)) {
    std::string reason = o.error;
    if (o.exhausts(j))
      reason = "gave up after " + std::to_string(j.attempts) + " attempts: " + o.error;
    const params query_args_10{id, owner_, reason};
    r = co_await pool_.execute(stmt_job_fail, query_args_10);
  } else {
    const bool counts = o.what == k::retry && o.counts_as_attempt;
    const params query_args_11{id, owner_, seconds(o.retry_after), o.error,
                               counts ? "true" : "false"};
    r = co_await pool_.execute(stmt_job_retry, query_args_11);
  }
  if (!r) co_return r.error();
  co_return result<void>{};
}

asio::awaitable<result<void>> instance_store::release_all() {
  const params query_args_12{owner_};
  auto r = co_await pool_.query(release_sql, query_args_12);
  if (!r) co_return r.error();
  co_return result<void>{};
}

asio::awaitable<result<std::int64_t>> instance_store::purge_idempotency_keys() {
  const params none;
  auto r = co_await pool_.query(
      "DELETE FROM idempotency_keys WHERE (token_id, key) IN (SELECT token_id, key "
      "FROM idempotency_keys WHERE created_at < now() - interval '24 hours' LIMIT 10000)",
      none);
  if (!r) co_return r.error();
  co_return r->affected();
}

asio::awaitable<result<void>> instance_store::record_intent(const job& j,
                                                            const json::object& intent) {
  const params query_args_13{std::to_string(j.id), owner_, json::serialize(intent)};
  auto r = co_await pool_.execute(stmt_job_intent, query_args_13);
  if (!r) co_return r.error();
  if (r->affected() != 1) co_return fail(errc::conflict, "the job's lease was lost");
  co_return result<void>{};
}

asio::awaitable<result<bool>> instance_store::mark_starting(const std::string& id,
                                                            const std::string& upstream_id,
                                                            const std::string& zone) {
  const params query_args_14{id, upstream_id, zone};
  auto r = co_await pool_.execute(stmt_instance_starting, query_args_14);
  if (!r) co_return r.error();
  co_return r->affected() == 1;
}

asio::awaitable<result<bool>> instance_store::mark_running(const std::string& id,
                                                           const std::string& ip_address,
                                                           const std::string& upstream_id,
                                                           const std::string& zone) {
  const params query_args_15{id, ip_address, upstream_id, zone};
  auto r = co_await pool_.execute(stmt_instance_running, query_args_15);
  if (!r) co_return r.error();
  co_return r->affected() == 1;
}

asio::awaitable<result<bool>> instance_store::mark_terminated(const std::string& id) {
  const params query_args_16{id};
  auto r = co_await pool_.execute(stmt_instance_terminated, query_args_16);
  if (!r) co_return r.error();
  co_return r->affected() == 1;
}

asio::awaitable<result<std::string>> instance_store::instance_state(const std::string& id) {
  const params query_args_17{id};
  auto r =
      co_await pool_.query("SELECT state::text FROM instances WHERE id = $1::uuid", query_args_17);
  if (!r) co_return r.error();
  if (r->size() == 0) co_return fail(errc::not_found, "no instance " + id);
  co_return std::string(r->text(0, 0));
}

asio::awaitable<result<instance_store::create_job_view>> instance_store::settle_create_job(
    const std::string& id) {
  const params query_args_18{id};
  auto r = co_await pool_.execute(stmt_job_settle_create, query_args_18);
  if (!r) co_return r.error();
  create_job_view v;
  v.exists = !r->is_null(0, 2);
  v.active = r->text(0, 1) == "t";
  if (v.exists) v.intent = parse_object(r->text(0, 2));
  co_return v;
}

asio::awaitable<result<instance_store::reconcile_view>> instance_store::reconcile_view_of(
    const std::string& provider, const std::vector<std::string>& ids,
    system_clock::time_point listed_at) {
  std::string array = "{";
  for (const auto& id : ids) {
    if (array.size() > 1) array += ',';
    array += id;  // checked UUIDs only: no quoting needed
  }
  array += '}';
  const params args{provider, array, format_rfc3339(listed_at)};
  auto r = co_await pool_.execute(stmt_reconcile_view, args);
  if (!r) co_return r.error();
  reconcile_view v;
  for (int i = 0; i < static_cast<int>(r->size()); ++i) {
    reconcile_row row;
    row.id = std::string(r->text(i, 0));
    row.state = std::string(r->text(i, 1));
    row.ip_address = std::string(r->text(i, 2));
    row.zone = std::string(r->text(i, 3));
    row.busy = r->text(i, 4) == "t";
    row.settled = r->text(i, 5) == "t";
    v.rows.push_back(std::move(row));
  }
  const params stuck_args{provider, std::to_string(stuck_delete_attempts)};
  auto stuck = co_await pool_.execute(stmt_stuck_deletes, stuck_args);
  if (!stuck) co_return stuck.error();
  v.stuck_deletes = std::stoll(std::string(stuck->text(0, 0)));
  co_return v;
}

asio::awaitable<result<bool>> instance_store::mark_vanished(const std::string& id,
                                                            const std::string& state) {
  const params args{id, state};
  auto r = co_await pool_.execute(stmt_instance_vanished, args);
  if (!r) co_return r.error();
  co_return r->affected() == 1;
}

asio::awaitable<result<bool>> instance_store::update_address(const std::string& id,
                                                             const std::string& ip_address) {
  const params args{id, ip_address};
  auto r = co_await pool_.execute(stmt_instance_address, args);
  if (!r) co_return r.error();
  co_return r->affected() == 1;
}

asio::awaitable<result<void>> instance_store::record_orphan_deleted(
    std::string provider, std::string vm_name, std::optional<std::string> instance_id,
    std::string reason) {
  const params args{instance_id, provider, vm_name, reason};
  auto r = co_await pool_.execute(stmt_orphan_event, args);
  if (!r) co_return r.error();
  co_return result<void>{};
}

}  // namespace cloudbrain
