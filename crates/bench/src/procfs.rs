//! Resident memory and CPU time of a process, read from /proc (Linux only).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};

/// One reading of a process's counters.
#[derive(Clone, Copy, Debug, Default)]
pub struct Sample {
    /// Current resident set (VmRSS), KiB.
    pub rss_kib: u64,
    /// Peak resident set since the process started (VmHWM), KiB.
    pub hwm_kib: u64,
    /// Anonymous part of the resident set (RssAnon: heap, stacks), KiB; the
    /// rest is mostly file pages the process maps (RssFile, e.g. mmap).
    pub anon_kib: u64,
    /// User + system CPU time, seconds.
    pub cpu_s: f64,
    /// The system (kernel) part of `cpu_s`.
    pub sys_s: f64,
}

/// Reads /proc/<pid>/{status,stat}.
#[derive(Clone)]
pub struct Proc {
    pid: String,
    clk_tck: f64,
}

impl Proc {
    pub fn new(pid: u32) -> Result<Self> {
        let p = Self {
            pid: pid.to_string(),
            clk_tck: clk_tck(),
        };
        p.sample()
            .with_context(|| format!("reading /proc/{pid} (is the server running?)"))?;
        Ok(p)
    }

    /// This process (the benchmark client itself).
    pub fn current() -> Self {
        Self {
            pid: "self".into(),
            clk_tck: clk_tck(),
        }
    }

    pub fn sample(&self) -> Result<Sample> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid))?;
        let mut s = Sample::default();
        for line in status.lines() {
            if let Some(v) = line.strip_prefix("VmRSS:") {
                s.rss_kib = parse_kib(v);
            } else if let Some(v) = line.strip_prefix("VmHWM:") {
                s.hwm_kib = parse_kib(v);
            } else if let Some(v) = line.strip_prefix("RssAnon:") {
                s.anon_kib = parse_kib(v);
            }
        }
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid))?;
        // The command name (field 2) may contain spaces; fields after the last ')'
        // start at field 3 (state), so utime (14) and stime (15) are at 11 and 12.
        let rest = match stat.rfind(')') {
            Some(i) => &stat[i + 1..],
            None => bail!("unexpected /proc/{}/stat format", self.pid),
        };
        let f: Vec<&str> = rest.split_whitespace().collect();
        if f.len() < 13 {
            bail!("unexpected /proc/{}/stat format", self.pid);
        }
        let (user, sys): (u64, u64) = (f[11].parse()?, f[12].parse()?);
        s.cpu_s = (user + sys) as f64 / self.clk_tck;
        s.sys_s = sys as f64 / self.clk_tck;
        Ok(s)
    }

    /// Starts a thread that samples VmRSS every `every` until stopped, keeping
    /// the maximum, so that a peak during a scenario is seen even when VmHWM
    /// (a since-start peak) was already higher before it.
    pub fn peak_sampler(&self, every: Duration) -> PeakSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicU64::new(0));
        let anon = Arc::new(AtomicU64::new(0));
        let (p, s, pk, an) = (self.clone(), stop.clone(), peak.clone(), anon.clone());
        let handle = std::thread::Builder::new()
            .name("rss-sampler".into())
            .spawn(move || {
                while !s.load(Ordering::Relaxed) {
                    if let Ok(x) = p.sample() {
                        pk.fetch_max(x.rss_kib, Ordering::Relaxed);
                        an.fetch_max(x.anon_kib, Ordering::Relaxed);
                    }
                    std::thread::sleep(every);
                }
            })
            .ok();
        PeakSampler {
            stop,
            peak,
            anon,
            handle,
        }
    }
}

pub struct PeakSampler {
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    anon: Arc<AtomicU64>,
    handle: Option<JoinHandle<()>>,
}

impl PeakSampler {
    /// Stops the thread and returns the highest VmRSS and RssAnon seen, KiB.
    pub fn finish(mut self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
        (
            self.peak.load(Ordering::Relaxed),
            self.anon.load(Ordering::Relaxed),
        )
    }
}

impl Drop for PeakSampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Busy CPU seconds of the whole machine since boot (all cores: user, nice,
/// system, irq, softirq, steal), from the first line of /proc/stat.
pub fn machine_busy_s() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let f: Vec<u64> = line
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    if f.len() < 8 {
        return None;
    }
    // user nice system idle iowait irq softirq steal [guest guest_nice]
    let busy = f[0] + f[1] + f[2] + f[5] + f[6] + f[7];
    Some(busy as f64 / clk_tck())
}

fn parse_kib(v: &str) -> u64 {
    v.split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// Clock ticks per second, from `getconf CLK_TCK` (100 on Linux almost always).
fn clk_tck() -> f64 {
    static TCK: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TCK.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse::<f64>().ok())
            .filter(|t| *t > 0.0)
            .unwrap_or(100.0)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_self() {
        let s = Proc::current().sample().unwrap();
        assert!(s.rss_kib > 0);
        assert!(s.hwm_kib >= s.rss_kib);
        assert!(s.cpu_s >= 0.0);
        assert!(machine_busy_s().unwrap() > 0.0);
    }
}
