-- Revert cloudbrain:tokens from pg

BEGIN;

DROP TABLE public.tokens;

COMMIT;
