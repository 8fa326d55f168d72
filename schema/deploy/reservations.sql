-- Deploy cloudbrain:reservations to pg
-- requires: jobs
-- requires: orphan_events

BEGIN;

CREATE TYPE public.reservation_state AS ENUM (
    'pending',     -- accepted; zones are being tried
    'active',      -- held in `zone`; instances may launch into it
    'cancelling',  -- cancel asked for (by a user, or by the janitor); being released
    'cancelled',
    'expired',     -- released by the janitor at ends_at
    'failed'       -- no zone had room; see error_reason
);

-- Capacity held at a cloud: `count` VMs of one instance type in one zone, until `ends_at`.
CREATE TABLE public.reservations (
    id            uuid                     PRIMARY KEY,
    provider      text                     NOT NULL,
    instance_type text                     NOT NULL CHECK (instance_type IN ('standard', 'premium')),
    machine_type  text,
    count         int                      NOT NULL CHECK (count > 0),
    zones         text[]                   NOT NULL DEFAULT '{}',
    zone          text,
    state         public.reservation_state NOT NULL DEFAULT 'pending',
    upstream_id   text,
    in_use        int                      NOT NULL DEFAULT 0,
    ends_at       timestamptz              NOT NULL,
    tags          jsonb                    NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(tags) = 'object'),
    error_reason  text,
    cancel_reason text CHECK (cancel_reason IN ('requested', 'expired', 'unused')),
    created_by    bigint                   REFERENCES public.tokens (id),
    activated_at  timestamptz,
    last_used_at  timestamptz,
    created_at    timestamptz              NOT NULL DEFAULT now(),
    updated_at    timestamptz              NOT NULL DEFAULT now(),
    version       bigint                   NOT NULL DEFAULT 1,
    CONSTRAINT reservations_in_use_check CHECK (in_use >= 0 AND in_use <= count)
);

COMMENT ON COLUMN public.reservations.zones IS 'the zones to try, in order; empty: the provider''s';
COMMENT ON COLUMN public.reservations.zone IS 'where the capacity is held, once it is';
COMMENT ON COLUMN public.reservations.in_use IS
    'instances launched into it that are not yet terminated or errored (kept by triggers and the create statement)';
COMMENT ON COLUMN public.reservations.last_used_at IS 'when an instance last entered or left it';

CREATE INDEX reservations_created_at_id_idx
    ON public.reservations (created_at DESC, id DESC);
CREATE INDEX reservations_provider_state_idx
    ON public.reservations (provider, state);
CREATE INDEX reservations_tags_idx
    ON public.reservations USING gin (tags jsonb_path_ops);
-- The janitor's questions: what is past its end, what has stood idle.
CREATE INDEX reservations_live_ends_at_idx
    ON public.reservations (ends_at)
    WHERE state IN ('pending', 'active');

CREATE FUNCTION public.reservations_bump_version() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    NEW.version := OLD.version + 1;
    IF NEW.state = 'active' AND OLD.state IS DISTINCT FROM 'active' AND NEW.activated_at IS NULL THEN
        NEW.activated_at := now();
    END IF;
    RETURN NEW;
END;
$$;

CREATE TRIGGER reservations_bump_version
    BEFORE UPDATE ON public.reservations
    FOR EACH ROW EXECUTE FUNCTION public.reservations_bump_version();

-- Append-only history: state changes (by trigger) and cancellations of reservations found at a
-- cloud without a live row (orphans, by the janitor; they may have no row at all).
CREATE TABLE public.reservation_events (
    id             bigserial   PRIMARY KEY,
    reservation_id uuid        REFERENCES public.reservations (id),
    kind           text        NOT NULL DEFAULT 'state'
                               CHECK (kind IN ('state', 'orphan_cancelled')),
    from_state     public.reservation_state,
    to_state       public.reservation_state,
    reason         text,
    provider       text,
    zone           text,
    name           text,
    at             timestamptz NOT NULL DEFAULT clock_timestamp(),
    CONSTRAINT reservation_events_subject_check
        CHECK (reservation_id IS NOT NULL OR (provider IS NOT NULL AND name IS NOT NULL))
);

