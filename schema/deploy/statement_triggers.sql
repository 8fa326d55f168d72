-- Deploy cloudbrain:statement_triggers to pg
-- requires: orphan_events
-- requires: jobs

BEGIN;

-- Creates arrive in batches: one INSERT of many instances and one of their jobs. What the
-- per-row triggers did for each inserted row is done here once per statement, over its new
-- rows: the first event of every instance in one INSERT, and one NOTIFY per provider. State
-- changes (UPDATEs) keep their per-row trigger.

DROP TRIGGER instances_record_event ON public.instances;
CREATE TRIGGER instances_record_event
    AFTER UPDATE OF state ON public.instances
    FOR EACH ROW EXECUTE FUNCTION public.instances_record_event();

-- The event of each new instance; the reason as instances_record_event gives it.
CREATE FUNCTION public.instances_record_inserts() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.instance_events (instance_id, from_state, to_state, reason)
    SELECT n.id, NULL, n.state,
           CASE WHEN n.state = 'errored' THEN n.error_reason
                ELSE nullif(current_setting('cloudbrain.event_reason', true), '')
           END
    FROM new_instances n;
    RETURN NULL;
END;
$$;

CREATE TRIGGER instances_record_inserts
    AFTER INSERT ON public.instances
    REFERENCING NEW TABLE AS new_instances
    FOR EACH STATEMENT EXECUTE FUNCTION public.instances_record_inserts();

CREATE FUNCTION public.jobs_notify_inserts() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('cloudbrain_jobs', p.provider)
    FROM (SELECT DISTINCT provider FROM new_jobs) p;
    RETURN NULL;
END;
$$;

DROP TRIGGER jobs_notify_insert ON public.jobs;
CREATE TRIGGER jobs_notify_insert
    AFTER INSERT ON public.jobs
    REFERENCING NEW TABLE AS new_jobs
    FOR EACH STATEMENT EXECUTE FUNCTION public.jobs_notify_inserts();

COMMIT;
