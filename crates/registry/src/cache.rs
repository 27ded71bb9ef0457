//! Hot manifests in memory, so that a manifest GET by tag costs no database round trip.
//!
//! Manifests are cached by (repository, digest): content-addressed, so an entry can only become
//! wrong by deletion, which invalidates it. Tags are cached only when this process is the sole
//! writer of the metadata (SQLite); with a shared database another replica may move a tag, so
//! tags are then always read from the database, and a manifest asked for by digest is checked
//! to still exist (`Registry::get_manifest`): only its bytes come from the cache.
//!
//! A miss reads the database without holding any lock, and may race with a writer. To never
//! re-insert what a writer just invalidated, writers bump a generation under the write lock and
//! readers insert only if the generation they saw before reading is still current.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use quick_cache::Weighter;

use crate::service::CachedManifest;
use quick_cache::sync::Cache;

#[derive(Clone)]
struct ByteWeight;

impl Weighter<(String, String), Arc<CachedManifest>> for ByteWeight {
    fn weight(&self, key: &(String, String), val: &Arc<CachedManifest>) -> u64 {
        (key.0.len() + key.1.len() + val.content.len() + val.media_type.len() + 64) as u64
    }
}

#[derive(Clone)]
struct ListWeight;

impl Weighter<String, Arc<Vec<String>>> for ListWeight {
    fn weight(&self, key: &String, val: &Arc<Vec<String>>) -> u64 {
        (key.len() + 64 + val.iter().map(|t| t.len() + 24).sum::<usize>()) as u64
    }
}

pub(crate) struct ManifestCache {
    /// Whole sorted tag lists per repository (only with `tags`, for the same reason).
    tag_lists: Option<Cache<String, Arc<Vec<String>>, ListWeight>>,
    manifests: Cache<(String, String), Arc<CachedManifest>, ByteWeight>,
    tags: Option<Cache<(String, String), String>>,
    generation: AtomicU64,
    /// Writers hold it exclusively while they bump the generation and invalidate; readers hold
    /// it shared while they check the generation and insert.
    lock: RwLock<()>,
}

/// What a reader saw before going to the database.
#[derive(Clone, Copy)]
pub(crate) struct Ticket(u64);

impl ManifestCache {
    pub(crate) fn new(max_bytes: u64, cache_tags: bool) -> ManifestCache {
        ManifestCache {
            manifests: Cache::with_weighter(4096, max_bytes, ByteWeight),
            tags: cache_tags.then(|| Cache::new(100_000)),
            tag_lists: cache_tags.then(|| Cache::with_weighter(1024, 16 << 20, ListWeight)),
            generation: AtomicU64::new(0),
            lock: RwLock::new(()),
        }
    }

    pub(crate) fn ticket(&self) -> Ticket {
        Ticket(self.generation.load(Ordering::Acquire))
    }

    pub(crate) fn manifest(&self, repo: &str, digest: &str) -> Option<Arc<CachedManifest>> {
        self.manifests.get(&(repo.to_owned(), digest.to_owned()))
    }

    pub(crate) fn tag(&self, repo: &str, tag: &str) -> Option<String> {
        self.tags.as_ref()?.get(&(repo.to_owned(), tag.to_owned()))
    }

    pub(crate) fn tag_list(&self, repo: &str) -> Option<Arc<Vec<String>>> {
        self.tag_lists.as_ref()?.get(repo)
    }

    /// Whether whole tag lists are cached at all.
    pub(crate) fn caches_tag_lists(&self) -> bool {
        self.tag_lists.is_some()
    }

    /// Inserts a repository's whole tag list, unless a writer has changed anything since.
    pub(crate) fn fill_tag_list(&self, ticket: Ticket, repo: &str, list: Arc<Vec<String>>) {
        let _shared = self.lock.read().unwrap_or_else(|e| e.into_inner());
        if self.generation.load(Ordering::Acquire) != ticket.0 {
            return;
        }
        if let Some(lists) = &self.tag_lists {
            lists.insert(repo.to_owned(), list);
        }
    }

    /// Inserts what a reader found, unless a writer has changed anything since its ticket.
    pub(crate) fn fill(
        &self,
        ticket: Ticket,
        repo: &str,
        tag: Option<&str>,
        m: &Arc<CachedManifest>,
    ) {
        let _shared = self.lock.read().unwrap_or_else(|e| e.into_inner());
        if self.generation.load(Ordering::Acquire) != ticket.0 {
            return;
        }
        self.manifests
            .insert((repo.to_owned(), m.digest.clone()), m.clone());
        if let (Some(tags), Some(tag)) = (&self.tags, tag) {
            tags.insert((repo.to_owned(), tag.to_owned()), m.digest.clone());
        }
    }

    /// After a write has committed: forget `digests` and `tags` of `repo`.
    pub(crate) fn invalidate(&self, repo: &str, digests: &[&str], tags: &[&str]) {
        let _exclusive = self.lock.write().unwrap_or_else(|e| e.into_inner());
        self.generation.fetch_add(1, Ordering::AcqRel);
        for d in digests {
            self.manifests.remove(&(repo.to_owned(), (*d).to_owned()));
        }
        if let Some(cache) = &self.tags {
            for t in tags {
                cache.remove(&(repo.to_owned(), (*t).to_owned()));
            }
        }
        if let Some(lists) = &self.tag_lists
            && !tags.is_empty()
        {
            lists.remove(repo);
        }
    }
}
