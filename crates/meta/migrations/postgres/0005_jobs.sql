-- A durable job queue for background work (image analysis, vulnerability matching, webhooks...).
-- Any replica may claim a queued job; a claim is a lease (`lease_until`), so a job whose worker
-- died is claimed again once its lease has expired. One job per (kind, key) is pending at a time:
-- enqueuing work that is already waiting is a no-op.
CREATE TABLE jobs (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind         TEXT NOT NULL,
    key          TEXT COLLATE "C" NOT NULL,
    payload      TEXT,
    state        TEXT NOT NULL CHECK (state IN ('queued', 'running', 'done', 'failed')),
    attempts     BIGINT NOT NULL DEFAULT 0,
    run_after    BIGINT NOT NULL,
    lease_until  BIGINT,
    holder       TEXT,
    error        TEXT,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL
);
CREATE UNIQUE INDEX jobs_pending ON jobs(kind, key) WHERE state IN ('queued', 'running');
CREATE INDEX jobs_claimable ON jobs(kind, state, run_after);
