-- Deploy cloudbrain:reservation_sets to pg
-- requires: reservation_idempotency

BEGIN;

CREATE TYPE public.reservation_set_state AS ENUM (
    'pending',     -- its placements are being reserved
    'active',      -- every placement is held
    'partial',     -- some placements are held; others failed or have ended
    'cancelling',  -- its members are being released: a cancel, or a placement failed
    'cancelled',
    'expired',     -- every member that was held ended at its ends_at
    'failed'       -- placements failed and nothing is held any more; see error_reason
);

-- Reservations asked for together, one member reservation per placement, on any providers.
-- The set's state follows its members; it is moved by the service's set reconciliation,
-- always conditionally on the state it was read in.
CREATE TABLE public.reservation_sets (
    id            uuid                         PRIMARY KEY,
    state         public.reservation_set_state NOT NULL DEFAULT 'pending',
    on_partial    text                         NOT NULL DEFAULT 'cancel_all'
                                               CHECK (on_partial IN ('cancel_all', 'keep')),
    ends_at       timestamptz                  NOT NULL,
    tags          jsonb                        NOT NULL DEFAULT '{}'
                                               CHECK (jsonb_typeof(tags) = 'object'),
    error_reason  text,
    cancel_reason text CHECK (cancel_reason IN ('requested', 'placement_failed', 'members_ended')),
    created_by    bigint                       REFERENCES public.tokens (id),
    created_at    timestamptz                  NOT NULL DEFAULT now(),
    updated_at    timestamptz                  NOT NULL DEFAULT now(),
    version       bigint                       NOT NULL DEFAULT 1
);

COMMENT ON COLUMN public.reservation_sets.on_partial IS
    'cancel_all: a placement that fails cancels every other; keep: the others stay (partial)';
COMMENT ON COLUMN public.reservation_sets.cancel_reason IS
    'requested: DELETE; placement_failed: a placement failed; members_ended: its members ended one by one';

CREATE INDEX reservation_sets_created_at_id_idx
    ON public.reservation_sets (created_at DESC, id DESC);
CREATE INDEX reservation_sets_tags_idx
    ON public.reservation_sets USING gin (tags jsonb_path_ops);
-- The reconciliation's question: which sets may still move.
CREATE INDEX reservation_sets_unsettled_idx
    ON public.reservation_sets (id)
    WHERE state IN ('pending', 'active', 'partial', 'cancelling');

CREATE FUNCTION public.reservation_sets_bump_version() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    NEW.version := OLD.version + 1;
    RETURN NEW;
END;
$$;

CREATE TRIGGER reservation_sets_bump_version
    BEFORE UPDATE ON public.reservation_sets
    FOR EACH ROW EXECUTE FUNCTION public.reservation_sets_bump_version();

-- Append-only history of set states, written by a trigger.
CREATE TABLE public.reservation_set_events (
    id         bigserial                    PRIMARY KEY,
    set_id     uuid                         NOT NULL REFERENCES public.reservation_sets (id),
    from_state public.reservation_set_state,
    to_state   public.reservation_set_state NOT NULL,
    reason     text,
    at         timestamptz                  NOT NULL DEFAULT clock_timestamp()
);

CREATE INDEX reservation_set_events_set_id_id_idx
    ON public.reservation_set_events (set_id, id);

CREATE FUNCTION public.reservation_sets_record_event() RETURNS trigger
    LANGUAGE plpgsql AS $$
DECLARE
    old_state public.reservation_set_state;
BEGIN
    IF TG_OP = 'UPDATE' THEN
        IF OLD.state IS NOT DISTINCT FROM NEW.state THEN
            RETURN NULL;
        END IF;
        old_state := OLD.state;
    END IF;
    INSERT INTO public.reservation_set_events (set_id, from_state, to_state, reason)
    VALUES (NEW.id, old_state, NEW.state,
            CASE WHEN NEW.state IN ('failed', 'partial') THEN NEW.error_reason
                 WHEN NEW.state IN ('cancelling', 'cancelled') THEN NEW.cancel_reason
            END);
    RETURN NULL;
END;
$$;

CREATE TRIGGER reservation_sets_record_event
    AFTER INSERT OR UPDATE OF state ON public.reservation_sets
    FOR EACH ROW EXECUTE FUNCTION public.reservation_sets_record_event();

CREATE FUNCTION public.reservation_set_events_append_only() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'reservation_set_events is append-only'
        USING ERRCODE = '55000',
              HINT = format('%s is not allowed on reservation_set_events', TG_OP);
END;
$$;

CREATE TRIGGER reservation_set_events_no_update_delete
    BEFORE UPDATE OR DELETE ON public.reservation_set_events
    FOR EACH ROW EXECUTE FUNCTION public.reservation_set_events_append_only();

-- A member is an ordinary reservation that names its set and its placement's index.
ALTER TABLE public.reservations
    ADD COLUMN set_id uuid REFERENCES public.reservation_sets (id),
    ADD COLUMN set_index int,
    ADD CONSTRAINT reservations_set_member_check
        CHECK ((set_id IS NULL) = (set_index IS NULL) AND (set_index IS NULL OR set_index >= 0));
CREATE UNIQUE INDEX reservations_set_member_idx
    ON public.reservations (set_id, set_index)
    WHERE set_id IS NOT NULL;
COMMENT ON COLUMN public.reservations.set_index IS 'the placement it is, from 0, in its set';

-- set_failed: cancelled because another placement of its set failed.
ALTER TABLE public.reservations
    DROP CONSTRAINT reservations_cancel_reason_check,
    ADD CONSTRAINT reservations_cancel_reason_check
        CHECK (cancel_reason IN ('requested', 'expired', 'unused', 'set_failed'));

-- Idempotency-Key on POST /reservation-sets too.
ALTER TABLE public.idempotency_keys
    ADD COLUMN reservation_set_id uuid REFERENCES public.reservation_sets (id),
    DROP CONSTRAINT idempotency_keys_one_resource,
    ADD CONSTRAINT idempotency_keys_one_resource
        CHECK (num_nonnulls(instance_id, reservation_id, reservation_set_id) = 1);

COMMIT;
