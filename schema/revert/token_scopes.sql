-- Revert cloudbrain:token_scopes from pg

BEGIN;

DROP INDEX public.reservation_sets_created_by_created_at_id_idx;
DROP INDEX public.reservations_created_by_created_at_id_idx;
DROP INDEX public.instances_created_by_created_at_id_idx;
-- Without scopes every client token sees everything: an `own` token would see more than it was
-- given, so those are revoked instead.
UPDATE public.tokens SET revoked_at = coalesce(revoked_at, now())
 WHERE scope = 'own' AND role = 'client';
ALTER TABLE public.tokens DROP COLUMN last_used_at;
ALTER TABLE public.tokens DROP COLUMN scope;

COMMIT;
