-- Deploy cloudbrain:tokens to pg

BEGIN;

-- A token is "<id>-<32 hex>"; only a random salt and scrypt(raw 16 bytes, salt, N=16384, r=8,
-- p=1, keyLen=32) are stored (Cloud Brain's parameters, so carried-over rows keep working).
CREATE TABLE public.tokens (
    id          bigserial   PRIMARY KEY,
    description text        NOT NULL,
    salt        bytea       NOT NULL CHECK (length(salt) = 32),
    hash        bytea       NOT NULL CHECK (length(hash) = 32),
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);

COMMENT ON TABLE public.tokens IS 'API tokens; the token itself is never stored, only salt and scrypt hash';
COMMENT ON COLUMN public.tokens.revoked_at IS 'set by "cloudbrain token revoke"; a revoked token must stop working within 5 s';

COMMIT;
