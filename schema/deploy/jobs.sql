-- Deploy cloudbrain:jobs to pg
-- requires: instances

BEGIN;

CREATE TYPE public.job_kind AS ENUM ('create_instance', 'delete_instance');
CREATE TYPE public.job_state AS ENUM ('queued', 'running', 'succeeded', 'failed', 'cancelled');

-- The durable queue of cloud calls. A worker claims a due job of its provider with
-- SELECT ... WHERE provider = $1 AND state IN ('queued','running') AND run_at <= now()
--   (running jobs only when lease_expires_at < now()) ... FOR UPDATE SKIP LOCKED,
-- and is woken by NOTIFY cloudbrain_jobs (payload: the provider name).
CREATE TABLE public.jobs (
    id               bigserial        PRIMARY KEY,
    kind             public.job_kind  NOT NULL,
    instance_id      uuid             NOT NULL REFERENCES public.instances (id),
    provider         text             NOT NULL,
    state            public.job_state NOT NULL DEFAULT 'queued',
    attempts         int              NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    max_attempts     int              NOT NULL DEFAULT 10 CHECK (max_attempts > 0),
    run_at           timestamptz      NOT NULL DEFAULT now(),
    lease_owner      text,
    lease_expires_at timestamptz,
    intent           jsonb,
    cloud_key        text             NOT NULL,
    last_error       text,
    created_at       timestamptz      NOT NULL DEFAULT now(),
    updated_at       timestamptz      NOT NULL DEFAULT now(),
    finished_at      timestamptz
);

COMMENT ON COLUMN public.jobs.cloud_key IS
    'idempotency key/name sent to the cloud, so a retried call cannot create a second VM';
COMMENT ON COLUMN public.jobs.intent IS 'what the worker was about to do at the cloud (write-ahead)';

-- Claiming: due unfinished jobs of one provider.
CREATE INDEX jobs_claim_idx
    ON public.jobs (provider, run_at)
    WHERE state IN ('queued', 'running');
CREATE INDEX jobs_instance_id_idx
    ON public.jobs (instance_id);
-- At most one unfinished job of each kind per instance.
CREATE UNIQUE INDEX jobs_one_unfinished_per_kind_idx
    ON public.jobs (instance_id, kind)
    WHERE state IN ('queued', 'running');

CREATE FUNCTION public.jobs_touch() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END;
$$;

CREATE TRIGGER jobs_touch
    BEFORE UPDATE ON public.jobs
    FOR EACH ROW EXECUTE FUNCTION public.jobs_touch();

-- Wakes the workers of the job's provider. NOTIFY is delivered at commit, and identical
-- payloads within one transaction are folded into one.
CREATE FUNCTION public.jobs_notify() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('cloudbrain_jobs', NEW.provider);
    RETURN NULL;
END;
$$;

CREATE TRIGGER jobs_notify_insert
    AFTER INSERT ON public.jobs
    FOR EACH ROW EXECUTE FUNCTION public.jobs_notify();

-- A job put back in the queue (retry with a new run_at, lease given back, ...).
CREATE TRIGGER jobs_notify_requeue
    AFTER UPDATE OF state, run_at ON public.jobs
    FOR EACH ROW
    WHEN (NEW.state = 'queued'
          AND (OLD.state IS DISTINCT FROM NEW.state OR OLD.run_at IS DISTINCT FROM NEW.run_at))
    EXECUTE FUNCTION public.jobs_notify();

COMMIT;
