#!/usr/bin/env bash
# Schema round trip: deploy + verify schema/ into a throwaway cluster, exercise its constraints
# and triggers, check that the verify scripts notice missing objects, revert everything (nothing
# of cloudbrain left behind) and deploy again. Prints one line per check and "N passed, M failed";
# exits non-zero when any check failed.
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
# shellcheck source=tests/support/pg.sh
source "$here/../../support/pg.sh"

passed=0
failed=0
ok() {
  passed=$((passed + 1))
  echo "ok     $1"
}
not_ok() {
  failed=$((failed + 1))
  echo "FAILED $1"
  if [[ -n ${2:-} ]]; then
    # shellcheck disable=SC2001 # indent every line
    sed 's/^/         | /' <<<"$2"
  fi
}
summary() {
  echo "$passed passed, $failed failed"
}
fatal() { # a check failed that the rest depends on
  not_ok "$@"
  echo "stopping: the remaining checks depend on this one"
  summary
  exit 1
}

# check NAME CMD...: CMD must succeed.
check() {
  local name=$1 out
  shift
  if out=$("$@" 2>&1); then ok "$name"; else not_ok "$name" "$out"; fi
}
# check_eq NAME EXPECTED ACTUAL
check_eq() {
  if [[ $2 == "$3" ]]; then ok "$1"; else not_ok "$1" "expected: $2"$'\n'"got:      $3"; fi
}
# check_fails NAME PATTERN CMD...: CMD must fail, and its output must match PATTERN (grep -E).
check_fails() {
  local name=$1 pattern=$2 out
  shift 2
  if out=$("$@" 2>&1); then
    not_ok "$name" "succeeded but should have failed; output:"$'\n'"$out"
  elif grep -Eq -- "$pattern" <<<"$out"; then
    ok "$name"
  else
    not_ok "$name" "failed, but without /$pattern/; output:"$'\n'"$out"
  fi
}
# check_output NAME PATTERN CMD...: CMD must succeed and its output match PATTERN.
check_output() {
  local name=$1 pattern=$2 out
  shift 2
  if ! out=$("$@" 2>&1); then
    not_ok "$name" "command failed; output:"$'\n'"$out"
  elif grep -Eq -- "$pattern" <<<"$out"; then
    ok "$name"
  else
    not_ok "$name" "output does not match /$pattern/:"$'\n'"$out"
  fi
}

# q SQL...: one value per line, unaligned; errors verbose (with SQLSTATE).
q() {
  local args=() s
  for s in "$@"; do args+=(-c "$s"); done
  psql -X -q -At -v ON_ERROR_STOP=1 -v VERBOSITY=verbose "$DATABASE_URL" "${args[@]}"
}

cb_pg_dir=$(mktemp -d /tmp/cloudbrain-pg-XXXXXX) || exit 1
chmod 755 "$cb_pg_dir"
touch "$cb_pg_dir/.cloudbrain-pg"
trap 'cb_pg_destroy "$cb_pg_dir"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
cb_pg_watchdog $$ "$cb_pg_dir"

echo "# cluster"
if cb_pg_start "$cb_pg_dir" >"$cb_pg_dir/start.log" 2>&1; then
  ok "throwaway PostgreSQL starts ($DATABASE_URL, pid $CB_PG_PID)"
else
  fatal "throwaway PostgreSQL starts" "$(cat "$cb_pg_dir/start.log")"
fi

# ---------------------------------------------------------------------------------------------
echo "# deploy"
if out=$(cb_schema_deploy "$DATABASE_URL" 2>&1); then
  ok "sqitch deploy --verify"
else
  fatal "sqitch deploy --verify" "$out"
fi
check "sqitch verify" cb_schema_verify "$DATABASE_URL"
check_eq "sqitch.changes has every change of project cloudbrain, in order" \
  "tokens instances instance_events idempotency_keys jobs orphan_events reservations reservation_idempotency reservation_sets usage_history statement_triggers token_roles audit_trail cluster token_scopes lean_creates claim_indexes" \
  "$(q "select string_agg(change, ' ' order by committed_at, change_id) from sqitch.changes
        where project = 'cloudbrain'" 2>&1)"

for t in tokens instances instance_events idempotency_keys jobs; do
  check_eq "table public.$t exists" "t" "$(q "select to_regclass('public.$t') is not null" 2>&1)"
done
check_eq "type instance_state has its six labels, in order" \
  "{creating,starting,running,terminating,terminated,errored}" \
  "$(q "select enum_range(null::public.instance_state)::text" 2>&1)"
check_eq "type job_kind has its labels" \
  "{create_instance,delete_instance,reserve,release_reservation}" \
  "$(q "select enum_range(null::public.job_kind)::text" 2>&1)"
