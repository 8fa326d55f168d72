-- Verify cloudbrain:instance_events on pg

BEGIN;

SELECT id, instance_id, from_state, to_state, reason, at
  FROM public.instance_events
 WHERE false;

SELECT 'public.instance_events_instance_id_id_idx'::regclass;

SELECT 1/count(*) FROM pg_proc
 WHERE proname = 'instances_record_event' AND pronamespace = 'public'::regnamespace;
SELECT 1/count(*) FROM pg_proc
 WHERE proname = 'instance_events_append_only' AND pronamespace = 'public'::regnamespace;

SELECT 1/count(*) FROM pg_trigger
 WHERE tgname = 'instances_record_event' AND tgrelid = 'public.instances'::regclass;
SELECT 1/(count(*) = 2)::int FROM pg_trigger
 WHERE tgrelid = 'public.instance_events'::regclass
   AND tgname IN ('instance_events_no_update_delete', 'instance_events_no_truncate');

ROLLBACK;
