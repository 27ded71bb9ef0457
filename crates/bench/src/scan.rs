//! Image analysis speed (`scan` scenarios; no registry): berth-scan's per-layer indexing
//! against plain gzip decompression of the same layer, the analysis of a whole Debian image,
//! and the peak memory of indexing a large generated layer.
//!
//! Everything runs on one core: on a thread pinned to one CPU, whose helper threads (the
//! analysis's blocking threads) inherit the pin. The layer and image are the real Debian
//! bookworm image that `scripts/test-images` builds with debootstrap.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context as _, Result, anyhow, bail};
use berth_oci::{Digest, Manifest};
use berth_scan::{AnalyzeOptions, AnalyzerOptions, ImageSource as _, LocalSource};
use sha2::Digest as _;

use crate::blob::SplitMix64;
use crate::procfs::Proc;
use crate::report::{Meter, ScenarioResult, median};

/// The OCI layout analysed by default: the Debian image of `scripts/test-images`.
pub fn default_image() -> PathBuf {
    let images = std::env::var_os("BERTH_TEST_IMAGES")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/berth/images")
        });
    images.join("debian/layout")
}

/// Runs `f` on a new thread pinned to one CPU (the last this process may use); returns its
/// result and the CPU.
pub fn on_one_core<T: Send + 'static>(
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<(T, usize)> {
    std::thread::Builder::new()
        .name("berth-bench-scan".into())
        .spawn(move || -> Result<(T, usize)> {
            let cpu = pin_to_one_cpu()?;
            Ok((f()?, cpu))
        })?
        .join()
        .map_err(|_| anyhow!("the scan benchmark thread panicked"))?
}

/// Pins the calling thread to the last CPU of its affinity mask; threads it starts later
/// inherit the mask.
fn pin_to_one_cpu() -> Result<usize> {
    // SAFETY: cpu_set_t is plain data, zeroed is a valid empty set, and both calls get its
    // exact size; pid 0 is the calling thread.
    unsafe {
        let size = std::mem::size_of::<libc::cpu_set_t>();
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, size, &mut set) != 0 {
            bail!("sched_getaffinity: {}", std::io::Error::last_os_error());
        }
        let cpu = (0..libc::CPU_SETSIZE as usize)
            .rev()
            .find(|&c| libc::CPU_ISSET(c, &set))
            .ok_or_else(|| anyhow!("no CPU in the affinity mask"))?;
        let mut one: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut one);
        if libc::sched_setaffinity(0, size, &one) != 0 {
            bail!("sched_setaffinity: {}", std::io::Error::last_os_error());
        }
        Ok(cpu)
    }
}

/// The largest layer of the image in `layout`, in memory.
struct Layer {
    digest: Digest,
    media_type: String,
    bytes: Vec<u8>,
}

fn image_manifest(layout: &Path) -> Result<(LocalSource, Manifest)> {
    let source = LocalSource::oci_layout(layout).with_context(|| {
        format!(
            "{} (build it with scripts/test-images debian, or pass --scan-image)",
            layout.display()
        )
    })?;
    let rt = tokio::runtime::Builder::new_current_thread().build()?;
    let fetched = rt.block_on(source.manifest(""))?;
    let manifest = Manifest::parse(&fetched.bytes, fetched.media_type.as_deref())
        .map_err(|e| anyhow!("{}: {e}", layout.display()))?;
    Ok((source, manifest))
}

fn largest_layer(layout: &Path) -> Result<Layer> {
    let (_, manifest) = image_manifest(layout)?;
    let l = manifest
        .layers
        .iter()
        .max_by_key(|l| l.size)
        .ok_or_else(|| anyhow!("{}: the image has no layer", layout.display()))?;
    if !l.media_type.ends_with("gzip") {
        bail!("the largest layer is {}, not gzip", l.media_type);
    }
    let path = layout
        .join("blobs")
        .join(l.digest.algorithm().as_str())
        .join(l.digest.hex());
    Ok(Layer {
        digest: l.digest.clone(),
        media_type: l.media_type.clone(),
        bytes: std::fs::read(&path).with_context(|| path.display().to_string())?,
    })
}

