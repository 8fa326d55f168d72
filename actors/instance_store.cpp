#include "actors/instance_store.hpp"

#include "core/encoding.hpp"
#include "core/log.hpp"
#include "core/uuid.hpp"

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <algorithm>
#include <array>
#include <map>
#include <unordered_map>

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
    AND ($14::bigint IS NULL OR r.created_by = $14::bigint)
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
  RETURNING 1),
a AS (
  INSERT INTO audit_events (token_id, request_id, address, action, method, target, status,
                            outcome)
  SELECT $9::bigint, $15, $16, $17, $18, id::text, 201, 'ok' FROM ins)
SELECT b, (SELECT count(*) FROM j), (SELECT count(*) FROM k) FROM body)");

// Group commit: the creates of a batch, as arrays, in one statement. An Idempotency-Key that is
// taken already (or twice in the batch) leaves its create out; its caller replays the first
// answer. Keys are inserted in order, so that two batches holding the same keys cannot
// deadlock. The instances' JSON is the service's to write: they are as the request said, with
// the transaction's timestamp, returned once per row. Each stored create's audit record is
// written with it: the trail's row commits with the change, and costs no transaction of its own.
const char* const create_batch_sql = R"(
WITH input AS (
  SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                       $7::jsonb[], $8::bigint[], $9::text[], $10::text[], $12::text[],
                       $13::text[], $14::text[], $15::text[])
    AS t(id, provider, image, instance_type, public_ssh_key, zone, tags, created_by, key, hash,
         request_id, address, action, method)),
stamp AS (SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS at),
k AS (
  INSERT INTO idempotency_keys (token_id, key, request_hash, instance_id, response_status,
                                response_body)
  SELECT t.created_by, t.key, decode(t.hash, 'hex'), t.id, 201,
         jsonb_build_object('id', t.id, 'provider', t.provider, 'image', t.image,
                            'instance_type', t.instance_type, 'public_ssh_key', t.public_ssh_key,
                            'zone', t.zone, 'reservation_id', NULL::uuid, 'tags', t.tags,
                            'ip_address', NULL::text, 'upstream_id', NULL::text,
                            'state', 'creating', 'error_reason', NULL::text,
                            'created_at', s.at, 'updated_at', s.at)
  FROM input t, stamp s WHERE t.key IS NOT NULL
  ORDER BY t.created_by, t.key
  ON CONFLICT (token_id, key) DO NOTHING
  RETURNING instance_id),
ins AS (
  INSERT INTO instances (id, provider, image, instance_type, public_ssh_key, zone, tags,
                         created_by)
  SELECT t.id, t.provider, t.image, t.instance_type, t.public_ssh_key, t.zone, t.tags,
         t.created_by
  FROM input t WHERE t.key IS NULL OR t.id IN (SELECT instance_id FROM k)
  RETURNING id, provider),
j AS (
  INSERT INTO jobs (kind, instance_id, provider, cloud_key, max_attempts)
  SELECT 'create_instance', id, provider, 'create-' || id, $11::int FROM ins),
a AS (
  INSERT INTO audit_events (token_id, request_id, address, action, method, target, status,
                            outcome)
  SELECT t.created_by, t.request_id, t.address, t.action, t.method, t.id::text, 201, 'ok'
  FROM input t WHERE t.id IN (SELECT id FROM ins))
SELECT ins.id::text, s.at FROM ins, stamp s)";

// An instance row `i` as plain columns, for append_instance_json: rendering the JSON here costs
// the database several times what reading the columns does. Timestamps come as UTC in
// PostgreSQL's ISO output ("2024-06-01 12:34:56.5"), the default DateStyle.
constexpr std::string_view instance_columns_sql =
    "i.id::text, i.provider, i.image, i.instance_type, i.public_ssh_key, i.zone, "
    "i.reservation_id::text, i.tags::text, host(i.ip_address), i.upstream_id, i.state::text, "
    "i.error_reason, (i.created_at AT TIME ZONE 'UTC')::text, "
    "(i.updated_at AT TIME ZONE 'UTC')::text";
constexpr int instance_columns = 14;

