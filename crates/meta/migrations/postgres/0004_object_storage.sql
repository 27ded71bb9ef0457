-- Object storage. A blob assembled from a chunked upload on S3 stays where it was assembled
-- (S3 cannot rename, and a server-side copy stops at 5 GiB), so its key is recorded; NULL means
-- the canonical content-addressed key. An upload session's backend state (the multipart upload
-- and its parts' ETags, as JSON) lives beside its offset and hash state, so that any replica can
-- continue it.
ALTER TABLE blobs ADD COLUMN location TEXT;
ALTER TABLE uploads ADD COLUMN storage_state TEXT;

-- Leases for background work that must run on one replica at a time (upload expiry, and later
-- garbage collection, scans, webhooks): the holder renews before `expires_at`; when it dies, any
-- other replica takes over once the lease has expired.
CREATE TABLE leases (
    name        TEXT PRIMARY KEY,
    holder      TEXT NOT NULL,
    expires_at  BIGINT NOT NULL
);
