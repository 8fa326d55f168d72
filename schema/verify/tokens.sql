-- Verify cloudbrain:tokens on pg

BEGIN;

SELECT id, description, salt, hash, created_at, revoked_at
  FROM public.tokens
 WHERE false;

ROLLBACK;
