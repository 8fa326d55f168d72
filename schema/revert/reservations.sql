-- Revert cloudbrain:reservations from pg

BEGIN;

-- Reservation jobs have no place in the older queue; a database reverted while reservations
-- are held must have them cancelled first (the janitor's orphan pass finds them otherwise).
DELETE FROM public.jobs WHERE reservation_id IS NOT NULL;
DROP INDEX public.jobs_one_unfinished_per_reservation_kind_idx;
DROP INDEX public.jobs_reservation_id_idx;
ALTER TABLE public.jobs
    DROP CONSTRAINT jobs_subject_check,
    DROP COLUMN reservation_id,
    ALTER COLUMN instance_id SET NOT NULL;

-- Enum values cannot be dropped: the type is rebuilt without them.
DROP INDEX public.jobs_one_unfinished_per_kind_idx;
ALTER TYPE public.job_kind RENAME TO job_kind_with_reservations;
CREATE TYPE public.job_kind AS ENUM ('create_instance', 'delete_instance');
ALTER TABLE public.jobs ALTER COLUMN kind TYPE public.job_kind USING kind::text::public.job_kind;
DROP TYPE public.job_kind_with_reservations;
CREATE UNIQUE INDEX jobs_one_unfinished_per_kind_idx
    ON public.jobs (instance_id, kind)
    WHERE state IN ('queued', 'running');

DROP TRIGGER instances_release_reservation_slot ON public.instances;
DROP FUNCTION public.instances_release_reservation_slot();
DROP INDEX public.instances_reservation_id_idx;
ALTER TABLE public.instances DROP CONSTRAINT instances_reservation_id_fkey;
UPDATE public.instances SET reservation_id = NULL WHERE reservation_id IS NOT NULL;

DROP TABLE public.reservation_events;
DROP FUNCTION public.reservation_events_append_only();
DROP TABLE public.reservations;
DROP FUNCTION public.reservations_record_event();
DROP FUNCTION public.reservations_bump_version();
DROP TYPE public.reservation_state;

COMMIT;
