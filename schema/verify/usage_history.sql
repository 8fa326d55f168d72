-- Verify cloudbrain:usage_history on pg

BEGIN;

SELECT 'public.instance_events_ended_at_idx'::regclass;
SELECT 'public.reservation_events_ended_at_idx'::regclass;
SELECT 'public.reservations_live_state_idx'::regclass;

ROLLBACK;
