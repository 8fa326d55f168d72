-- Deploy cloudbrain:cluster to pg
-- requires: statement_triggers
-- requires: usage_history

BEGIN;

-- The processes serving one deployment ("nodes"): each keeps its row fresh every second from
-- its coordination session (a direct connection, never through a pooler), whose server process
-- id is backend_pid. A row whose heartbeat is older than an hour is deleted by any live node; a
-- node that stops cleanly deletes its own.
CREATE TABLE public.nodes (
    name         text        PRIMARY KEY CHECK (name <> '' AND length(name) <= 200),
    incarnation  uuid        NOT NULL,
    version      text        NOT NULL,
    address      text        NOT NULL,
    backend_pid  int,
    started_at   timestamptz NOT NULL DEFAULT now(),
    heartbeat_at timestamptz NOT NULL DEFAULT now()
);

COMMENT ON COLUMN public.nodes.incarnation IS
    'new at every start: a restart under the same name is a new incarnation';
COMMENT ON COLUMN public.nodes.backend_pid IS
    'pg_backend_pid() of the node''s coordination session (joins pg_locks)';

-- What one node does for the whole cluster: each provider's reconciler and reservation janitor.
-- Whoever holds the session-level advisory lock (2 key form: 1667329024, id) on its coordination
-- session is the leader; PostgreSQL drops the lock with the session. leader and leader_since
-- record who took it last and when (pg_locks says whether it still holds it).
CREATE TABLE public.cluster_roles (
    id           serial      PRIMARY KEY,
    provider     text        NOT NULL,
    role         text        NOT NULL CHECK (role IN ('reconciler', 'janitor')),
    leader       text,
    leader_since timestamptz,
    UNIQUE (provider, role)
);

-- Each provider's calls, paced for the whole cluster: the time from which the next call may be
-- made (the theoretical arrival time of the generic cell rate algorithm). Unlogged: a lost row
-- after a crash or a failover only forgets what was already handed out, less than a second's
-- worth, and taking a slot costs no WAL flush.
CREATE UNLOGGED TABLE public.provider_pacing (
    provider     text        PRIMARY KEY,
    next_call_at timestamptz NOT NULL DEFAULT '-infinity'
);

-- Claiming a provider's jobs locks its row first, so that the jobs running across the cluster
-- are counted by one claimer at a time (max-in-flight holds for the cluster).
CREATE TABLE public.provider_claims (
    provider text PRIMARY KEY
);

-- Hands out up to `wanted` call slots of a provider, `spacing` seconds apart, following every
-- slot handed out before (to any node), unless the next free slot is more than `horizon`
-- seconds away: then none, and `retry_in` says when to ask again. `first_in` is the first slot's
-- distance from the clock at the end of the call (negative: already due).
CREATE FUNCTION public.take_call_slots(p_provider text, wanted int, spacing double precision,
                                       horizon double precision,
                                       OUT granted int, OUT first_in double precision,
                                       OUT retry_in double precision)
    LANGUAGE plpgsql AS $$
DECLARE
    next_at timestamptz;
    t       timestamptz;
    start   timestamptz;
BEGIN
    IF wanted < 1 OR NOT (spacing > 0) OR horizon < 0 THEN
        RAISE EXCEPTION 'take_call_slots: wanted %, spacing %, horizon %', wanted, spacing, horizon
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    INSERT INTO public.provider_pacing (provider) VALUES (p_provider) ON CONFLICT DO NOTHING;
    SELECT p.next_call_at INTO next_at
      FROM public.provider_pacing p WHERE p.provider = p_provider FOR UPDATE;
    -- Read after the lock: waiting for it must not hand out a slot in the past.
    t := clock_timestamp();
    start := greatest(next_at, t);
    IF start > t + make_interval(secs => horizon) THEN
        granted := 0;
        retry_in := extract(epoch FROM start - t) - horizon;
        RETURN;
    END IF;
    UPDATE public.provider_pacing
       SET next_call_at = start + make_interval(secs => spacing * wanted)
     WHERE provider = p_provider;
    granted := wanted;
    first_in := extract(epoch FROM start - clock_timestamp());
    retry_in := 0;
END;
$$;

-- The cloud said "slow down": no node gets a slot of this provider for `seconds`.
CREATE FUNCTION public.pause_calls(p_provider text, seconds double precision) RETURNS void
    LANGUAGE sql AS $$
    INSERT INTO public.provider_pacing AS p (provider, next_call_at)
    VALUES (p_provider, clock_timestamp() + make_interval(secs => seconds))
    ON CONFLICT (provider) DO UPDATE
       SET next_call_at = greatest(p.next_call_at, EXCLUDED.next_call_at);
$$;

-- Every node forgets a revoked (or deleted) token at once: it LISTENs on cloudbrain_tokens
-- (payload: the token's id); its periodic re-check is the backstop.
CREATE FUNCTION public.tokens_notify_revoked() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('cloudbrain_tokens', OLD.id::text);
    RETURN NULL;
END;
$$;

CREATE TRIGGER tokens_notify_revoked
    AFTER UPDATE OF revoked_at ON public.tokens
    FOR EACH ROW
    WHEN (NEW.revoked_at IS NOT NULL AND OLD.revoked_at IS NULL)
    EXECUTE FUNCTION public.tokens_notify_revoked();

CREATE TRIGGER tokens_notify_deleted
    AFTER DELETE ON public.tokens
    FOR EACH ROW EXECUTE FUNCTION public.tokens_notify_revoked();

COMMIT;
