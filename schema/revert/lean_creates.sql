-- Revert cloudbrain:lean_creates from pg

BEGIN;

DROP TRIGGER instances_never_truncated ON public.instances;
DROP TRIGGER instances_never_deleted ON public.instances;
DROP FUNCTION public.instances_never_deleted();

ALTER TABLE public.idempotency_keys ADD CONSTRAINT idempotency_keys_instance_id_fkey
    FOREIGN KEY (instance_id) REFERENCES public.instances (id);
ALTER TABLE public.instance_events ADD CONSTRAINT instance_events_instance_id_fkey
    FOREIGN KEY (instance_id) REFERENCES public.instances (id);
ALTER TABLE public.jobs ADD CONSTRAINT jobs_instance_id_fkey
    FOREIGN KEY (instance_id) REFERENCES public.instances (id);

COMMIT;
