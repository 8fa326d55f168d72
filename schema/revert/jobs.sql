-- Revert cloudbrain:jobs from pg

BEGIN;

DROP TRIGGER jobs_notify_requeue ON public.jobs;
DROP TRIGGER jobs_notify_insert ON public.jobs;
DROP TRIGGER jobs_touch ON public.jobs;
DROP TABLE public.jobs;
DROP FUNCTION public.jobs_notify();
DROP FUNCTION public.jobs_touch();
DROP TYPE public.job_state;
DROP TYPE public.job_kind;

COMMIT;
