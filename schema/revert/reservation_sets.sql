-- Revert cloudbrain:reservation_sets from pg

BEGIN;

DELETE FROM public.idempotency_keys WHERE reservation_set_id IS NOT NULL;
ALTER TABLE public.idempotency_keys
    DROP CONSTRAINT idempotency_keys_one_resource,
    DROP COLUMN reservation_set_id,
    ADD CONSTRAINT idempotency_keys_one_resource
        CHECK (num_nonnulls(instance_id, reservation_id) = 1);

-- Members stay as ordinary reservations; a cancel because of the set reads as a requested one.
UPDATE public.reservations SET cancel_reason = 'requested' WHERE cancel_reason = 'set_failed';
ALTER TABLE public.reservations
    DROP CONSTRAINT reservations_cancel_reason_check,
    ADD CONSTRAINT reservations_cancel_reason_check
        CHECK (cancel_reason IN ('requested', 'expired', 'unused'));
DROP INDEX public.reservations_set_member_idx;
ALTER TABLE public.reservations
    DROP CONSTRAINT reservations_set_member_check,
    DROP COLUMN set_index,
    DROP COLUMN set_id;

DROP TABLE public.reservation_set_events;
DROP FUNCTION public.reservation_set_events_append_only();
DROP TABLE public.reservation_sets;
DROP FUNCTION public.reservation_sets_record_event();
DROP FUNCTION public.reservation_sets_bump_version();
DROP TYPE public.reservation_set_state;

COMMIT;
