-- Deploy cloudbrain:audit_trail to pg
-- requires: tokens

BEGIN;

-- Every mutation, who made it and how it ended: the API's POSTs and DELETEs (with the token,
-- the request id and the client's address) and the command line's token create and revoke.
-- Rows are only ever added: UPDATE, DELETE and TRUNCATE are refused by the triggers below, for
-- every role (a superuser can still drop the triggers: that is a schema change, not an edit).
CREATE TABLE public.audit_events (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    token_id    bigint,                 -- the token that made the request; NULL: the command line
    request_id  text,                   -- X-Request-ID of the answer
    address     text        NOT NULL,   -- the client's address, or 'cli'
    action      text        NOT NULL,   -- the route (instances.create, ...) or token.create
    method      text        NOT NULL,   -- POST, DELETE, or CLI
    target      text        NOT NULL,   -- what was acted on: an id, or the path
    status      integer     NOT NULL,   -- the HTTP status answered (0 for the command line)
    outcome     text        NOT NULL    -- 'ok', or the problem's code (invalid_request, ...)
);
CREATE INDEX audit_events_at_idx ON public.audit_events (at);
CREATE INDEX audit_events_token_id_id_idx ON public.audit_events (token_id, id);

CREATE FUNCTION public.audit_events_append_only() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_events is append-only: % is not allowed', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;
CREATE TRIGGER audit_events_append_only
    BEFORE UPDATE OR DELETE ON public.audit_events
    FOR EACH ROW EXECUTE FUNCTION public.audit_events_append_only();
CREATE TRIGGER audit_events_no_truncate
    BEFORE TRUNCATE ON public.audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION public.audit_events_append_only();

COMMIT;
