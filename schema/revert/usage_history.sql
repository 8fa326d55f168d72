-- Revert cloudbrain:usage_history from pg

BEGIN;

DROP INDEX public.reservations_live_state_idx;
DROP INDEX public.reservation_events_ended_at_idx;
DROP INDEX public.instance_events_ended_at_idx;

COMMIT;
