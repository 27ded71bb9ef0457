-- Deletes ask "does a manifest of this repository reference this digest?" (a blob, or a child
-- of an index). Indexed by the digest alone, a layer shared by many repositories made that
-- question read every repository's rows; by repository and digest (with the answer in the
-- index), it reads only the rows that answer it.
DROP INDEX manifest_refs_child;
CREATE INDEX manifest_refs_repo_child ON manifest_refs(repo_id, child_digest, manifest_digest);