/// Plain decompression: the same flate2 decoder (and so the same backend) berth-scan reads
/// layers with, into a buffer that is thrown away. Returns the uncompressed bytes.
fn inflate(blob: &[u8]) -> Result<u64> {
    let mut d = flate2::read::MultiGzDecoder::new(blob);
    let mut buf = vec![0u8; 64 << 10];
    let mut n = 0u64;
    loop {
        match d.read(&mut buf)? {
            0 => return Ok(n),
            k => n += k as u64,
        }
    }
}

/// berth-scan's indexing of the layer, with the default limits. Returns the tar's size.
fn index(layer: &Layer) -> Result<u64> {
    let index = berth_scan::layer::index_layer(
        &layer.digest,
        &layer.media_type,
        layer.bytes.as_slice(),
        &AnalyzerOptions::default(),
        Box::new(|_| {}),
    )?;
    Ok(index.tar_size)
}

/// `scan-layer`: decompression and indexing of the image's largest layer, interleaved
/// (`repeat` of each, after one untimed of each). Headline: indexing throughput as a share
/// of decompression throughput, both in uncompressed bytes per second.
pub fn layer(r: &mut ScenarioResult, layout: &Path, repeat: usize) -> Result<()> {
    let layout = layout.to_owned();
    let meter = Meter::start(&None);
    let ((inflate_s, index_s, out, compressed), cpu) = on_one_core(move || {
        let layer = largest_layer(&layout)?;
        let out = inflate(&layer.bytes)?;
        if index(&layer)? != out {
            bail!("indexing read a different number of bytes than decompression");
        }
        let (mut inflate_s, mut index_s) = (Vec::new(), Vec::new());
        for _ in 0..repeat.max(1) {
            let t = Instant::now();
            std::hint::black_box(inflate(&layer.bytes)?);
            inflate_s.push(t.elapsed().as_secs_f64());
            let t = Instant::now();
            std::hint::black_box(index(&layer)?);
            index_s.push(t.elapsed().as_secs_f64());
        }
        Ok((inflate_s, index_s, out, layer.bytes.len()))
    })?;
    meter.stop(r);
    let mbs = |s: &[f64]| -> Vec<f64> { s.iter().map(|s| out as f64 / 1e6 / s).collect() };
    let (inflate_mbs, index_mbs) = (mbs(&inflate_s), mbs(&index_s));
    let (inf, idx) = (
        median(&inflate_mbs).unwrap_or(0.0),
        median(&index_mbs).unwrap_or(0.0),
    );
    r.bytes = Some(out);
    r.seconds = median(&index_s);
    r.mb_per_s = Some(idx);
    r.metric = Some(100.0 * idx / inf);
    r.samples = index_mbs
        .iter()
        .zip(&inflate_mbs)
        .map(|(i, f)| 100.0 * i / f)
        .collect();
    r.extra.insert("cpu".into(), cpu.into());
    r.extra.insert("compressed_bytes".into(), compressed.into());
    r.extra.insert("inflate_mb_s".into(), inf.into());
    r.extra.insert("index_mb_s".into(), idx.into());
    r.extra
        .insert("inflate_samples_mb_s".into(), inflate_mbs.into());
    r.extra.insert(
        "note".into(),
        format!(
            "{:.1} MB layer ({:.1} MB gzip): inflate {inf:.0} MB/s, index {idx:.0} MB/s (target >= 70%)",
            out as f64 / 1e6,
            compressed as f64 / 1e6
        )
        .into(),
    );
    Ok(())
}

