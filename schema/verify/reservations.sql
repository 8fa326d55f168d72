-- Verify cloudbrain:reservations on pg

BEGIN;

SELECT id, provider, instance_type, machine_type, count, zones, zone, state, upstream_id, in_use,
       ends_at, tags, error_reason, cancel_reason, created_by, activated_at, last_used_at,
       created_at, updated_at, version
  FROM public.reservations
 WHERE false;

SELECT id, reservation_id, kind, from_state, to_state, reason, provider, zone, name, at
  FROM public.reservation_events
 WHERE false;

SELECT reservation_id FROM public.jobs WHERE false;
SELECT 1/(CASE WHEN count(*) = 2 THEN 1 ELSE 0 END) FROM pg_enum e
  JOIN pg_type t ON t.oid = e.enumtypid
 WHERE t.typname = 'job_kind' AND e.enumlabel IN ('reserve', 'release_reservation');
SELECT 'public.jobs_one_unfinished_per_reservation_kind_idx'::regclass;
SELECT 'public.instances_reservation_id_idx'::regclass;
SELECT 1/(CASE WHEN count(*) = 1 THEN 1 ELSE 0 END) FROM pg_trigger
 WHERE tgname = 'instances_release_reservation_slot';

ROLLBACK;
