-- Revert cloudbrain:audit_trail from pg

BEGIN;

DROP TABLE public.audit_events;
DROP FUNCTION public.audit_events_append_only();

COMMIT;