// Concurrent reads of single instances, in one query: pairs of an id and the creator its
// caller is confined to (NULL: any), so that each caller's scope holds in the statement itself;
// the last column is the pair's position (from 1).
const std::string get_many_sql = "SELECT " + std::string(instance_columns_sql) +
                                 R"(, q.n
FROM unnest($1::uuid[], $2::bigint[]) WITH ORDINALITY AS q(id, owner, n)
JOIN instances i ON i.id = q.id AND (q.owner IS NULL OR i.created_by = q.owner))";

// A listing's statement, one per combination of filters (the caller's scope, provider, state,
// tags, cursor), so that each has a plan of its own that uses the index for its filters, also
// once PostgreSQL caches a generic plan: one statement with "($1 IS NULL OR ...)" for every
// filter gets a plan that walks the whole time index for a rare state. Parameters are the
// filters present, in that order, then the limit.
constexpr std::size_t list_with_provider = 1, list_with_state = 2, list_with_tags = 4,
                      list_after = 8, list_with_owner = 16, list_variants = 32;

std::string list_sql(std::size_t filters) {
  std::string sql = "SELECT " + std::string(instance_columns_sql) + " FROM instances i WHERE true";
  int n = 0;
  const auto next = [&n] { return "$" + std::to_string(++n); };
  if (filters & list_with_owner) sql += " AND i.created_by = " + next() + "::bigint";
  if (filters & list_with_provider) sql += " AND i.provider = " + next() + "::text";
  if (filters & list_with_state) sql += " AND i.state = " + next() + "::instance_state";
  if (filters & list_with_tags) sql += " AND i.tags @> " + next() + "::jsonb";
  if (filters & list_after) {
    const std::string at = next();
    sql += " AND (i.created_at, i.id) < (" + at + "::timestamptz, " + next() + "::uuid)";
  }
  sql += "\nORDER BY i.created_at DESC, i.id DESC\nLIMIT " + next() + "::int";
  return sql;
}

struct list_statements {
  list_statements() {
    for (std::size_t f = 0; f < list_variants; ++f) {
      names[f] = "instance_list_" + std::to_string(f);
      texts[f] = list_sql(f);
      statements[f] = pg::statement{names[f], texts[f]};
    }
  }
  std::array<std::string, list_variants> names;
  std::array<std::string, list_variants> texts;
  std::array<pg::statement, list_variants> statements;
};

const list_statements list_statement_set;

// Group commit of deletes: the instances of a batch that may still be deleted become
// terminating, each with a delete job (unless one is queued or running already), in one
// statement. Rows are locked in id order first, so that two batches holding the same ids cannot
// deadlock; the lock also reads each row as it is committed, a concurrent delete's change
// included, where the statement's snapshot may be older. Each id comes back once: as the UPDATE
// left it, or, when it was terminating or terminated already, as locked; an unknown id does not
// come back, nor does one that no caller of the batch may see: $1 and $2 are pairs of an id and
// the creator its caller is confined to (NULL: any), and the creator is the last column, for
// each caller's own check. Each request answered with its instance has its audit record
// written here, with the change: $3 to $8 are the records' token, request id, address, action,
// method and target, in the order of the pairs.
const std::string delete_batch_sql = R"(
WITH input AS (
  SELECT DISTINCT q.id FROM unnest($1::uuid[], $2::bigint[]) AS q(id, owner)
  JOIN instances v ON v.id = q.id AND (q.owner IS NULL OR v.created_by = q.owner)),
locked AS (
  SELECT i.* FROM instances i WHERE i.id IN (SELECT id FROM input) ORDER BY i.id FOR UPDATE),
upd AS (
  UPDATE instances i SET state = 'terminating', delete_requested = true
  FROM locked l
  WHERE i.id = l.id AND i.state IN ('creating', 'starting', 'running', 'errored')
  RETURNING i.*),
j AS (
  INSERT INTO jobs (kind, instance_id, provider, cloud_key, max_attempts)
  SELECT 'delete_instance', u.id, u.provider, 'delete-' || u.id, 2147483647 FROM upd u
  ORDER BY u.id
  ON CONFLICT (instance_id, kind) WHERE state IN ('queued', 'running') DO NOTHING),
