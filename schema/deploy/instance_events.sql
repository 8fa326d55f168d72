-- Deploy cloudbrain:instance_events to pg
-- requires: instances

BEGIN;

-- Append-only history of instance states, written by a trigger on instances, never by hand.
CREATE TABLE public.instance_events (
    id          bigserial             PRIMARY KEY,
    instance_id uuid                  NOT NULL REFERENCES public.instances (id),
    from_state  public.instance_state,          -- NULL for the insert of the instance
    to_state    public.instance_state NOT NULL,
    reason      text,
    at          timestamptz           NOT NULL DEFAULT clock_timestamp()
);

CREATE INDEX instance_events_instance_id_id_idx
    ON public.instance_events (instance_id, id);

COMMENT ON TABLE public.instance_events IS
    'append-only; reason comes from error_reason (errored) or SET LOCAL cloudbrain.event_reason';

-- Records a state change. The reason is the instance's error_reason when it becomes 'errored',
-- else whatever the application put in the cloudbrain.event_reason setting for this
-- transaction (SET LOCAL cloudbrain.event_reason = '...' or
-- select set_config('cloudbrain.event_reason', $1, true)), NULL when unset or empty.
CREATE FUNCTION public.instances_record_event() RETURNS trigger
    LANGUAGE plpgsql AS $$
DECLARE
    old_state public.instance_state;
BEGIN
    IF TG_OP = 'UPDATE' THEN
        IF OLD.state IS NOT DISTINCT FROM NEW.state THEN
            RETURN NULL;
        END IF;
        old_state := OLD.state;
    END IF;
    INSERT INTO public.instance_events (instance_id, from_state, to_state, reason)
    VALUES (NEW.id, old_state, NEW.state,
            CASE WHEN NEW.state = 'errored' THEN NEW.error_reason
                 ELSE nullif(current_setting('cloudbrain.event_reason', true), '')
            END);
    RETURN NULL;
END;
$$;

CREATE TRIGGER instances_record_event
    AFTER INSERT OR UPDATE OF state ON public.instances
    FOR EACH ROW EXECUTE FUNCTION public.instances_record_event();

CREATE FUNCTION public.instance_events_append_only() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'instance_events is append-only'
        USING ERRCODE = '55000',  -- object_not_in_prerequisite_state
              HINT = format('%s is not allowed on instance_events', TG_OP);
END;
$$;

CREATE TRIGGER instance_events_no_update_delete
    BEFORE UPDATE OR DELETE ON public.instance_events
    FOR EACH ROW EXECUTE FUNCTION public.instance_events_append_only();

CREATE TRIGGER instance_events_no_truncate
    BEFORE TRUNCATE ON public.instance_events
    FOR EACH STATEMENT EXECUTE FUNCTION public.instance_events_append_only();

COMMIT;