CREATE INDEX reservation_events_reservation_id_id_idx
    ON public.reservation_events (reservation_id, id);
CREATE INDEX reservation_events_orphans_idx
    ON public.reservation_events (provider, at)
    WHERE kind = 'orphan_cancelled';

CREATE FUNCTION public.reservations_record_event() RETURNS trigger
    LANGUAGE plpgsql AS $$
DECLARE
    old_state public.reservation_state;
BEGIN
    IF TG_OP = 'UPDATE' THEN
        IF OLD.state IS NOT DISTINCT FROM NEW.state THEN
            RETURN NULL;
        END IF;
        old_state := OLD.state;
    END IF;
    INSERT INTO public.reservation_events (reservation_id, from_state, to_state, reason, provider, zone)
    VALUES (NEW.id, old_state, NEW.state,
            CASE WHEN NEW.state = 'failed' THEN NEW.error_reason
                 WHEN NEW.state IN ('cancelling', 'cancelled', 'expired') THEN NEW.cancel_reason
            END,
            NEW.provider, NEW.zone);
    RETURN NULL;
END;
$$;

CREATE TRIGGER reservations_record_event
    AFTER INSERT OR UPDATE OF state ON public.reservations
    FOR EACH ROW EXECUTE FUNCTION public.reservations_record_event();

CREATE FUNCTION public.reservation_events_append_only() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'reservation_events is append-only'
        USING ERRCODE = '55000',
              HINT = format('%s is not allowed on reservation_events', TG_OP);
END;
$$;

CREATE TRIGGER reservation_events_no_update_delete
    BEFORE UPDATE OR DELETE ON public.reservation_events
    FOR EACH ROW EXECUTE FUNCTION public.reservation_events_append_only();

-- An instance launched into a reservation names it; its slot is taken by the create statement
-- (conditionally, so a full reservation refuses) and given back here when the instance ends.
ALTER TABLE public.instances
    ADD CONSTRAINT instances_reservation_id_fkey
        FOREIGN KEY (reservation_id) REFERENCES public.reservations (id);
CREATE INDEX instances_reservation_id_idx
    ON public.instances (reservation_id)
    WHERE reservation_id IS NOT NULL;

CREATE FUNCTION public.instances_release_reservation_slot() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
    UPDATE public.reservations
       SET in_use = greatest(in_use - 1, 0), last_used_at = now()
     WHERE id = NEW.reservation_id;
    RETURN NULL;
END;
$$;

CREATE TRIGGER instances_release_reservation_slot
    AFTER UPDATE OF state ON public.instances
    FOR EACH ROW
    WHEN (NEW.reservation_id IS NOT NULL
          AND OLD.state IN ('creating', 'starting', 'running', 'terminating')
          AND NEW.state IN ('terminated', 'errored'))
    EXECUTE FUNCTION public.instances_release_reservation_slot();

-- Jobs now act on an instance or on a reservation.
ALTER TYPE public.job_kind ADD VALUE 'reserve';
ALTER TYPE public.job_kind ADD VALUE 'release_reservation';
ALTER TABLE public.jobs
    ALTER COLUMN instance_id DROP NOT NULL,
    ADD COLUMN reservation_id uuid REFERENCES public.reservations (id),
    ADD CONSTRAINT jobs_subject_check CHECK (num_nonnulls(instance_id, reservation_id) = 1);
CREATE INDEX jobs_reservation_id_idx
    ON public.jobs (reservation_id)
    WHERE reservation_id IS NOT NULL;
CREATE UNIQUE INDEX jobs_one_unfinished_per_reservation_kind_idx
    ON public.jobs (reservation_id, kind)
    WHERE state IN ('queued', 'running') AND reservation_id IS NOT NULL;

COMMIT;
