-- Revert cloudbrain:idempotency_keys from pg

BEGIN;

DROP TABLE public.idempotency_keys;

COMMIT;
