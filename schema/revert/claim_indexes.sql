-- Revert cloudbrain:claim_indexes from pg

BEGIN;

DROP INDEX public.jobs_running_idx;
DROP INDEX public.jobs_claim_idx;
CREATE INDEX jobs_claim_idx
    ON public.jobs (provider, run_at)
    WHERE state IN ('queued', 'running');

COMMIT;
