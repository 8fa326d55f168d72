-- Revert cloudbrain:token_roles from pg

BEGIN;

-- A driver or admin token would become an API token: revoke those instead.
UPDATE public.tokens SET revoked_at = coalesce(revoked_at, now()) WHERE role <> 'client';
ALTER TABLE public.tokens DROP COLUMN role;

COMMIT;
