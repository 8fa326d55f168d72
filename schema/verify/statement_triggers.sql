-- Verify cloudbrain:statement_triggers on pg

BEGIN;

-- Statement-level (tgtype bit 0 clear), on INSERT (bit 2), with a transition table.
SELECT 1/(count(*) = 2)::int FROM pg_trigger
 WHERE tgname IN ('instances_record_inserts', 'jobs_notify_insert')
   AND tgtype & 1 = 0 AND tgtype & 4 <> 0 AND tgnewtable IS NOT NULL;
-- The per-row event trigger is left for UPDATEs only.
SELECT 1/(count(*) = 1)::int FROM pg_trigger
 WHERE tgname = 'instances_record_event' AND tgtype & 1 = 1 AND tgtype & 4 = 0;

ROLLBACK;
