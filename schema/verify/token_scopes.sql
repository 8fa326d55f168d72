-- Verify cloudbrain:token_scopes on pg

BEGIN;

SELECT scope, last_used_at FROM public.tokens WHERE false;

SELECT 1 / count(*) FROM pg_constraint
 WHERE conname = 'tokens_scope_check'
   AND conrelid = 'public.tokens'::regclass;

SELECT 1 / (count(*) = 3)::int FROM pg_indexes
 WHERE schemaname = 'public'
   AND indexname IN ('instances_created_by_created_at_id_idx',
                     'reservations_created_by_created_at_id_idx',
                     'reservation_sets_created_by_created_at_id_idx');

ROLLBACK;
