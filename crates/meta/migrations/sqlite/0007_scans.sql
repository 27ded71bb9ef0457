-- Image analysis and vulnerability matching.
--
-- A layer's index (what berth-scan found in it) depends only on the layer's bytes and the
-- analyser's version, so it is cached per (layer digest, analyser version); the index itself is
-- a blob in blob storage (it can be large), named here.
CREATE TABLE layer_indexes (
    digest            TEXT NOT NULL,
    analyzer_version  BIGINT NOT NULL,
    index_digest      TEXT NOT NULL,
    index_size        BIGINT NOT NULL,
    created_at        BIGINT NOT NULL,
    PRIMARY KEY (digest, analyzer_version)
);
-- One row per analysed image manifest (an image's content does not depend on the repository
-- it is in). The inventory (berth-assess's MatchableInventory, JSON) is what re-matching reads;
-- the full SBOM (berth-scan's ImageReport, JSON) is a blob. `findings` is the compact result of
-- the last match against `db_version`: a JSON array of [key, id, level] used for policy
-- decisions and for the events a re-match records.
CREATE TABLE image_scans (
    digest            TEXT PRIMARY KEY,
    analyzer_version  BIGINT NOT NULL,
    sbom_digest       TEXT NOT NULL,
    sbom_size         BIGINT NOT NULL,
    inventory         TEXT NOT NULL,
    packages          BIGINT NOT NULL,
    db_version        TEXT NOT NULL,
    findings          TEXT NOT NULL,
    summary           TEXT NOT NULL,
    max_level         BIGINT NOT NULL,
    scanned_at        BIGINT NOT NULL,
    matched_at        BIGINT NOT NULL
);
CREATE INDEX image_scans_db_version ON image_scans(db_version);
-- Findings that appeared or went away when an image was matched again against a newer database.
CREATE TABLE scan_events (
    id          INTEGER PRIMARY KEY,
    digest      TEXT NOT NULL,
    kind        TEXT NOT NULL CHECK (kind IN ('appeared', 'resolved')),
    vuln_id     TEXT NOT NULL,
    package     TEXT NOT NULL,
    level       TEXT NOT NULL,
    db_version  TEXT NOT NULL,
    at          BIGINT NOT NULL
);
CREATE INDEX scan_events_digest ON scan_events(digest, id);
-- Scanning and pull policy per organisation (`org:<namespace>`) or repository (`repo:<name>`);
-- a repository's row wins over its organisation's. NULL columns inherit.
CREATE TABLE scan_policies (
    scope         TEXT PRIMARY KEY,
    scan_on_push  BIGINT,
    block_level   TEXT,
    updated_at    BIGINT NOT NULL,
    updated_by    TEXT NOT NULL
);
-- Vulnerability ids a scope's pull policy lets through, with a reason and an optional expiry
-- (Unix milliseconds).
CREATE TABLE scan_allowlist (
    scope       TEXT NOT NULL,
    vuln_id     TEXT NOT NULL,
    reason      TEXT NOT NULL,
    expires_at  BIGINT,
    created_by  TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (scope, vuln_id)
);
