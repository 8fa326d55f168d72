-- Deploy cloudbrain:token_scopes to pg
-- requires: token_roles
-- requires: reservation_sets
-- requires: cluster

BEGIN;

-- What a client token sees: `own` only the instances, reservations and reservation sets it
-- created; `all` every one. Admin tokens see everything whatever their scope. The tokens that
-- exist when this change deploys get `all`, so that an upgrade takes nothing from them; tokens
-- created afterwards get `own` unless they ask for `all`.
ALTER TABLE public.tokens
    ADD COLUMN scope text NOT NULL DEFAULT 'all'
        CONSTRAINT tokens_scope_check CHECK (scope IN ('own', 'all'));
ALTER TABLE public.tokens ALTER COLUMN scope SET DEFAULT 'own';

-- When the token last passed a check, to the few seconds of the service's token cache
-- confirmation; NULL: not since this change.
ALTER TABLE public.tokens ADD COLUMN last_used_at timestamptz;

COMMENT ON COLUMN public.tokens.scope IS
    'own: a client token sees only what it created; all: everything (admin tokens always)';
COMMENT ON COLUMN public.tokens.last_used_at IS
    'when the token was last used, recorded every few seconds by the service';

-- A scoped listing walks its own rows newest first, as the unscoped one walks the time index.
CREATE INDEX instances_created_by_created_at_id_idx
    ON public.instances (created_by, created_at DESC, id DESC);
CREATE INDEX reservations_created_by_created_at_id_idx
    ON public.reservations (created_by, created_at DESC, id DESC);
CREATE INDEX reservation_sets_created_by_created_at_id_idx
    ON public.reservation_sets (created_by, created_at DESC, id DESC);

COMMIT;
