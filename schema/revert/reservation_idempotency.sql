-- Revert cloudbrain:reservation_idempotency from pg

BEGIN;

DELETE FROM public.idempotency_keys WHERE reservation_id IS NOT NULL;
ALTER TABLE public.idempotency_keys
    DROP CONSTRAINT idempotency_keys_one_resource,
    DROP COLUMN reservation_id,
    ALTER COLUMN instance_id SET NOT NULL;

COMMIT;
