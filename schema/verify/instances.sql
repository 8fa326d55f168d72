-- Verify cloudbrain:instances on pg

BEGIN;

SELECT 'creating'::public.instance_state, 'starting'::public.instance_state,
       'running'::public.instance_state, 'terminating'::public.instance_state,
       'terminated'::public.instance_state, 'errored'::public.instance_state;

SELECT id, provider, image, instance_type, public_ssh_key, zone, reservation_id, tags,
       ip_address, upstream_id, state, error_reason, delete_requested, created_by,
       created_at, updated_at, version
  FROM public.instances
 WHERE false;

SELECT 'public.instances_created_at_id_idx'::regclass,
       'public.instances_provider_state_created_at_id_idx'::regclass,
       'public.instances_state_created_at_id_idx'::regclass,
       'public.instances_tags_idx'::regclass;

SELECT 1/count(*) FROM pg_proc
 WHERE proname = 'instances_bump_version' AND pronamespace = 'public'::regnamespace;

SELECT 1/count(*) FROM pg_trigger
 WHERE tgname = 'instances_bump_version' AND tgrelid = 'public.instances'::regclass;

ROLLBACK;