check_eq "type job_state has its labels" "{queued,running,succeeded,failed,cancelled}" \
  "$(q "select enum_range(null::public.job_state)::text" 2>&1)"
check_eq "every index exists" \
  "audit_events_at_idx audit_events_token_id_id_idx cluster_roles_provider_role_key idempotency_keys_created_at_idx instance_events_ended_at_idx instance_events_instance_id_id_idx instance_events_orphans_idx instances_created_at_id_idx instances_created_by_created_at_id_idx instances_provider_state_created_at_id_idx instances_reservation_id_idx instances_state_created_at_id_idx instances_tags_idx jobs_claim_idx jobs_instance_id_idx jobs_one_unfinished_per_kind_idx jobs_one_unfinished_per_reservation_kind_idx jobs_reservation_id_idx jobs_running_idx reservation_events_ended_at_idx reservation_events_orphans_idx reservation_events_reservation_id_id_idx reservation_set_events_set_id_id_idx reservation_sets_created_at_id_idx reservation_sets_created_by_created_at_id_idx reservation_sets_tags_idx reservation_sets_unsettled_idx reservations_created_at_id_idx reservations_created_by_created_at_id_idx reservations_live_ends_at_idx reservations_live_state_idx reservations_provider_state_idx reservations_set_member_idx reservations_tags_idx" \
  "$(q "select string_agg(indexname, ' ' order by indexname) from pg_indexes
        where schemaname = 'public' and indexname not like '%_pkey'" 2>&1)"
check_eq "the tags index is GIN jsonb_path_ops" "t" \
  "$(q "select indexdef like '%USING gin (tags jsonb_path_ops)%' from pg_indexes
        where indexname = 'instances_tags_idx'" 2>&1)"
check_eq "the claim index is partial on unfinished jobs" "t" \
  "$(q "select pg_get_expr(indpred, indrelid) like '%queued%running%' from pg_index
        where indexrelid = 'public.jobs_claim_idx'::regclass" 2>&1)"

