-- Verify cloudbrain:reservation_idempotency on pg

BEGIN;

SELECT reservation_id FROM public.idempotency_keys WHERE false;

SELECT 1 / count(*) FROM pg_constraint
 WHERE conname = 'idempotency_keys_one_resource'
   AND conrelid = 'public.idempotency_keys'::regclass;

ROLLBACK;
