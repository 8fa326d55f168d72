-- Deploy cloudbrain:orphan_events to pg
-- requires: instance_events

BEGIN;

-- The reconciler deletes VMs of this deployment that have no live instance behind it; each
-- such deletion is an event too. An orphan may have no instance row at all (its label names
-- none, or one this database never had), so such an event names the provider and the VM.
ALTER TABLE public.instance_events
    ALTER COLUMN instance_id DROP NOT NULL,
    ADD COLUMN kind text NOT NULL DEFAULT 'state'
        CONSTRAINT instance_events_kind_check CHECK (kind IN ('state', 'orphan_deleted')),
    ADD COLUMN provider text,
    ADD COLUMN vm_name text,
    ADD CONSTRAINT instance_events_subject_check
        CHECK (instance_id IS NOT NULL OR (provider IS NOT NULL AND vm_name IS NOT NULL));

CREATE INDEX instance_events_orphans_idx
    ON public.instance_events (provider, at)
    WHERE kind = 'orphan_deleted';

COMMENT ON COLUMN public.instance_events.kind IS
    'state: a state change (written by the trigger); orphan_deleted: the reconciler deleted a VM';

COMMIT;
