-- Verify cloudbrain:audit_trail on pg

BEGIN;

SELECT id, at, token_id, request_id, address, action, method, target, status, outcome
  FROM public.audit_events WHERE false;
SELECT 1/(count(*) = 2)::int FROM pg_trigger
 WHERE tgname IN ('audit_events_append_only', 'audit_events_no_truncate');

ROLLBACK;
