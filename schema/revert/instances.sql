-- Revert cloudbrain:instances from pg

BEGIN;

DROP TRIGGER instances_bump_version ON public.instances;
DROP FUNCTION public.instances_bump_version();
DROP TABLE public.instances;
DROP TYPE public.instance_state;

COMMIT;
