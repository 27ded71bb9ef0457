-- The vulnerability database shared by every replica. The snapshot itself is a content-addressed
-- blob in blob storage; this row names the current one. One row at most (id = 1); it moves by
-- compare-and-swap on the digest, so two writers that built on the same snapshot cannot both
-- win and silently drop each other's feed.
CREATE TABLE vulndb_current (
    id          BIGINT PRIMARY KEY CHECK (id = 1),
    digest      TEXT NOT NULL,
    size        BIGINT NOT NULL,
    version     TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);
-- Per configured feed (or import source): the last update attempt and its outcome, and the
-- validators for the next conditional request. Times are Unix milliseconds.
CREATE TABLE vulndb_feeds (
    name           TEXT PRIMARY KEY,
    last_attempt   BIGINT,
    last_success   BIGINT,
    error          TEXT,
    etag           TEXT,
    last_modified  TEXT,
    records        BIGINT
);
