-- Deploy cloudbrain:lean_creates to pg
-- requires: cluster

BEGIN;

-- A create writes its instance, its job, its first event and, with an Idempotency-Key, its
-- replay record in one statement, the instance first; a delete writes its job from the row it
-- has just locked and updated; the events of state changes come from the instance's own
-- trigger; an orphan's event names an instance only if it exists. Instances are never deleted.
-- So every row of jobs, instance_events and idempotency_keys that names an instance names one
-- that exists, by construction, and their foreign keys checked nothing that could fail: a
-- lookup of the instance and a row lock for every row written, the largest cost of a create
-- after its own rows. What the keys also guarded, that no instance is deleted while something
-- names it, is guarded below for every instance.

ALTER TABLE public.jobs DROP CONSTRAINT jobs_instance_id_fkey;
ALTER TABLE public.instance_events DROP CONSTRAINT instance_events_instance_id_fkey;
ALTER TABLE public.idempotency_keys DROP CONSTRAINT idempotency_keys_instance_id_fkey;

CREATE FUNCTION public.instances_never_deleted() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'instances are never deleted'
        USING ERRCODE = '55000',  -- object_not_in_prerequisite_state
              HINT = 'an instance ends terminated; its jobs, events and keys name it';
END;
$$;

CREATE TRIGGER instances_never_deleted
    BEFORE DELETE ON public.instances
    FOR EACH STATEMENT EXECUTE FUNCTION public.instances_never_deleted();
CREATE TRIGGER instances_never_truncated
    BEFORE TRUNCATE ON public.instances
    FOR EACH STATEMENT EXECUTE FUNCTION public.instances_never_deleted();

COMMIT;