# ---------------------------------------------------------------------------------------------
echo "# constraints"
i1=11111111-1111-4111-8111-111111111111
i2=22222222-2222-4222-8222-222222222222
salt32="decode(repeat('01', 32), 'hex')"
tok=$(q "insert into tokens (description, salt, hash)
         values ('round trip', $salt32, decode(repeat('02', 32), 'hex')) returning id" 2>&1)
if [[ $tok =~ ^[0-9]+$ ]]; then ok "insert a token (id $tok)"; else fatal "insert a token" "$tok"; fi
check_fails "tokens.salt must be 32 bytes" "23514.*tokens_salt_check" \
  q "insert into tokens (description, salt, hash)
     values ('short', decode(repeat('01', 31), 'hex'), $salt32)"
check_fails "tokens.hash must be 32 bytes" "23514.*tokens_hash_check" \
  q "insert into tokens (description, salt, hash) values ('short', $salt32, '\\x00')"
check_eq "a token made without a role is a client token" "client" \
  "$(q "select role from tokens where id = $tok" 2>&1)"
check "a driver token is accepted" \
  q "insert into tokens (description, salt, hash, role)
     values ('a driver', $salt32, $salt32, 'driver')"
check_fails "tokens.role is admin, client or driver" "23514.*tokens_role_check" \
  q "insert into tokens (description, salt, hash, role) values ('x', $salt32, $salt32, 'root')"
check_fails "instances.instance_type is standard or premium" "23514.*instances_instance_type_check" \
  q "insert into instances (id, provider, image, instance_type)
     values (gen_random_uuid(), 'fake', 'img', 'huge')"
check_fails "instances.tags must be a JSON object" "23514.*instances_tags_check" \
  q "insert into instances (id, provider, image, instance_type, tags)
     values (gen_random_uuid(), 'fake', 'img', 'standard', '[]')"
check_fails "instances.created_by references tokens" "23503.*instances_created_by_fkey" \
  q "insert into instances (id, provider, image, instance_type, created_by)
     values (gen_random_uuid(), 'fake', 'img', 'standard', 999999)"

# ---------------------------------------------------------------------------------------------
echo "# instances: version and events"
out=$(q "insert into instances (id, provider, image, instance_type, created_by, tags)
         values ('$i1', 'fake', 'img-1', 'standard', $tok, '{\"team\":\"a\"}')" 2>&1)
if [[ -z $out ]]; then ok "insert an instance"; else fatal "insert an instance" "$out"; fi
check_eq "a new instance has its defaults (creating, version 1, not delete_requested)" \
  "creating|1|f" "$(q "select state, version, delete_requested from instances where id = '$i1'" 2>&1)"
check_eq "inserting an instance records one event (NULL -> creating, no reason)" \
  "1|t|creating|t" \
  "$(q "select count(*), bool_and(from_state is null), max(to_state::text), bool_and(reason is null)
        from instance_events where instance_id = '$i1'" 2>&1)"
check_eq "the tags index answers containment" "$i1" \
  "$(q "select id from instances where tags @> '{\"team\":\"a\"}'" 2>&1)"

check "update state with SET LOCAL cloudbrain.event_reason, conditional on version" \
  q "begin" "set local cloudbrain.event_reason = 'cloud accepted it'" \
  "update instances set state = 'starting', upstream_id = 'vm-1' where id = '$i1' and version = 1" \
  "commit"
check_eq "the state change records a second event with the reason" \
  "2|creating>starting|cloud accepted it" \
  "$(q "select (select count(*) from instance_events where instance_id = '$i1')
               || '|' || from_state || '>' || to_state || '|' || coalesce(reason, 'NULL')
        from instance_events where instance_id = '$i1' order by id desc limit 1" 2>&1)"
check_eq "the update bumped version to 2 and moved updated_at" "2|t" \
  "$(q "select version, updated_at > created_at from instances where id = '$i1'" 2>&1)"
check_eq "an update conditional on a stale version changes nothing" "0|2" \
  "$(q "with u as (update instances set zone = 'z' where id = '$i1' and version = 1 returning 1)
        select (select count(*) from u) || '|' || (select version from instances where id = '$i1')" 2>&1)"

check "update state with set_config('cloudbrain.event_reason', ..., true)" \
  q "begin" "select set_config('cloudbrain.event_reason', 'has an address', true)" \
  "update instances set state = 'running', ip_address = '203.0.113.7' where id = '$i1' and state = 'starting'" \
  "commit"
check_eq "set_config's reason is recorded" "starting>running|has an address" \
  "$(q "select from_state || '>' || to_state || '|' || coalesce(reason, 'NULL')
        from instance_events where instance_id = '$i1' order by id desc limit 1" 2>&1)"
check "an update that does not touch state" \
  q "update instances set zone = 'zone-a', delete_requested = true where id = '$i1'"
check_eq "... bumps the version but records no event" "4|3" \
  "$(q "select version || '|' || (select count(*) from instance_events where instance_id = '$i1')
        from instances where id = '$i1'" 2>&1)"
check "update state to itself" q "update instances set state = 'running' where id = '$i1'"
check_eq "... records no event either" "5|3" \
  "$(q "select version || '|' || (select count(*) from instance_events where instance_id = '$i1')
        from instances where id = '$i1'" 2>&1)"
check "a state change without cloudbrain.event_reason" \
  q "update instances set state = 'terminating' where id = '$i1'"
check_eq "... records a NULL reason (the setting is transaction-local)" "running>terminating|NULL" \
  "$(q "select from_state || '>' || to_state || '|' || coalesce(reason, 'NULL')
        from instance_events where instance_id = '$i1' order by id desc limit 1" 2>&1)"

check "a second instance goes to errored with error_reason" \
  q "insert into instances (id, provider, image, instance_type) values ('$i2', 'fake', 'img-2', 'premium')" \
  "begin" "set local cloudbrain.event_reason = 'not this one'" \
  "update instances set state = 'errored', error_reason = 'quota exceeded' where id = '$i2'" "commit"
check_eq "an errored event takes its reason from error_reason" "creating>errored|quota exceeded" \
  "$(q "select from_state || '>' || to_state || '|' || coalesce(reason, 'NULL')
        from instance_events where instance_id = '$i2' order by id desc limit 1" 2>&1)"

# ---------------------------------------------------------------------------------------------
echo "# instance_events is append-only"
check_fails "UPDATE of an event fails" "55000.*instance_events is append-only" \
  q "update instance_events set reason = 'rewritten' where instance_id = '$i1'"
check_fails "DELETE of an event fails" "55000.*instance_events is append-only" \
  q "delete from instance_events where instance_id = '$i1'"
check_fails "TRUNCATE of instance_events fails" "55000.*instance_events is append-only" \
  q "truncate instance_events"
check_fails "TRUNCATE instances CASCADE fails too" "55000.*instances are never deleted" \
  q "truncate instances cascade"
check_fails "DELETE of an instance fails" "55000.*instances are never deleted" \
  q "delete from instances where id = '$i1'"
check_eq "the events are all still there" "6" "$(q "select count(*) from instance_events" 2>&1)"

# ---------------------------------------------------------------------------------------------
echo "# idempotency_keys"
idem() { # idem KEY
  q "insert into idempotency_keys (token_id, key, request_hash, instance_id, response_status, response_body)
     values ($tok, '$1', '\\x0102', '$i1', 201, '{\"id\":\"$i1\"}')"
}
check "store an idempotency key" idem "key-1"
check_fails "the same (token, key) twice is rejected" "23505.*idempotency_keys_pkey" idem "key-1"
check_fails "an empty key is rejected" "23514.*idempotency_keys_key_check" idem ""
check_fails "a key longer than 255 is rejected" "23514.*idempotency_keys_key_check" \
  idem "$(printf 'k%.0s' {1..256})"

# ---------------------------------------------------------------------------------------------
echo "# jobs"
job() { # job KIND INSTANCE [PROVIDER]
  q "insert into jobs (kind, instance_id, provider, cloud_key)
     values ('$1', '$2', '${3:-fake}', 'cb-$2-$1') returning id"
}
j1=$(job create_instance "$i1" 2>&1)
if [[ $j1 =~ ^[0-9]+$ ]]; then
  ok "queue a create_instance job"
else
  not_ok "queue a create_instance job" "$j1"
  j1=0
fi
check_eq "a new job has its defaults (queued, 0 of 10 attempts, due)" "queued|0|10|t" \
  "$(q "select state, attempts, max_attempts, run_at <= now() from jobs where id = $j1" 2>&1)"
check_fails "a second queued create_instance job for the instance is rejected" \
  "23505.*jobs_one_unfinished_per_kind_idx" job create_instance "$i1"
check "a delete_instance job for the same instance is accepted" job delete_instance "$i1"
check "the first job is leased (running)" \
  q "update jobs set state = 'running', lease_owner = 'w1', lease_expires_at = now() + interval '30 s',
     attempts = attempts + 1 where id = $j1"
check_fails "a running job still blocks another create_instance job" \
  "23505.*jobs_one_unfinished_per_kind_idx" job create_instance "$i1"
check_eq "updating a job moves its updated_at" "t" \
  "$(q "select updated_at > created_at from jobs where id = $j1" 2>&1)"
check "the first job succeeds" \
  q "update jobs set state = 'succeeded', finished_at = now(), lease_owner = null where id = $j1"
check "once finished, a new create_instance job is accepted" job create_instance "$i1"
check_output "the claim index serves a provider's due jobs" "jobs_claim_idx" \
  q "set enable_seqscan = off" "explain select id from jobs where provider = 'fake'
     and state in ('queued', 'running') and run_at <= now() order by run_at limit 10"

notify_line='Asynchronous notification "cloudbrain_jobs" with payload "fake-notify" received'
listen() { # listen SQL...: LISTEN, then run each SQL in the same session; print what psql prints
  local args=() s
  for s in "$@"; do args+=(-c "$s"); done
  psql -X -v ON_ERROR_STOP=1 "$DATABASE_URL" -c "LISTEN cloudbrain_jobs" "${args[@]}"
}
# check_silent NAME SQL...: SQL must succeed and send no notification to the LISTENer
check_silent() {
  local name=$1 out
  shift
  if ! out=$(listen "$@" 2>&1); then
    not_ok "$name" "command failed; output:"$'\n'"$out"
  elif [[ $out == *"Asynchronous notification"* ]]; then
    not_ok "$name" "$out"
  else
    ok "$name"
  fi
}
check_output "INSERT into jobs sends NOTIFY cloudbrain_jobs with the provider" "$notify_line" \
  listen "insert into jobs (kind, instance_id, provider, cloud_key)
          values ('create_instance', '$i2', 'fake-notify', 'k2')"
check_silent "taking a lease (queued -> running) sends no NOTIFY" \
  "update jobs set state = 'running', lease_owner = 'w2' where cloud_key = 'k2'"
check_output "a job put back to queued (retry) sends NOTIFY" "$notify_line" \
  listen "update jobs set state = 'queued', lease_owner = null, attempts = attempts + 1,
          run_at = now() + interval '2 s', last_error = 'timeout' where cloud_key = 'k2'"
check_output "moving a queued job's run_at sends NOTIFY" "$notify_line" \
  listen "update jobs set run_at = now() where cloud_key = 'k2'"
check_silent "finishing a job sends no NOTIFY" \
  "update jobs set state = 'failed', finished_at = now() where cloud_key = 'k2'"
check_output "NOTIFY is delivered at commit" "$notify_line" \
  listen "begin" "insert into jobs (kind, instance_id, provider, cloud_key)
                  values ('delete_instance', '$i2', 'fake-notify', 'k3')" "commit"
check_silent "a rolled-back INSERT sends no NOTIFY" \
  "begin" "insert into jobs (kind, instance_id, provider, cloud_key)
           values ('create_instance', '$i2', 'fake-notify', 'k4')" "rollback"

# ---------------------------------------------------------------------------------------------
echo "# the verify scripts notice missing objects"
# Each case breaks one object inside a transaction, then runs that change's verify script in the
# same session (psql stops at its first error, the connection closes, the damage rolls back).
verify_with() { # verify_with CHANGE SQL: SQL, a marker, then verify/CHANGE.sql
  psql -X -q -v ON_ERROR_STOP=1 "$DATABASE_URL" -c "begin" -c "$2" -c "select 'damage done'" \
    -f "$CB_SCHEMA_DIR/verify/$1.sql"
}
while IFS='|' read -r change what sql; do
  out=$(verify_with "$change" "$sql" 2>&1)
  if [[ $out != *"damage done"* ]]; then
    not_ok "verify/$change.sql fails when $what" "could not break it:"$'\n'"$out"
  elif [[ $out != *ERROR* ]]; then
    not_ok "verify/$change.sql fails when $what" "it passed:"$'\n'"$out"
  else
    ok "verify/$change.sql fails when $what"
  fi
done <<'MUTATIONS'
tokens|a column is missing|alter table tokens drop column revoked_at cascade
token_roles|the role check is missing|alter table tokens drop constraint tokens_role_check
instances|a state label is missing|alter type instance_state rename value 'errored' to 'failed'
instances|the version trigger is missing|drop trigger instances_bump_version on instances
instances|the tags index is missing|drop index instances_tags_idx
instance_events|the event trigger is missing|drop trigger instances_record_event on instances
instance_events|the TRUNCATE guard is missing|drop trigger instance_events_no_truncate on instance_events
instance_events|the append-only function is missing|drop function instance_events_append_only() cascade
idempotency_keys|the purge index is missing|drop index idempotency_keys_created_at_idx
jobs|a job_state label is missing|alter type job_state rename value 'cancelled' to 'canceled'
jobs|the unfinished-job index is not unique|drop index jobs_one_unfinished_per_kind_idx; create index jobs_one_unfinished_per_kind_idx on jobs (instance_id, kind) where state in ('queued', 'running')
jobs|the requeue NOTIFY trigger is missing|drop trigger jobs_notify_requeue on jobs
jobs|the NOTIFY function is missing|drop function jobs_notify() cascade
reservation_sets|the unsettled-set index is missing|drop index reservation_sets_unsettled_idx
reservation_sets|the set event trigger is missing|drop trigger reservation_sets_record_event on reservation_sets
reservation_sets|set_failed is not a cancel reason|alter table reservations drop constraint reservations_cancel_reason_check
usage_history|an end-of-life index is missing|drop index reservation_events_ended_at_idx
statement_triggers|the INSERT event trigger is missing|drop trigger instances_record_inserts on instances
statement_triggers|the jobs INSERT NOTIFY is per row again|drop trigger jobs_notify_insert on jobs; create trigger jobs_notify_insert after insert on jobs for each row execute function jobs_notify()
audit_trail|the append-only guard is missing|drop trigger audit_events_append_only on audit_events
audit_trail|a column is missing|alter table audit_events drop column outcome
cluster|the revocation NOTIFY trigger is missing|drop trigger tokens_notify_revoked on tokens
cluster|the pacing function is missing|drop function take_call_slots(text, int, double precision, double precision)
cluster|the nodes table is missing|drop table nodes
token_scopes|the scope check is missing|alter table tokens drop constraint tokens_scope_check
token_scopes|a scoped listing index is missing|drop index reservations_created_by_created_at_id_idx
lean_creates|the DELETE guard is missing|drop trigger instances_never_deleted on instances
lean_creates|the TRUNCATE guard is missing|drop trigger instances_never_truncated on instances
lean_creates|a foreign key to instances is back|alter table jobs add foreign key (instance_id) references instances (id)
claim_indexes|the running jobs' index is missing|drop index jobs_running_idx
claim_indexes|the claim index is not in the claim's order|drop index jobs_claim_idx; create index jobs_claim_idx on jobs (provider, run_at) where state in ('queued', 'running')
MUTATIONS
for change in tokens instances instance_events idempotency_keys jobs reservation_sets usage_history \
  statement_triggers token_roles audit_trail cluster token_scopes lean_creates claim_indexes; do
  check "verify/$change.sql passes on the intact schema (the damage was rolled back)" \
    verify_with "$change" "select 1"
done

# ---------------------------------------------------------------------------------------------
echo "# the audit trail is append-only"
q "insert into audit_events (address, action, method, target, status, outcome)
   values ('cli', 'token.create', 'CLI', '1', 0, 'ok')" >/dev/null 2>&1
for sql in "update audit_events set outcome = 'x'" "delete from audit_events" \
           "truncate audit_events"; do
  out=$(q "$sql" 2>&1)
  if [[ $out == *"audit_events is append-only"* ]]; then
    ok "audit_events refuses: $sql"
  else
    not_ok "audit_events refuses: $sql" "$out"
  fi
done
check_eq "the audit row is still there" "1" "$(q "select count(*) from audit_events" 2>&1)"

# ---------------------------------------------------------------------------------------------
echo "# cluster: call pacing and revocation notices"
check_eq "a provider's first call slots are granted at once" "2|true" \
  "$(q "select granted || '|' || (first_in <= 0 and first_in > -5)
          from take_call_slots('pace-a', 2, 10, 60)" 2>&1)"
check_eq "the next slot follows those handed out before, spaced" "1|true" \
  "$(q "select granted || '|' || (first_in between 15 and 20)
          from take_call_slots('pace-a', 1, 10, 60)" 2>&1)"
check_eq "a slot further away than the horizon is refused, with when to ask again" "0|true|true" \
  "$(q "select granted || '|' || (first_in is null) || '|' || (retry_in between 10 and 15)
          from take_call_slots('pace-a', 1, 10, 15)" 2>&1)"
check_eq "a pause holds back every node's next slot of that provider" "0|true" \
  "$(q "select pause_calls('pace-b', 30)" \
    "select granted || '|' || (retry_in between 25 and 30)
       from take_call_slots('pace-b', 1, 0.1, 1)" 2>&1 | tail -n 1)"
check_fails "take_call_slots refuses a spacing of zero" "22023" \
  q "select take_call_slots('pace-c', 1, 0, 1)"
check_output "revoking a token notifies cloudbrain_tokens with its id" \
  'Asynchronous notification "cloudbrain_tokens" with payload "[0-9]+" received' \
  psql -X -q -At -v ON_ERROR_STOP=1 "$DATABASE_URL" -c "listen cloudbrain_tokens" \
  -c "insert into tokens (description, salt, hash)
      values ('notify', decode(repeat('00', 32), 'hex'), decode(repeat('00', 32), 'hex'))" \
  -c "update tokens set revoked_at = now() where description = 'notify'" -c "select 1"
check_eq "a token revoked already notifies nothing more" "1" \
  "$(psql -X -q -At -v ON_ERROR_STOP=1 "$DATABASE_URL" -c "listen cloudbrain_tokens" \
    -c "update tokens set revoked_at = now() where description = 'notify'" -c "select 1" 2>&1)"

# ---------------------------------------------------------------------------------------------
echo "# reservations"
r1=00000000-0000-7000-8000-0000000000a1
check_eq "a reservation's slots are taken by instances and given back when they end" "1|0|2" \
  "$(q "insert into reservations (id, provider, instance_type, count, ends_at)
          values ('$r1', 'fake', 'standard', 2, now() + interval '1 hour')" \
    "insert into jobs (kind, reservation_id, provider, cloud_key)
          values ('reserve', '$r1', 'fake', 'reserve-$r1')" \
    "update reservations set in_use = 1, state = 'active' where id = '$r1'" \
    "insert into instances (id, provider, image, instance_type, reservation_id, state)
          values ('00000000-0000-7000-8000-0000000000b1', 'fake', 'img', 'standard', '$r1', 'running')" \
    "select in_use from reservations where id = '$r1'" \
    "update instances set state = 'terminated' where id = '00000000-0000-7000-8000-0000000000b1'" \
    "select in_use || '|' || (select count(*) from reservation_events where reservation_id = '$r1')
       from reservations where id = '$r1'" 2>&1 | tr '\n' '|' | sed 's/|$//')"
check_eq "a job names an instance or a reservation, not both" "jobs_subject_check" \
  "$(q "insert into jobs (kind, instance_id, reservation_id, provider, cloud_key)
          values ('reserve', '00000000-0000-7000-8000-0000000000b1', '$r1', 'fake', 'x')" 2>&1 |
     grep -o jobs_subject_check | head -1)"
idem_r() { # idem_r KEY INSTANCE-or-null RESERVATION-or-null
  q "insert into idempotency_keys (token_id, key, request_hash, instance_id, reservation_id,
                                   response_status, response_body)
     values ($tok, '$1', '\\x0102', $2, $3, 201, '{}')"
}
check "an idempotency key may name a reservation" idem_r "res-key-1" null "'$r1'"
check_fails "an idempotency key naming an instance and a reservation is rejected" \
  "23514.*idempotency_keys_one_resource" idem_r "res-key-2" "'$i1'" "'$r1'"