/// `scan-image`: the whole analysis of the image (every layer indexed, no cache; merge;
/// inventory), `repeat` times after one untimed run. Headline: the median, in milliseconds.
pub fn image(r: &mut ScenarioResult, layout: &Path, repeat: usize) -> Result<()> {
    let layout = layout.to_owned();
    let meter = Meter::start(&None);
    let ((secs, packages, layers), cpu) = on_one_core(move || {
        let (source, _) = image_manifest(&layout)?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let options = AnalyzeOptions {
            concurrency: 1,
            ..Default::default()
        };
        let analyze = || {
            rt.block_on(berth_scan::analyze_image(
                &source,
                "",
                &options,
                berth_scan::no_progress(),
            ))
        };
        let first = analyze()?;
        let mut secs = Vec::new();
        for _ in 0..repeat.max(1) {
            let t = Instant::now();
            std::hint::black_box(analyze()?);
            secs.push(t.elapsed().as_secs_f64());
        }
        Ok((secs, first.packages.len(), first.layers.len()))
    })?;
    meter.stop(r);
    let ms: Vec<f64> = secs.iter().map(|s| s * 1e3).collect();
    r.metric = median(&ms);
    r.seconds = median(&secs);
    r.samples = ms;
    r.items = Some(packages as u64);
    r.extra.insert("cpu".into(), cpu.into());
    r.extra.insert("layers".into(), layers.into());
    r.extra.insert(
        "note".into(),
        format!(
            "{packages} packages in {layers} layer(s); {:.3} s (target < 0.5 s)",
            r.seconds.unwrap_or(0.0)
        )
        .into(),
    );
    Ok(())
}

/// `scan-rss`: the process's peak resident memory while indexing a generated gzip layer of
/// `size` uncompressed bytes from a file, with the default limits. The layer holds what costs
/// memory: a shared library at the size cap for binaries (read whole), a bigger executable
/// (scanned as a stream), a large dpkg database and npm lock file, many small libraries, and
/// data.
pub fn rss(r: &mut ScenarioResult, scratch: &Path, size: u64, run_id: &str) -> Result<()> {
    let path = scratch.join(format!(".berth-bench-{run_id}-layer.tar.gz"));
    let res = (|| -> Result<()> {
        eprintln!("  generating a {} MiB layer ...", size >> 20);
        let digest = generate_layer(&path, size, AnalyzerOptions::default().max_binary_size)?;
        let p = path.clone();
        let meter = Meter::start(&None);
        let ((tar, secs, before_kib, hwm_kib, sampled_kib, reset), cpu) = on_one_core(move || {
            let me = Proc::current();
            // Return what earlier scenarios freed to the system, so that the peak is this
            // scenario's and not theirs.
            // SAFETY: malloc_trim only gives free memory of glibc's allocator back.
            unsafe { libc::malloc_trim(0) };
            // Start the peak at the current resident set (Linux: `5` resets VmHWM).
            let reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();
            let before = me.sample()?;
            let sampler = me.peak_sampler(std::time::Duration::from_millis(5));
            let t = Instant::now();
            let file = std::fs::File::open(&p)?;
            let index = berth_scan::layer::index_layer(
                &digest,
                "application/vnd.oci.image.layer.v1.tar+gzip",
                file,
                &AnalyzerOptions::default(),
                Box::new(|_| {}),
            )?;
            let secs = t.elapsed().as_secs_f64();
            let (sampled, _) = sampler.finish();
            let after = me.sample()?;
            Ok((
                index.tar_size,
                secs,
                before.rss_kib,
                after.hwm_kib,
                sampled,
                reset,
            ))
        })?;
        meter.stop(r);
        // Without the reset, VmHWM is the peak since the process started: an upper bound.
        let peak_kib = if reset {
            hwm_kib.max(sampled_kib)
        } else {
            sampled_kib
        };
        r.metric = Some(peak_kib as f64 / 1024.0);
        r.rss_peak_mib = r.metric;
        r.rss_before_mib = Some(before_kib as f64 / 1024.0);
        r.bytes = Some(tar);
        r.seconds = Some(secs);
        r.mb_per_s = Some(tar as f64 / 1e6 / secs);
        r.extra.insert("cpu".into(), cpu.into());
        r.extra.insert("hwm_reset".into(), reset.into());
        r.extra.insert(
            "rss_growth_mib".into(),
            (peak_kib.saturating_sub(before_kib) as f64 / 1024.0).into(),
        );
        r.extra.insert(
            "note".into(),
            format!(
                "{} MiB layer indexed at {:.0} MB/s; RSS {:.1} MiB before, peak {:.1} MiB (target < 100 MB)",
                tar >> 20,
                tar as f64 / 1e6 / secs,
                before_kib as f64 / 1024.0,
                peak_kib as f64 / 1024.0
            )
            .into(),
        );
        Ok(())
    })();
    let _ = std::fs::remove_file(&path);
    res
}

