-- Deploy cloudbrain:idempotency_keys to pg
-- requires: instances
-- requires: tokens

BEGIN;

-- One row per (token, Idempotency-Key): the first response is replayed for 24 hours when the
-- same key comes with the same body (request_hash); another body is a 422.
CREATE TABLE public.idempotency_keys (
    token_id        bigint      NOT NULL REFERENCES public.tokens (id),
    key             text        NOT NULL CHECK (length(key) BETWEEN 1 AND 255),
    request_hash    bytea       NOT NULL,
    instance_id     uuid        NOT NULL REFERENCES public.instances (id),
    response_status int         NOT NULL,
    response_body   jsonb       NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (token_id, key)
);

-- Purging: DELETE FROM idempotency_keys WHERE created_at < now() - interval '24 hours'
CREATE INDEX idempotency_keys_created_at_idx
    ON public.idempotency_keys (created_at);

COMMIT;