check_fails "an idempotency key naming nothing is rejected" \
  "23514.*idempotency_keys_one_resource" idem_r "res-key-3" null null
echo "# reservation sets"
s1=00000000-0000-7000-8000-0000000000c1
check "a set with two members, and a replay record naming it" \
  q "insert into reservation_sets (id, ends_at, created_by) values ('$s1', now() + interval '1 hour', $tok)" \
  "insert into reservations (id, provider, instance_type, count, ends_at, set_id, set_index)
   values ('00000000-0000-7000-8000-0000000000a2', 'east', 'standard', 1, now() + interval '1 hour', '$s1', 0),
          ('00000000-0000-7000-8000-0000000000a3', 'west', 'standard', 2, now() + interval '1 hour', '$s1', 1)" \
  "insert into idempotency_keys (token_id, key, request_hash, reservation_set_id, response_status,
                                 response_body) values ($tok, 'set-key-1', '\\x0102', '$s1', 201, '{}')"
check_eq "a new set is pending and on_partial is cancel_all" "pending|cancel_all" \
  "$(q "select state || '|' || on_partial from reservation_sets where id = '$s1'" 2>&1)"
check_fails "a member names its placement" "23514.*reservations_set_member_check" \
  q "insert into reservations (id, provider, instance_type, count, ends_at, set_id)
     values (gen_random_uuid(), 'east', 'standard', 1, now(), '$s1')"