a AS (
  INSERT INTO audit_events (token_id, request_id, address, action, method, target, status,
                            outcome)
  SELECT q.token_id, q.request_id, q.address, q.action, q.method, q.target, 202, 'ok'
  FROM unnest($1::uuid[], $2::bigint[], $3::bigint[], $4::text[], $5::text[], $6::text[],
              $7::text[], $8::text[])
    AS q(id, owner, token_id, request_id, address, action, method, target)
  WHERE EXISTS (SELECT 1 FROM locked l
                WHERE l.id = q.id AND (q.owner IS NULL OR l.created_by = q.owner)))
SELECT )" + std::string(instance_columns_sql) +
                                     R"(, i.created_by FROM upd i
UNION ALL
SELECT )" + std::string(instance_columns_sql) +
                                     R"(, i.created_by FROM locked i
WHERE i.id NOT IN (SELECT id FROM upd))";

const char* const claim_sql = R"(
WITH claimed AS (
  UPDATE jobs j
  SET state = 'running', lease_owner = $1,
      lease_expires_at = now() + make_interval(secs => $2::double precision),
      attempts = j.attempts + 1, updated_at = now()
  -- The ids as an array, not a join: however long the queue, the planner then expects as
  -- many rows as a claim takes, also in the generic plan of the prepared statement, where it
  -- cannot know the LIMIT and took a tenth of the queue, and joined it to every job and every
  -- instance with a hash over a full scan of each.
  WHERE j.id = ANY(ARRAY(
    SELECT jj.id FROM jobs jj
    WHERE jj.provider = $3
      AND ((jj.state = 'queued' AND jj.run_at <= now())
           OR (jj.state = 'running' AND jj.lease_expires_at < now()))
    ORDER BY jj.run_at, jj.id
    -- max-in-flight holds for the cluster: what every node runs under a live lease counts
    LIMIT least($4::int, greatest(0, $5::int - (
      SELECT count(*) FROM jobs r
      WHERE r.provider = $3 AND r.state = 'running' AND r.lease_expires_at >= now())))
    FOR UPDATE SKIP LOCKED))
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
const pg::statement stmt_instance_create_batch{"instance_create_batch", create_batch_sql};
const pg::statement stmt_instance_get_many{"instance_get_many", get_many_sql};
const pg::statement stmt_instance_delete_batch{"instance_delete_batch", delete_batch_sql};
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

// PostgreSQL's ISO text of a UTC timestamp ("2024-06-01 12:34:56.5", fractions without their
// trailing zeros) as the API writes it: 2024-06-01T12:34:56.500000Z.
bool append_rfc3339(std::string& out, std::string_view iso) {
  constexpr std::string_view shape = "0000-00-00 00:00:00";
  if (iso.size() < shape.size()) return false;
  for (std::size_t i = 0; i < shape.size(); ++i) {
    const bool digit = iso[i] >= '0' && iso[i] <= '9';
    if (shape[i] == '0' ? !digit : iso[i] != shape[i]) return false;
  }
  std::string_view fraction = iso.substr(shape.size());
  if (!fraction.empty()) {
    if (fraction.front() != '.' || fraction.size() > 7) return false;
    fraction.remove_prefix(1);
    if (!std::all_of(fraction.begin(), fraction.end(), [](char c) { return c >= '0' && c <= '9'; }))
      return false;
  }
  out.append(iso.substr(0, 10));
  out += 'T';
  out.append(iso.substr(11, 8));
  out += '.';
  out.append(fraction);
  out.append(6 - fraction.size(), '0');
  out += 'Z';
  return true;
}

// Appends the instance in row `row` (the columns of instance_columns_sql) as the API's JSON,
// as instance_json_sql renders it; returns where in `out` its created_at begins (the cursor
// of a listing is made of it).
constexpr std::size_t rfc3339_size = 27;  // 2024-06-01T12:34:56.500000Z
result<std::size_t> append_instance_json(std::string& out, const pg::rows& r, int row) {
  if (r.columns() < instance_columns) return fail(errc::internal, "an instance row is short");
  static constexpr std::array<std::string_view, 12> names{
      "id",    "provider",       "image", "instance_type", "public_ssh_key",
      "zone",  "reservation_id", "tags",  "ip_address",    "upstream_id",
      "state", "error_reason"};
  out += '{';
  for (int col = 0; col < static_cast<int>(names.size()); ++col) {
    out += '"';
    out += names[static_cast<std::size_t>(col)];
    out += "\":";
    if (r.is_null(row, col)) {
      out += "null";
    } else if (col == 7) {
      out += r.text(row, col);  // tags: jsonb's own text, JSON already
    } else {
      out += '"';
      log::append_json_escaped(out, r.text(row, col));
      out += '"';
    }
    out += ',';
  }
  out += "\"created_at\":\"";
  const std::size_t created_at = out.size();
  if (!append_rfc3339(out, r.text(row, 12))) {
    return fail(errc::internal, "PostgreSQL's DateStyle must be ISO for cloudbrain to read times");
  }
  const std::size_t created_end = out.size();
  out += "\",\"updated_at\":\"";
  if (!append_rfc3339(out, r.text(row, 13))) {
    return fail(errc::internal, "PostgreSQL's DateStyle must be ISO for cloudbrain to read times");
  }
  out += "\"}";
  if (created_end - created_at != rfc3339_size) return fail(errc::internal, "a time out of range");
  return created_at;
}

// Writes a batch's rows with one statement (`write`) and answers each item from its row. A
// deadlock or serialization failure (two batches, or a batch and a job's own statement, locking
// the same rows in another order) goes again, once. A refusal that one row may have caused (a
// constraint, a value out of range) sends the halves again apart, so that only that row fails
// and its neighbours commit.
template <class Item, class Row, class Write>
asio::awaitable<void> write_apart(std::span<const Item> items, deadline dl,
                                  std::span<result<Row>> out, Write write) {
  auto r = co_await write(items, dl);
  if (!r && (r.error().is(errc::db_deadlock) || r.error().is(errc::db_serialization_failure))) {
    r = co_await write(items, dl);
  }
  if (r) {
    std::move(r->begin(), r->end(), out.begin());
    co_return;
  }
  const auto& e = r.error();
  const bool row_caused = e.is(errc::db_unique_violation) || e.is(errc::db_check_violation) ||
                          e.is(errc::db_foreign_key_violation) || e.is(errc::db_data_exception) ||
                          e.is(errc::invalid_argument);
  if (row_caused && items.size() > 1) {
    const std::size_t half = items.size() / 2;
    auto first = write_apart(items.first(half), dl, out.first(half), write);
    co_await std::move(first);
    auto second = write_apart(items.subspan(half), dl, out.subspan(half), write);
    co_await std::move(second);
    co_return;
  }
  for (auto& o : out) o = e;
}

}  // namespace

