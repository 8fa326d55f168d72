-- Deploy cloudbrain:claim_indexes to pg
-- requires: lean_creates

BEGIN;

-- A claim reads a provider's due jobs in (run_at, id) order and stops at its limit: with id in
-- the index, that is the index's own order and the scan stops with the limit. Without it the
-- whole queue was read and sorted (a burst of creates queued behind a cloud's rate limit made
-- every claim as slow as the queue was long: 10 ms at 30,000 queued).
DROP INDEX public.jobs_claim_idx;
CREATE INDEX jobs_claim_idx
    ON public.jobs (provider, run_at, id)
    WHERE state IN ('queued', 'running');

-- The jobs a provider runs under a live lease, which a claim counts against max-in-flight: at
-- most that many rows, however long the queue behind them.
CREATE INDEX jobs_running_idx
    ON public.jobs (provider, lease_expires_at)
    WHERE state = 'running';

COMMIT;