check_fails "two members cannot be the same placement" "23505.*reservations_set_member_idx" \
  q "insert into reservations (id, provider, instance_type, count, ends_at, set_id, set_index)
     values (gen_random_uuid(), 'east', 'standard', 1, now(), '$s1', 1)"
check_fails "on_partial is cancel_all or keep" "23514.*reservation_sets_on_partial_check" \
  q "insert into reservation_sets (id, ends_at, on_partial) values (gen_random_uuid(), now(), 'some')"
check "a member is cancelled because another placement failed" \
  q "update reservations set state = 'cancelling', cancel_reason = 'set_failed'
     where id = '00000000-0000-7000-8000-0000000000a2'"
check_eq "set state changes are recorded with their reason" \
  "->pending pending>cancelling:placement_failed cancelling>failed:placement 2 failed" \
  "$(q "update reservation_sets set state = 'cancelling', cancel_reason = 'placement_failed' where id = '$s1'" \
       "update reservation_sets set state = 'failed', error_reason = 'placement 2 failed' where id = '$s1'" \
       "select string_agg(coalesce(from_state::text, '-') || '>' || to_state
                          || coalesce(':' || reason, ''), ' ' order by id)
          from reservation_set_events where set_id = '$s1'" 2>&1)"
check_fails "reservation_set_events is append-only" "55000.*reservation_set_events is append-only" \
  q "delete from reservation_set_events where set_id = '$s1'"
