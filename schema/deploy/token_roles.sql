-- Deploy cloudbrain:token_roles to pg
-- requires: tokens

BEGIN;

-- What a token may do: `client` uses the API, `driver` only connects an out-of-tree driver at
-- /drivers/connect, `admin` is reserved for the administration API. Tokens made before roles
-- existed were all API tokens.
ALTER TABLE public.tokens
    ADD COLUMN role text NOT NULL DEFAULT 'client'
        CONSTRAINT tokens_role_check CHECK (role IN ('admin', 'client', 'driver'));

COMMENT ON COLUMN public.tokens.role IS
    'client: the HTTP API; driver: /drivers/connect only; admin: reserved for administration';

COMMIT;
