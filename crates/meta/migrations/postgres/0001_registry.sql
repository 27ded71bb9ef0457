-- The core registry's metadata, as migrations/sqlite/0001_registry.sql for PostgreSQL. Times are
-- milliseconds since the Unix epoch. Digests and names are stored as their canonical strings;
-- COLLATE "C" makes comparisons and ORDER BY byte-wise whatever the database's default collation,
-- which gives the lexical order that tag and catalog listings promise (and lets `name > $1`
-- pagination use the same indexes).

CREATE TABLE repositories (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        TEXT COLLATE "C" NOT NULL UNIQUE,
    created_at  BIGINT NOT NULL
);

-- Every blob that storage holds in published form, with its size.
CREATE TABLE blobs (
    digest      TEXT COLLATE "C" PRIMARY KEY,
    size        BIGINT NOT NULL,
    created_at  BIGINT NOT NULL
);

-- Which repository may see which blob.
CREATE TABLE repo_blobs (
    repo_id     BIGINT NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
    digest      TEXT COLLATE "C" NOT NULL REFERENCES blobs(digest),
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (repo_id, digest)
);
CREATE INDEX repo_blobs_digest ON repo_blobs(digest);

-- Manifests, with their bytes exactly as received.
CREATE TABLE manifests (
    repo_id        BIGINT NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
    digest         TEXT COLLATE "C" NOT NULL,
    media_type     TEXT NOT NULL,
    artifact_type  TEXT,
    subject        TEXT COLLATE "C",
    annotations    TEXT,
    size           BIGINT NOT NULL,
    content        BYTEA NOT NULL,
    created_at     BIGINT NOT NULL,
    PRIMARY KEY (repo_id, digest)
);
CREATE INDEX manifests_subject ON manifests(repo_id, subject) WHERE subject IS NOT NULL;

-- What each manifest references: blobs (config, layers) and child manifests (indexes).
CREATE TABLE manifest_refs (
    repo_id          BIGINT NOT NULL,
    manifest_digest  TEXT COLLATE "C" NOT NULL,
    child_digest     TEXT COLLATE "C" NOT NULL,
    kind             TEXT NOT NULL CHECK (kind IN ('blob', 'manifest')),
    PRIMARY KEY (repo_id, manifest_digest, child_digest),
    FOREIGN KEY (repo_id, manifest_digest) REFERENCES manifests(repo_id, digest) ON DELETE CASCADE
);
CREATE INDEX manifest_refs_child ON manifest_refs(child_digest);

CREATE TABLE tags (
    repo_id     BIGINT NOT NULL,
    name        TEXT COLLATE "C" NOT NULL,
    digest      TEXT COLLATE "C" NOT NULL,
    updated_at  BIGINT NOT NULL,
    PRIMARY KEY (repo_id, name),
    FOREIGN KEY (repo_id, digest) REFERENCES manifests(repo_id, digest)
);
CREATE INDEX tags_digest ON tags(repo_id, digest);

-- Upload sessions. The repository is kept by name: a session does not create a repository, a
-- finished blob does.
CREATE TABLE uploads (
    id           TEXT COLLATE "C" PRIMARY KEY,
    repo         TEXT COLLATE "C" NOT NULL,
    offset_bytes BIGINT NOT NULL,
    hash_state   BYTEA,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL
);
CREATE INDEX uploads_updated ON uploads(updated_at);