/// A file's generated contents: `head`, then a 16 KiB pseudo-random block repeated (which
/// gzip compresses, the block being within its window), `len` bytes in all.
struct Filler<'a> {
    head: &'a [u8],
    block: &'a [u8],
    pos: u64,
    len: u64,
}

impl Read for Filler<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let left = self.len - self.pos;
        if left == 0 {
            return Ok(0);
        }
        let n = if (self.pos as usize) < self.head.len() {
            let h = &self.head[self.pos as usize..];
            let n = h.len().min(buf.len()).min(left as usize);
            buf[..n].copy_from_slice(&h[..n]);
            n
        } else {
            let at = (self.pos as usize - self.head.len()) % self.block.len();
            let b = &self.block[at..];
            let n = b.len().min(buf.len()).min(left as usize);
            buf[..n].copy_from_slice(&b[..n]);
            n
        };
        self.pos += n as u64;
        Ok(n)
    }
}

struct Hashing<W> {
    inner: W,
    hash: sha2::Sha256,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Writes the generated layer (tar, gzip) of about `size` uncompressed bytes to `path`, with
/// binaries sized around `cap` (the largest held whole); returns the blob's digest. Nothing big
/// is held in memory.
fn generate_layer(path: &Path, size: u64, cap: u64) -> Result<Digest> {
    const MIB: u64 = 1 << 20;
    let file = std::fs::File::create(path).with_context(|| path.display().to_string())?;
    let hashing = Hashing {
        inner: std::io::BufWriter::new(file),
        hash: sha2::Sha256::new(),
    };
    let mut tar = tar::Builder::new(flate2::write::GzEncoder::new(
        hashing,
        flate2::Compression::fast(),
    ));
    let mut block = vec![0u8; 16 << 10];
    SplitMix64::new(0x5ca9).fill(&mut block);
    let written = std::cell::Cell::new(0u64);
    let add = |tar: &mut tar::Builder<_>, path: &str, mode: u32, head: &[u8], len: u64| {
        let mut h = tar::Header::new_gnu();
        h.set_size(len);
        h.set_mode(mode);
        written.set(written.get() + len);
        let body = Filler {
            head,
            block: &block,
            pos: 0,
            len,
        };
        tar.append_data(&mut h, path, body)
    };
    add(
        &mut tar,
        "etc/os-release",
        0o644,
        b"ID=debian\nVERSION_ID=\"12\"\n",
        28,
    )?;
    let mut status = String::new();
    for i in 0..5000 {
        status.push_str(&format!(
            "Package: pkg{i}\nStatus: install ok installed\nVersion: 1.{i}-1\n\
             Architecture: amd64\nSource: src{} (1.{i}-1)\nDescription: generated\n \
             package number {i}, with a long description line to make it realistic\n\n",
            i / 3
        ));
    }
    add(
        &mut tar,
        "var/lib/dpkg/status",
        0o644,
        status.as_bytes(),
        status.len() as u64,
    )?;
    // A large application's lock file (5,000 packages, about 1 MB). Memory grows with the
    // packages found (each is kept until the inventory is built), not with the layer.
    let mut lock = String::from(
        r#"{"name":"app","version":"1.0.0","lockfileVersion":3,"packages":{"":{"name":"app"}"#,
    );
    for i in 0..5_000 {
        lock.push_str(&format!(
            r#","node_modules/pkg{i}":{{"version":"1.{i}.0","resolved":"https://registry.npmjs.org/pkg{i}/-/pkg{i}-1.{i}.0.tgz","integrity":"sha512-{i:0>86}==","license":"MIT"}}"#
        ));
    }
    lock.push_str("}}");
    add(
        &mut tar,
        "srv/app/package-lock.json",
        0o644,
        lock.as_bytes(),
        lock.len() as u64,
    )?;
    let elf = b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0\0OpenSSL 3.0.11 19 Sep 2023\0";
    // Held whole: the largest binary analysed in memory.
    add(
        &mut tar,
        "usr/lib/x86_64-linux-gnu/libbig.so.1",
        0o644,
        elf,
        cap,
    )?;
    // Over the cap: scanned as a stream.
    add(&mut tar, "usr/local/bin/huge", 0o755, elf, cap + 64 * MIB)?;
    for i in 0..32 {
        add(
            &mut tar,
            &format!("usr/lib/x86_64-linux-gnu/libsmall{i}.so.1"),
            0o644,
            elf,
            MIB,
        )?;
    }
    let mut i = 0;
    while written.get() < size {
        let len = (size - written.get()).min(64 * MIB);
        add(&mut tar, &format!("srv/data/part{i}.bin"), 0o644, b"", len)?;
        i += 1;
    }
    let hashing = tar.into_inner()?.finish()?;
    let mut inner = hashing.inner;
    inner.flush()?;
    format!("sha256:{}", hex::encode(hashing.hash.finalize()))
        .parse()
        .map_err(|e| anyhow!("digest: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_generated_layer_is_what_it_says() {
        let dir = std::env::temp_dir().join(format!("berth-bench-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("layer.tar.gz");
        let digest = generate_layer(&path, 80 << 20, 2 << 20).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(digest, Digest::sha256_of(&bytes));
        let layer = Layer {
            digest,
            media_type: "application/vnd.oci.image.layer.v1.tar+gzip".into(),
            bytes,
        };
        let tar = inflate(&layer.bytes).unwrap();
        assert!(tar >= 80 << 20, "{tar}");
        let opts = AnalyzerOptions {
            max_binary_size: 2 << 20,
            ..Default::default()
        };
        let index = berth_scan::layer::index_layer(
            &layer.digest,
            &layer.media_type,
            layer.bytes.as_slice(),
            &opts,
            Box::new(|_| {}),
        )
        .unwrap();
        assert_eq!(index.tar_size, tar);
        let found = |path: &str, name: &str| {
            index
                .findings
                .iter()
                .any(|f| f.path == path && f.packages.iter().any(|p| p.name == name))
        };
        // The library at the cap is read whole, the bigger executable scanned as a stream.
        assert!(found("usr/lib/x86_64-linux-gnu/libbig.so.1", "openssl"));
        assert!(found("usr/local/bin/huge", "openssl"));
        assert!(found("var/lib/dpkg/status", "pkg4999"));
        assert!(found("srv/app/package-lock.json", "pkg4999"));
        assert!(index.warnings.iter().any(|w| {
            w.path.as_deref() == Some("usr/local/bin/huge") && w.message.contains("stream")
        }));
    }

    #[test]
    fn pinned_to_one_cpu() {
        let ((), cpu) = on_one_core(|| {
            let status = std::fs::read_to_string("/proc/thread-self/status")?;
            let allowed = status
                .lines()
                .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
                .map(str::trim)
                .unwrap_or_default()
                .to_owned();
            // A thread started from the pinned one inherits the pin.
            let inner = std::thread::spawn(|| std::fs::read_to_string("/proc/thread-self/status"))
                .join()
                .unwrap()?;
            assert!(
                inner.contains(&format!("Cpus_allowed_list:\t{allowed}\n")),
                "{inner}"
            );
            assert!(!allowed.contains([',', '-']), "{allowed}");
            Ok(())
        })
        .unwrap();
        assert!(cpu < libc::CPU_SETSIZE as usize);
    }
}
