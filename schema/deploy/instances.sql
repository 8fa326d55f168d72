-- Deploy cloudbrain:instances to pg
-- requires: tokens

BEGIN;

CREATE TYPE public.instance_state AS ENUM (
    'creating',     -- accepted, not yet sent to the cloud
    'starting',     -- the cloud accepted it
    'running',      -- has an address
    'terminating',
    'terminated',
    'errored'       -- the cloud refused it for good; see error_reason
);

CREATE TABLE public.instances (
    id               uuid                  PRIMARY KEY,
    provider         text                  NOT NULL,
    image            text                  NOT NULL,
    instance_type    text                  NOT NULL CHECK (instance_type IN ('standard', 'premium')),
    public_ssh_key   text,
    zone             text,
    reservation_id   uuid,
    tags             jsonb                 NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(tags) = 'object'),
    ip_address       inet,
    upstream_id      text,
    state            public.instance_state NOT NULL DEFAULT 'creating',
    error_reason     text,
    delete_requested boolean               NOT NULL DEFAULT false,
    created_by       bigint                REFERENCES public.tokens (id),
    created_at       timestamptz           NOT NULL DEFAULT now(),
    updated_at       timestamptz           NOT NULL DEFAULT now(),
    version          bigint                NOT NULL DEFAULT 1
);

COMMENT ON COLUMN public.instances.upstream_id IS 'the cloud''s own id for the VM, null until known';
COMMENT ON COLUMN public.instances.delete_requested IS 'DELETE arrived (possibly while still creating)';
COMMENT ON COLUMN public.instances.version IS 'bumped by trigger on every UPDATE; use WHERE id = $1 AND version = $2';

-- Listing: newest first, keyset pagination on (created_at, id).
CREATE INDEX instances_created_at_id_idx
    ON public.instances (created_at DESC, id DESC);
CREATE INDEX instances_provider_state_created_at_id_idx
    ON public.instances (provider, state, created_at DESC, id DESC);
CREATE INDEX instances_state_created_at_id_idx
    ON public.instances (state, created_at DESC, id DESC);
-- tag.KEY=VALUE filters: tags @> '{"KEY":"VALUE"}'
CREATE INDEX instances_tags_idx
    ON public.instances USING gin (tags jsonb_path_ops);

CREATE FUNCTION public.instances_bump_version() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    NEW.version := OLD.version + 1;
    RETURN NEW;
END;
$$;

CREATE TRIGGER instances_bump_version
    BEFORE UPDATE ON public.instances
    FOR EACH ROW EXECUTE FUNCTION public.instances_bump_version();

COMMIT;
