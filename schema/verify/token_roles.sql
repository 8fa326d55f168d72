-- Verify cloudbrain:token_roles on pg

BEGIN;

SELECT role FROM public.tokens WHERE false;

SELECT 1 / count(*) FROM pg_constraint
 WHERE conname = 'tokens_role_check'
   AND conrelid = 'public.tokens'::regclass;

ROLLBACK;
