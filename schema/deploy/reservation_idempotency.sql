-- Deploy cloudbrain:reservation_idempotency to pg
-- requires: idempotency_keys
-- requires: reservations

BEGIN;

-- Idempotency-Key on POST /reservations too: a replay record names the instance or the
-- reservation its first response created, never both.
ALTER TABLE public.idempotency_keys
    ALTER COLUMN instance_id DROP NOT NULL,
    ADD COLUMN reservation_id uuid REFERENCES public.reservations (id),
    ADD CONSTRAINT idempotency_keys_one_resource
        CHECK (num_nonnulls(instance_id, reservation_id) = 1);

COMMIT;
