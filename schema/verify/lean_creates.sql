-- Verify cloudbrain:lean_creates on pg

BEGIN;

-- No foreign key of jobs, instance_events or idempotency_keys references instances.
SELECT 1/(count(*) = 0)::int FROM pg_constraint
 WHERE contype = 'f' AND confrelid = 'public.instances'::regclass
   AND conrelid IN ('public.jobs'::regclass, 'public.instance_events'::regclass,
                    'public.idempotency_keys'::regclass);
-- Instances are guarded against DELETE and TRUNCATE instead.
SELECT 1/(count(*) = 2)::int FROM pg_trigger
 WHERE tgrelid = 'public.instances'::regclass
   AND tgname IN ('instances_never_deleted', 'instances_never_truncated')
   AND tgfoid = 'public.instances_never_deleted()'::regprocedure AND tgenabled = 'O';

ROLLBACK;
