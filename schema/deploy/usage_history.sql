-- Deploy cloudbrain:usage_history to pg
-- requires: reservation_sets

BEGIN;

-- GET /usage reads instance and reservation history over [from, to). What it must consider is
-- what is live now, plus what ended at or after `from`: these find the second kind without
-- reading the whole history.
CREATE INDEX instance_events_ended_at_idx
    ON public.instance_events (at)
    WHERE kind = 'state' AND to_state IN ('terminated', 'errored');
CREATE INDEX reservation_events_ended_at_idx
    ON public.reservation_events (at)
    WHERE kind = 'state' AND to_state IN ('cancelled', 'expired', 'failed');
-- What is live now, without a scan of every reservation ever made.
CREATE INDEX reservations_live_state_idx
    ON public.reservations (state)
    WHERE state IN ('pending', 'active', 'cancelling');

COMMIT;
