-- Verify cloudbrain:reservation_sets on pg

BEGIN;

SELECT id, state, on_partial, ends_at, tags, error_reason, cancel_reason, created_by,
       created_at, updated_at, version
  FROM public.reservation_sets
 WHERE false;

SELECT id, set_id, from_state, to_state, reason, at
  FROM public.reservation_set_events
 WHERE false;

SELECT set_id, set_index FROM public.reservations WHERE false;
SELECT reservation_set_id FROM public.idempotency_keys WHERE false;

SELECT 'public.reservation_sets_unsettled_idx'::regclass;
SELECT 'public.reservations_set_member_idx'::regclass;
SELECT 1/(CASE WHEN count(*) = 7 THEN 1 ELSE 0 END) FROM pg_enum e
  JOIN pg_type t ON t.oid = e.enumtypid
 WHERE t.typname = 'reservation_set_state';
SELECT 1/(count(*) = 3)::int FROM pg_trigger
 WHERE tgname IN ('reservation_sets_bump_version', 'reservation_sets_record_event',
                  'reservation_set_events_no_update_delete');
SELECT 1/count(*) FROM pg_constraint
 WHERE conname = 'reservations_cancel_reason_check'
   AND pg_get_constraintdef(oid) LIKE '%set_failed%';
SELECT 1/count(*) FROM pg_constraint
 WHERE conname = 'idempotency_keys_one_resource'
   AND pg_get_constraintdef(oid) LIKE '%reservation_set_id%';

ROLLBACK;