check "sqitch revert of reservation sets alone" \
  _cb_sqitch revert -y --target "$(_cb_sqitch_target "$DATABASE_URL")" --to reservation_idempotency
check_eq "the members stay as reservations, a set_failed cancel read as requested" "requested" \
  "$(q "select cancel_reason from reservations where id = '00000000-0000-7000-8000-0000000000a2'" 2>&1)"
check_eq "the set's replay record is gone" "0" \
  "$(q "select count(*) from idempotency_keys where key = 'set-key-1'" 2>&1)"
check "sqitch deploy of reservation sets again" cb_schema_deploy "$DATABASE_URL"

check "sqitch revert of reservations alone (with a reservation job in the queue)" \
  _cb_sqitch revert -y --target "$(_cb_sqitch_target "$DATABASE_URL")" --to orphan_events
check_eq "job_kind is back to its two labels" "{create_instance,delete_instance}" \
  "$(q "select enum_range(null::public.job_kind)::text" 2>&1)"
check "sqitch deploy of reservations again" cb_schema_deploy "$DATABASE_URL"

echo "# token scopes"
salt="decode(repeat('ab', 32), 'hex')"
check "sqitch revert of token scopes alone" \
  _cb_sqitch revert -y --target "$(_cb_sqitch_target "$DATABASE_URL")" --to cluster
