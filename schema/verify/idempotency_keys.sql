-- Verify cloudbrain:idempotency_keys on pg

BEGIN;

SELECT token_id, key, request_hash, instance_id, response_status, response_body, created_at
  FROM public.idempotency_keys
 WHERE false;

SELECT 'public.idempotency_keys_created_at_idx'::regclass;

ROLLBACK;