instance_store::instance_store(asio::any_io_executor ex, pg::pool& pool, std::string owner,
                               unsigned max_attempts, instance_batching batching)
    : pool_(pool),
      owner_(std::move(owner)),
      max_attempts_(max_attempts),
      creates_(
          ex, "instance creates", batching.creates,
          [this](std::vector<create_item>& items, deadline dl) { return insert_batch(items, dl); }),
      reads_(ex, "instance reads", batching.reads,
             [this](std::vector<read_item>& items, deadline dl) { return read_batch(items, dl); }),
      deletes_(ex, "instance deletes", batching.deletes,
               [this](std::vector<delete_item>& items, deadline dl) {
                 return delete_batch(items, dl);
               }) {}

asio::awaitable<result<created_instance>> instance_store::create(
    const instance_request& req, std::int64_t token_id, std::optional<std::int64_t> owner,
    const std::optional<idempotent_request>& idem, const audit_event& record) {
  // A launch into a reservation takes one of its places in the same statement: alone.
  if (req.reservation_id) co_return co_await create_one(req, token_id, owner, idem, record);
  for (int round = 0; round < 2; ++round) {
    create_item item{uuid::generate_v7().str(), req, token_id, idem, record};
    const std::string id = item.id;
    auto submitting = creates_.submit(std::move(item), after(pool_.config().query_timeout));
    auto body = co_await std::move(submitting);
    if (!body) co_return body.error();
    if (*body) {
      created_instance out;
      out.body = std::move(**body);
      out.id = id;
      co_return out;
    }
    // The key was taken, by an earlier request or a twin in flight: its answer is replayed.
    auto finding = find_replay(pool_, token_id, *idem);
    auto prior = co_await std::move(finding);
    if (!prior) co_return prior.error();
    if (*prior) {
      co_return created_instance{(*prior)->status, std::move((*prior)->body),
                                 std::move((*prior)->id), true};
    }
    // It was older than 24 hours and is gone now: the key is free again.
  }
  co_return fail(errc::conflict, "this Idempotency-Key is being used by a concurrent request");
}