check "a token made before scopes" \
  q "insert into tokens (id, description, salt, hash) values (901, 'old', $salt, $salt)"
check "sqitch deploy of token scopes again" cb_schema_deploy "$DATABASE_URL"
check_eq "a token that existed before the change sees everything; a new one its own" "all own" \
  "$(q "insert into tokens (id, description, salt, hash) values (902, 'new', $salt, $salt)" \
       "select string_agg(scope, ' ' order by id) from tokens where id in (901, 902)" 2>&1)"
check "sqitch revert of token scopes with an own token" \
  _cb_sqitch revert -y --target "$(_cb_sqitch_target "$DATABASE_URL")" --to cluster
check_eq "the own token is revoked rather than left seeing everything" "901:false 902:true" \
  "$(q "select string_agg(id || ':' || (revoked_at is not null), ' ' order by id) from tokens
        where id in (901, 902)" 2>&1)"
check "sqitch deploy of token scopes once more" cb_schema_deploy "$DATABASE_URL"

echo "# revert"
check "sqitch revert -y (with rows in every table)" cb_schema_revert "$DATABASE_URL"
check_eq "sqitch.changes has no cloudbrain change left" "0" \
  "$(q "select count(*) from sqitch.changes where project = 'cloudbrain'" 2>&1)"
