-- Verify cloudbrain:orphan_events on pg

BEGIN;

SELECT id, instance_id, from_state, to_state, reason, at, kind, provider, vm_name
  FROM public.instance_events
 WHERE false;

SELECT 'public.instance_events_orphans_idx'::regclass;
SELECT 1/(CASE WHEN count(*) = 2 THEN 1 ELSE 0 END) FROM pg_constraint
 WHERE conname IN ('instance_events_subject_check', 'instance_events_kind_check');

ROLLBACK;
