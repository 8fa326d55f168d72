-- Verify cloudbrain:cluster on pg

BEGIN;

SELECT name, incarnation, version, address, backend_pid, started_at, heartbeat_at
  FROM public.nodes WHERE false;
SELECT id, provider, role, leader, leader_since FROM public.cluster_roles WHERE false;
SELECT provider, next_call_at FROM public.provider_pacing WHERE false;
SELECT provider FROM public.provider_claims WHERE false;
SELECT 'public.take_call_slots(text, int, double precision, double precision)'::regprocedure;
SELECT 'public.pause_calls(text, double precision)'::regprocedure;
SELECT 1 / count(*) FROM pg_trigger
 WHERE tgrelid = 'public.tokens'::regclass AND tgname = 'tokens_notify_revoked';
SELECT 1 / count(*) FROM pg_trigger
 WHERE tgrelid = 'public.tokens'::regclass AND tgname = 'tokens_notify_deleted';

ROLLBACK;
