-- Verify cloudbrain:claim_indexes on pg

BEGIN;

-- The claim's index is in the claim's order, and the running jobs have one of their own.
SELECT 1/(count(*) = 2)::int FROM pg_indexes
 WHERE schemaname = 'public' AND tablename = 'jobs'
   AND ((indexname = 'jobs_claim_idx' AND indexdef LIKE '%(provider, run_at, id)%'
         AND indexdef LIKE '%WHERE (state = ANY%')
     OR (indexname = 'jobs_running_idx' AND indexdef LIKE '%(provider, lease_expires_at)%'
         AND indexdef LIKE '%WHERE (state = ''running''%'));

ROLLBACK;
