-- Verify cloudbrain:jobs on pg

BEGIN;

SELECT 'create_instance'::public.job_kind, 'delete_instance'::public.job_kind;
SELECT 'queued'::public.job_state, 'running'::public.job_state, 'succeeded'::public.job_state,
       'failed'::public.job_state, 'cancelled'::public.job_state;

SELECT id, kind, instance_id, provider, state, attempts, max_attempts, run_at, lease_owner,
       lease_expires_at, intent, cloud_key, last_error, created_at, updated_at, finished_at
  FROM public.jobs
 WHERE false;

SELECT 'public.jobs_claim_idx'::regclass,
       'public.jobs_instance_id_idx'::regclass,
       'public.jobs_one_unfinished_per_kind_idx'::regclass;
SELECT 1/count(*) FROM pg_index
 WHERE indexrelid = 'public.jobs_one_unfinished_per_kind_idx'::regclass AND indisunique;

SELECT 1/count(*) FROM pg_proc
 WHERE proname = 'jobs_notify' AND pronamespace = 'public'::regnamespace;
SELECT 1/count(*) FROM pg_proc
 WHERE proname = 'jobs_touch' AND pronamespace = 'public'::regnamespace;
SELECT 1/(count(*) = 3)::int FROM pg_trigger
 WHERE tgrelid = 'public.jobs'::regclass
   AND tgname IN ('jobs_notify_insert', 'jobs_notify_requeue', 'jobs_touch');

ROLLBACK;
