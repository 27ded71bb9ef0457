//! The bridge from an async body stream to a blocking writer thread. The network side and the
//! hash-and-write side run on different threads, joined by a small bounded channel: a slow disk
//! slows the socket reads (back-pressure) and memory stays at a few chunks whatever the size.

use std::io::Write;

use berth_oci::digest::Hasher;
use bytes::Bytes;
use futures::StreamExt;

use crate::{ByteStream, StorageError};

/// How many body chunks may wait between the socket and the disk. Chunks are at most a few
/// hundred KiB, so this bounds buffered data per upload to about a MiB.
const CHANNEL_DEPTH: usize = 2;

/// Body frames are written in batches of at least this many bytes (one `writev` each)...
const WRITE_BATCH: usize = 256 << 10;

/// ...or of this many frames, whichever comes first, so that a body sent in tiny frames cannot
/// make a batch hold an unbounded number of them.
const MAX_BATCH_CHUNKS: usize = 128;

/// With fsync on, writeback of each window of this many bytes is started as soon as it is
/// written, so the fsync before publishing finds little left to flush instead of the whole blob.
const WRITEBACK_WINDOW: u64 = 8 << 20;

/// Hashes and appends `body` to `file` on a blocking thread. Returns the file, the hasher and how
/// many bytes were written. Stops with `TooLarge` before writing past `limit` total bytes
/// (counting `already` bytes that were in the file before).
pub(crate) async fn pump(
    file: std::fs::File,
    mut hasher: Hasher,
    mut body: ByteStream,
    already: u64,
    limit: u64,
    early_writeback: bool,
) -> Result<(std::fs::File, Hasher, u64), (std::fs::File, StorageError)> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(CHANNEL_DEPTH);
    let runtime = tokio::runtime::Handle::current();
    let writer = tokio::task::spawn_blocking(move || {
        let mut out = Batch::new(file);
        let mut written = 0u64;
        let mut flushed_to = already;
        let mut failure = None;
        while let Some(chunk) = rx.blocking_recv() {
            hasher.update(&chunk);
            written += chunk.len() as u64;
            if let Err(e) = out.push(chunk) {
                failure = Some(StorageError::from(e));
                break;
            }
            let end = already + written;
            if early_writeback && end - flushed_to >= WRITEBACK_WINDOW {
                if let Err(e) = out.flush() {
                    failure = Some(StorageError::from(e));
                    break;
                }
                start_writeback(&out.file, flushed_to, end - flushed_to);
                flushed_to = end;
            }
        }
        if failure.is_none()
            && let Err(e) = out.flush()
        {
            failure = Some(StorageError::from(e));
        }
        // The rest, too: a chunked upload ends each PATCH here, and what is left unstarted
        // would otherwise wait, PATCH after PATCH, for the fsync that completes the upload.
        // Starting writeback of a window costs ~0.5 ms, so it is done on a thread of its own
        // (on a duplicate of the descriptor) while the request goes on to its answer.
        let end = already + written;
        if failure.is_none()
            && early_writeback
            && end > flushed_to
            && let Ok(dup) = out.file.try_clone()
        {
            runtime.spawn_blocking(move || start_writeback(&dup, flushed_to, end - flushed_to));
        }
        // The file comes back even when the last write failed. `written` counts what was
        // received; on failure the caller discards or truncates to what it knows was kept.
        (out.file, hasher, written, failure)
    });

    let mut received = already;
    let mut body_error = None;
    while let Some(item) = body.next().await {
        match item {
            Ok(chunk) => {
                received += chunk.len() as u64;
                if received > limit {
                    body_error = Some(StorageError::TooLarge { limit });
                    break;
                }
                if tx.send(chunk).await.is_err() {
                    // The writer stopped: its error is reported below.
                    break;
                }
            }
            Err(e) => {
                body_error = Some(StorageError::Body(e));
                break;
            }
        }
    }
    drop(tx);
    let (file, hasher, written, failure) = match writer.await {
        Ok(r) => r,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    };
    match failure.or(body_error) {
        Some(e) => Err((file, e)),
        None => Ok((file, hasher, written)),
    }
}

/// Body chunks held until they add up to [`WRITE_BATCH`] bytes, then written with one
/// `writev`: large writes without copying the chunks into a buffer first.
struct Batch {
    file: std::fs::File,
    chunks: Vec<Bytes>,
    len: usize,
}

impl Batch {
    fn new(file: std::fs::File) -> Batch {
        Batch {
            file,
            chunks: Vec::new(),
            len: 0,
        }
    }

    fn push(&mut self, chunk: Bytes) -> std::io::Result<()> {
        // An empty frame (HTTP/2 ends bodies with one) has nothing to write, and a batch of
        // only empty slices would make `writev` return 0, which reads as a failed write.
        if chunk.is_empty() {
            return Ok(());
        }
        self.len += chunk.len();
        self.chunks.push(chunk);
        if self.len >= WRITE_BATCH || self.chunks.len() >= MAX_BATCH_CHUNKS {
            self.flush()?;
        }
        Ok(())
    }

    /// Writes every held chunk (all of each, retrying short writes).
    fn flush(&mut self) -> std::io::Result<()> {
        let mut first = 0;
        while first < self.chunks.len() {
            let slices: Vec<std::io::IoSlice<'_>> = self.chunks[first..]
                .iter()
                .map(|c| std::io::IoSlice::new(c))
                .collect();
            let mut n = match self.file.write_vectored(&slices) {
                Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            drop(slices);
            while n > 0 {
                let c = &mut self.chunks[first];
                if n >= c.len() {
                    n -= c.len();
                    first += 1;
                } else {
                    bytes::Buf::advance(c, n);
                    n = 0;
                }
            }
        }
        self.chunks.clear();
        self.len = 0;
        Ok(())
    }
}

/// Asks the kernel to start writing a range of the file to disk without waiting for it.
/// Advisory: a failure only means the final fsync has more to do. Public for the benchmark's
/// reference receiver (`berth bench --scenarios machine-ingest`), which must write as uploads do.
pub fn start_writeback(file: &std::fs::File, offset: u64, len: u64) {
    use std::os::fd::AsRawFd;
    // SAFETY: sync_file_range only reads its integer arguments; the descriptor is valid for the
    // lifetime of `file`.
    unsafe {
        libc::sync_file_range(
            file.as_raw_fd(),
            offset as i64,
            len as i64,
            libc::SYNC_FILE_RANGE_WRITE,
        );
    }
}
