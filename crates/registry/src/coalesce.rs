//! Fresh reads shared by concurrent requests: one database round trip answers every request
//! for the same key that arrived before it started.
//!
//! With a shared database (PostgreSQL, several replicas) a tag cannot be cached: another
//! replica may move it at any moment, and a push through one replica must be visible through
//! the others at once. But a hot tag is asked for by many clients at the same time, and they do
//! not each need their own query: a query that *starts* after a request arrived sees every
//! write committed before that request arrived, which is all a fresh read promises. So the
//! requests for a key queue up while one query runs; when it ends, the next query answers all of
//! those that queued meanwhile. Under load the batches grow with the query's latency, so the
//! database sees at most one query per key at a time, whatever the request rate; an idle key
//! costs one query per request, as before.
//!
//! Each key's queries run on a spawned task, so a client that goes away does not cancel the
//! query the others wait for.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

type Waiters<K, V> = HashMap<K, Vec<oneshot::Sender<V>>>;

pub(crate) struct Coalescer<K, V> {
    /// A key is present while a task is running its queries; the senders are the requests
    /// waiting for the next one.
    slots: Arc<Mutex<Waiters<K, V>>>,
}

impl<K, V> Default for Coalescer<K, V> {
    fn default() -> Self {
        Coalescer {
            slots: Arc::new(Mutex::new(HashMap::new())),
        }
    }
}

impl<K, V> Coalescer<K, V>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + 'static,
{
    /// The result of a `read` of `key` that started after this call. `None` if the read
    /// panicked.
    pub(crate) async fn read<F, Fut>(&self, key: K, read: F) -> Option<V>
    where
        F: Fn(K) -> Fut + Send + 'static,
        Fut: Future<Output = V> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let start = {
            let mut slots = lock(&self.slots);
            match slots.get_mut(&key) {
                Some(waiting) => {
                    waiting.push(tx);
                    false
                }
                None => {
                    slots.insert(key.clone(), vec![tx]);
                    true
                }
            }
        };
        if start {
            tokio::spawn(run(self.slots.clone(), key, read));
        }
        rx.await.ok()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs `read` for each batch of waiters until none is left.
async fn run<K, V, F, Fut>(slots: Arc<Mutex<Waiters<K, V>>>, key: K, read: F)
where
    K: Hash + Eq + Clone,
    V: Clone,
    F: Fn(K) -> Fut,
    Fut: Future<Output = V>,
{
    // Should `read` panic, the key must not stay claimed by a task that is gone: its waiters
    // are dropped (they see an error) and the next request starts a new task.
    struct Release<'a, K: Hash + Eq, V> {
        slots: &'a Mutex<Waiters<K, V>>,
        key: &'a K,
        armed: bool,
    }
    impl<K: Hash + Eq, V> Drop for Release<'_, K, V> {
        fn drop(&mut self) {
            if self.armed {
                lock(self.slots).remove(self.key);
            }
        }
    }
    let mut release = Release {
        slots: &slots,
        key: &key,
        armed: true,
    };
    loop {
        // Let the requests already being handled on this runtime join the batch first: under
        // load it makes batches larger, at the cost of one trip through the scheduler.
        tokio::task::yield_now().await;
        let batch = {
            let mut slots = lock(&slots);
            let waiting = slots.entry(key.clone()).or_default();
            if waiting.is_empty() {
                slots.remove(&key);
                release.armed = false;
                return;
            }
            std::mem::take(waiting)
        };
        // Every request in `batch` arrived before this read starts.
        let value = read(key.clone()).await;
        for tx in batch {
            let _ = tx.send(value.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::Duration;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_query_answers_the_requests_that_arrived_before_it() {
        let c = Arc::new(Coalescer::<String, u64>::default());
        let queries = Arc::new(AtomicU64::new(0));
        let version = Arc::new(AtomicU64::new(0));
        let read = {
            let (queries, version) = (queries.clone(), version.clone());
            move |_k: String| {
                let (queries, version) = (queries.clone(), version.clone());
                async move {
                    queries.fetch_add(1, Ordering::SeqCst);
                    // The snapshot is taken when the query starts, then it takes a while.
                    let seen = version.load(Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    seen
                }
            }
        };
        let mut tasks = Vec::new();
        for _ in 0..50 {
            let (c, read) = (c.clone(), read.clone());
            tasks.push(tokio::spawn(
                async move { c.read("k".to_owned(), read).await },
            ));
        }
        for t in tasks {
            assert_eq!(t.await.unwrap(), Some(0));
        }
        let first = queries.load(Ordering::SeqCst);
        assert!(first <= 2, "50 concurrent requests took {first} queries");

        // A write that completed before a request arrived is always seen by it, even while an
        // older query is still running.
        let slow = {
            let (c, read) = (c.clone(), read.clone());
            tokio::spawn(async move { c.read("k".to_owned(), read).await })
        };
        tokio::time::sleep(Duration::from_millis(5)).await;
        version.store(1, Ordering::SeqCst);
        assert_eq!(c.read("k".to_owned(), read.clone()).await, Some(1));
        assert_eq!(slow.await.unwrap(), Some(0));
        // Other keys do not wait for each other's queries, and nothing stays behind.
        assert_eq!(c.read("other".to_owned(), read).await, Some(1));
        assert_released(&c).await;
    }

    #[tokio::test]
    async fn a_panicking_read_fails_its_waiters_and_frees_the_key() {
        let c = Coalescer::<u8, u8>::default();
        let got = c
            .read(1, |_| async {
                panic!("boom");
                #[allow(unreachable_code)]
                0
            })
            .await;
        assert_eq!(got, None);
        assert_eq!(c.read(1, |_| async { 7 }).await, Some(7));
        assert_released(&c).await;
    }

    /// The task lets go of its key once it finds no one waiting (just after answering).
    async fn assert_released<K, V>(c: &Coalescer<K, V>) {
        for _ in 0..100 {
            if lock(&c.slots).is_empty() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("a key stayed claimed");
    }
}
