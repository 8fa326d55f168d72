-- Revert cloudbrain:cluster from pg

BEGIN;

DROP TRIGGER tokens_notify_deleted ON public.tokens;
DROP TRIGGER tokens_notify_revoked ON public.tokens;
DROP FUNCTION public.tokens_notify_revoked();
DROP FUNCTION public.pause_calls(text, double precision);
DROP FUNCTION public.take_call_slots(text, int, double precision, double precision);
DROP TABLE public.provider_claims;
DROP TABLE public.provider_pacing;
DROP TABLE public.cluster_roles;
DROP TABLE public.nodes;

COMMIT;