check_eq "no table, index or sequence left in public" "" \
  "$(q "select string_agg(relname, ' ') from pg_class where relnamespace = 'public'::regnamespace" 2>&1)"
check_eq "no type left in public" "" \
  "$(q "select string_agg(typname, ' ') from pg_type where typnamespace = 'public'::regnamespace" 2>&1)"
check_eq "no function left in public" "" \
  "$(q "select string_agg(proname, ' ') from pg_proc where pronamespace = 'public'::regnamespace" 2>&1)"
check_eq "no trigger left" "" \
  "$(q "select string_agg(tgname, ' ') from pg_trigger where not tgisinternal" 2>&1)"

echo "# deploy again"
check "sqitch deploy --verify again" cb_schema_deploy "$DATABASE_URL"
check_eq "change jobs is deployed again" "1" \
  "$(q "select count(*) from sqitch.changes where project = 'cloudbrain' and change = 'jobs'" 2>&1)"
check_eq "the triggers work after the round trip" "1|2" \
  "$(q "insert into instances (id, provider, image, instance_type) values ('$i1', 'fake', 'img', 'standard')" \
    "update instances set state = 'starting' where id = '$i1'" \
    "select count(*) || '|' || (select version from instances) from instance_events
        where to_state = 'starting'" 2>&1)"

echo "# a batch: many instances and jobs in one INSERT each"
b1=00000000-0000-7000-8000-0000000000b1
b2=00000000-0000-7000-8000-0000000000b2
b3=00000000-0000-7000-8000-0000000000b3
check_eq "every instance of one INSERT gets its first event, with the reason set" \
  "3|3|batch" \
  "$(q "begin" "select set_config('cloudbrain.event_reason', 'batch', true)" \
    "insert into instances (id, provider, image, instance_type)
       select unnest(array['$b1', '$b2', '$b3']::uuid[]), 'fake', 'img', 'standard'" \
    "commit" \
    "select count(*) || '|' || count(*) filter (where from_state is null and to_state = 'creating')
            || '|' || string_agg(distinct reason, ',')
       from instance_events where instance_id in ('$b1', '$b2', '$b3')" 2>&1 | tail -n 1)"
notified=$(q "listen cloudbrain_jobs" \
  "insert into jobs (kind, instance_id, provider, cloud_key)
     values ('create_instance', '$b1', 'one', 'b1'), ('create_instance', '$b2', 'one', 'b2'),
            ('create_instance', '$b3', 'two', 'b3')" \
  "select 1" 2>&1)
check_eq "one INSERT of three jobs for two providers sends one NOTIFY per provider" \
  "one two" \
  "$(grep -o 'cloudbrain_jobs" with payload "[a-z]*"' <<<"$notified" | sed 's/.*payload "//; s/"$//' |
    sort | xargs)"

echo "# a claim reads as far as its limit, however long the queue"
q "begin" "set local session_replication_role = replica" \
  "insert into instances (id, provider, image, instance_type)
     select gen_random_uuid(), 'long', 'img', 'standard' from generate_series(1, 20000)" \
  "insert into jobs (kind, instance_id, provider, cloud_key, state, lease_expires_at)
     select 'create_instance', id, 'long', 'k-' || id,
            case when row_number() over () <= 50 then 'running' else 'queued' end::job_state,
            case when row_number() over () <= 50 then now() + interval '1 minute' end
     from instances where provider = 'long'" \
  "commit" "analyze jobs" >/dev/null
# The claim's two reads (actors/instance_store.cpp): the due jobs in order, and the running ones.
claim_plan=$(q "explain (costs off) select id from jobs
    where provider = 'long' and ((state = 'queued' and run_at <= now())
                                 or (state = 'running' and lease_expires_at < now()))
    order by run_at, id limit 10 for update skip locked" 2>&1)
check_eq "the due jobs are read in the claim index's order, with no sort" "jobs_claim_idx|0" \
  "$(grep -o 'Index Scan using [a-z_]*' <<<"$claim_plan" | sed 's/.* //')|$(grep -c Sort <<<"$claim_plan")"
running_plan=$(q "explain (costs off) select count(*) from jobs
    where provider = 'long' and state = 'running' and lease_expires_at >= now()" 2>&1)
check_eq "the running jobs are counted from their own index" "jobs_running_idx" \
  "$(grep -o 'Index Only Scan using [a-z_]*\|Index Scan using [a-z_]*' <<<"$running_plan" |
     sed 's/.* //')"

summary
((failed == 0))