asio::awaitable<result<created_instance>> instance_store::create_one(
    const instance_request& req, std::int64_t token_id, std::optional<std::int64_t> owner,
    const std::optional<idempotent_request>& idem, const audit_event& record) {
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
    const params query_args_3{
        id,
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
        idem ? std::optional<std::string>(idem->request_hash) : std::nullopt,
        owner ? std::optional<std::string>(std::to_string(*owner)) : std::nullopt,
        record.request_id,
        record.address,
        record.action,
        record.method};
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

asio::awaitable<instance_store::create_results> instance_store::insert_batch(
    std::vector<create_item>& items, deadline dl) {
  create_results out(items.size());
  auto inserting = write_apart<create_item, create_result>(
      items, dl, out,
      [this](std::span<const create_item> part, deadline d) { return insert_rows(part, d); });
  co_await std::move(inserting);
  co_return out;
}

namespace {

// The JSON of an instance just inserted, as instance_json_sql would render its row.
std::string new_instance_json(const std::string& id, const instance_request& req,
                              std::string_view at) {
  std::string out;
  out.reserve(384 + req.image.size() + (req.public_ssh_key ? req.public_ssh_key->size() : 0));
  const auto text = [&out](std::string_view key, std::string_view value) {
    out += '"';
    out += key;
    out += "\":\"";
    log::append_json_escaped(out, value);
    out += "\",";
  };
  const auto optional_text = [&](std::string_view key, const std::optional<std::string>& value) {
    if (value) {
      text(key, *value);
    } else {
      out += '"';
      out += key;
      out += "\":null,";
    }
  };
  out += '{';
  text("id", id);
  text("provider", req.provider);
  text("image", req.image);
  text("instance_type", req.instance_type);
  optional_text("public_ssh_key", req.public_ssh_key);
  optional_text("zone", req.zone);
  out += "\"reservation_id\":null,\"tags\":";
  out += json::serialize(req.tags);
  out += ",\"ip_address\":null,\"upstream_id\":null,\"state\":\"creating\",";
  out += "\"error_reason\":null,";
  text("created_at", at);
  out += "\"updated_at\":\"";
  out += at;
  out += "\"}";
  return out;
}

}  // namespace

asio::awaitable<result<std::vector<instance_store::create_result>>> instance_store::insert_rows(
    std::span<const create_item> items, deadline dl) {
  const std::size_t n = items.size();
  std::vector<std::string> ids, providers, images, types, tags, tokens;
  std::vector<std::string_view> request_ids, addresses, actions, methods;
  std::vector<std::optional<std::string>> keys_ssh, zones, idem_keys, hashes;
  for (auto* v : {&ids, &providers, &images, &types, &tags, &tokens}) v->reserve(n);
  for (auto* v : {&request_ids, &addresses, &actions, &methods}) v->reserve(n);
  for (auto* v : {&keys_ssh, &zones, &idem_keys, &hashes}) v->reserve(n);
  for (const auto& item : items) {
    ids.push_back(item.id);
    providers.push_back(item.req.provider);
    images.push_back(item.req.image);
    types.push_back(item.req.instance_type);
    keys_ssh.push_back(item.req.public_ssh_key);
    zones.push_back(item.req.zone);
    tags.push_back(json::serialize(item.req.tags));
    tokens.push_back(std::to_string(item.token_id));
    idem_keys.push_back(item.idem ? std::optional<std::string>(item.idem->key) : std::nullopt);
    hashes.push_back(item.idem ? std::optional<std::string>(item.idem->request_hash)
                               : std::nullopt);
    request_ids.push_back(item.record.request_id);
    addresses.push_back(item.record.address);
    actions.push_back(item.record.action);
    methods.push_back(item.record.method);
  }
  const params args{
      pg::text_array(ids),       pg::text_array(providers),     pg::text_array(images),
      pg::text_array(types),     pg::text_array(keys_ssh),      pg::text_array(zones),
      pg::text_array(tags),      pg::text_array(tokens),        pg::text_array(idem_keys),
      pg::text_array(hashes),    std::to_string(max_attempts_), pg::text_array(request_ids),
      pg::text_array(addresses), pg::text_array(actions),       pg::text_array(methods)};
  auto r = co_await pool_.execute(stmt_instance_create_batch, args, dl);
  if (!r) co_return r.error();
  // Rows come back in no promised order: match them by id.
  std::unordered_map<std::string_view, std::string_view> stored;
  stored.reserve(r->size());
  for (int row = 0; row < static_cast<int>(r->size()); ++row) {
    stored.emplace(r->text(row, 0), r->text(row, 1));
  }
  std::vector<create_result> out;
  out.reserve(n);
  for (const auto& item : items) {
    const auto it = stored.find(item.id);
    if (it != stored.end()) {
      out.emplace_back(new_instance_json(item.id, item.req, it->second));
    } else if (item.idem) {
      out.emplace_back(std::nullopt);
    } else {
      co_return fail(errc::internal, "a create of the batch was not stored");
    }
  }
  co_return out;
}

asio::awaitable<result<std::string>> instance_store::get_json(const std::string& id,
                                                              std::optional<std::int64_t> owner) {
  auto reading = reads_.submit(read_item{id, owner}, after(pool_.config().query_timeout));
  auto body = co_await std::move(reading);
  if (!body) co_return body.error();
  if (!*body) co_return fail(errc::not_found, "no instance " + id);
  co_return std::move(**body);
}

asio::awaitable<std::vector<result<instance_store::read_result>>> instance_store::read_batch(
    std::vector<read_item>& items, deadline dl) {
  // Each distinct (id, owner) once; `slot` is its position in the arrays, from 1.
  std::map<std::pair<std::string_view, std::optional<std::int64_t>>, std::size_t> slot;
  std::string ids = "{";
  std::string owners = "{";
  for (const auto& item : items) {
    const auto [it, added] = slot.try_emplace({item.id, item.owner}, slot.size() + 1);
    if (!added) continue;
    if (ids.size() > 1) {
      ids += ',';
      owners += ',';
    }
    ids += item.id;  // a UUID parsed by the API
    owners += item.owner ? std::to_string(*item.owner) : std::string("NULL");
  }
  ids += '}';
  owners += '}';
  const params args{ids, owners};
  auto r = co_await pool_.execute(stmt_instance_get_many, args, dl);
  std::vector<result<read_result>> out;
  out.reserve(items.size());
  if (!r) {
    for (std::size_t i = 0; i < items.size(); ++i) out.emplace_back(r.error());
    co_return out;
  }
  std::unordered_map<std::size_t, int> found;
  found.reserve(r->size());
  for (int row = 0; row < static_cast<int>(r->size()); ++row) {
    found.emplace(std::stoull(std::string(r->text(row, instance_columns))), row);
  }
  for (const auto& item : items) {
    const auto it = found.find(slot.at({item.id, item.owner}));
    if (it == found.end()) {
      out.emplace_back(read_result{});
      continue;
    }
    std::string body;
    auto rendered = append_instance_json(body, *r, it->second);
    if (!rendered) {
      out.emplace_back(rendered.error());
    } else {
      out.emplace_back(read_result{std::move(body)});
    }
  }
  co_return out;
}

asio::awaitable<result<list_page>> instance_store::list(const list_filter& f) {
  std::optional<std::string> after_time;
  std::optional<std::string> after_id;
  if (f.after) {
    after_time = f.after->created_at;
    after_id = f.after->id;
  }
  std::optional<std::string> tags;
  if (!f.tags.empty()) tags = json::serialize(f.tags);
  params args;
  if (f.created_by) args.emplace_back(std::to_string(*f.created_by));
  if (f.provider) args.emplace_back(*f.provider);
  if (f.state) args.emplace_back(*f.state);
  if (tags) args.emplace_back(*tags);
  if (after_time) {
    args.emplace_back(*after_time);
    args.emplace_back(*after_id);
  }
  args.emplace_back(std::to_string(f.limit + 1));
  const std::size_t filters = (f.provider ? list_with_provider : 0) |
                              (f.state ? list_with_state : 0) | (tags ? list_with_tags : 0) |
                              (after_time ? list_after : 0) | (f.created_by ? list_with_owner : 0);
  auto r = co_await pool_.execute(list_statement_set.statements[filters], args);
  if (!r) co_return r.error();
  list_page page;
  const int shown = static_cast<int>(std::min<std::size_t>(r->size(), f.limit));
  page.instances_json.reserve(static_cast<std::size_t>(shown) * 512 + 2);
  page.instances_json += '[';
  std::size_t last_created_at = 0;
  for (int row = 0; row < shown; ++row) {
    if (row) page.instances_json += ',';
    auto rendered = append_instance_json(page.instances_json, *r, row);
    if (!rendered) co_return rendered.error();
    last_created_at = *rendered;
  }
  page.instances_json += ']';
  if (r->size() > f.limit && shown > 0) {
    page.next = encode_list_cursor(page.instances_json.substr(last_created_at, rfc3339_size),
                                   r->text(shown - 1, 0));
  }
  co_return page;
}

asio::awaitable<result<std::string>> instance_store::request_delete(
    const std::string& id, std::optional<std::int64_t> owner, const audit_event& record) {
  auto deleting =
      deletes_.submit(delete_item{id, owner, record}, after(pool_.config().query_timeout));
  auto body = co_await std::move(deleting);
  if (!body) co_return body.error();
  if (!*body) co_return fail(errc::not_found, "no instance " + id);
  co_return std::move(**body);
}

asio::awaitable<std::vector<result<instance_store::read_result>>> instance_store::delete_batch(
    std::vector<delete_item>& items, deadline dl) {
  std::vector<result<read_result>> out(items.size());
  auto deleting = write_apart<delete_item, read_result>(
      items, dl, out,
      [this](std::span<const delete_item> part, deadline d) { return delete_rows(part, d); });
  co_await std::move(deleting);
  co_return out;
}

asio::awaitable<result<std::vector<instance_store::read_result>>> instance_store::delete_rows(
    std::span<const delete_item> items, deadline dl) {
  std::vector<std::string> ids;
  std::vector<std::optional<std::string>> owners, tokens;
  std::vector<std::string_view> request_ids, addresses, actions, methods, targets;
  for (auto* v : {&owners, &tokens}) v->reserve(items.size());
  for (auto* v : {&request_ids, &addresses, &actions, &methods, &targets}) v->reserve(items.size());
  ids.reserve(items.size());
  for (const auto& item : items) {
    ids.push_back(item.id);
    owners.push_back(pg::to_param(item.owner));
    tokens.push_back(pg::to_param(item.record.token_id));
    request_ids.push_back(item.record.request_id);
    addresses.push_back(item.record.address);
    actions.push_back(item.record.action);
    methods.push_back(item.record.method);
    targets.push_back(item.record.target);
  }
  const params args{pg::text_array(ids),         pg::text_array(owners),    pg::text_array(tokens),
                    pg::text_array(request_ids), pg::text_array(addresses), pg::text_array(actions),
                    pg::text_array(methods),     pg::text_array(targets)};
  auto r = co_await pool_.execute(stmt_instance_delete_batch, args, dl);
  if (!r) co_return r.error();
  // Rows come back in no promised order, once per distinct id that some caller of the batch may
  // see: match them by id, and each caller to the row's creator.
  std::unordered_map<std::string_view, int> found;
  found.reserve(r->size());
  for (int row = 0; row < static_cast<int>(r->size()); ++row) found.emplace(r->text(row, 0), row);
  std::vector<read_result> out;
  out.reserve(items.size());
  for (const auto& item : items) {
    const auto it = found.find(item.id);
    const bool visible =
        it != found.end() &&
        (!item.owner || (!r->is_null(it->second, instance_columns) &&
                         r->text(it->second, instance_columns) == std::to_string(*item.owner)));
    if (!visible) {
      out.emplace_back(std::nullopt);
      continue;
    }
    std::string body;
    auto rendered = append_instance_json(body, *r, it->second);
    if (!rendered) co_return rendered.error();
    out.emplace_back(std::move(body));
  }
  co_return out;
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
