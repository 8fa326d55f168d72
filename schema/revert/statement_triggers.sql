-- Revert cloudbrain:statement_triggers from pg

BEGIN;

DROP TRIGGER jobs_notify_insert ON public.jobs;
CREATE TRIGGER jobs_notify_insert
    AFTER INSERT ON public.jobs
    FOR EACH ROW EXECUTE FUNCTION public.jobs_notify();
DROP FUNCTION public.jobs_notify_inserts();

DROP TRIGGER instances_record_inserts ON public.instances;
DROP FUNCTION public.instances_record_inserts();
DROP TRIGGER instances_record_event ON public.instances;
CREATE TRIGGER instances_record_event
    AFTER INSERT OR UPDATE OF state ON public.instances
    FOR EACH ROW EXECUTE FUNCTION public.instances_record_event();

COMMIT;
