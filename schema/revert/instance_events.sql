-- Revert cloudbrain:instance_events from pg

BEGIN;

DROP TRIGGER instances_record_event ON public.instances;
DROP FUNCTION public.instances_record_event();
DROP TRIGGER instance_events_no_truncate ON public.instance_events;
DROP TRIGGER instance_events_no_update_delete ON public.instance_events;
DROP TABLE public.instance_events;
DROP FUNCTION public.instance_events_append_only();

COMMIT;
