//! Per-scenario results: the JSON line, the human table, and the meter that
//! brackets a timed phase with server and client /proc readings.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::procfs::{PeakSampler, Proc, Sample, machine_busy_s};

pub const MB: f64 = 1e6;
pub const GIB: f64 = (1u64 << 30) as f64;

/// One scenario's outcome; serialised as one JSON object per line.
#[derive(Serialize, Deserialize, Default, Clone, Debug)]
#[serde(default)]
pub struct ScenarioResult {
    pub scenario: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    pub run_id: String,
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The headline figure, in `unit`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metric: Option<f64>,
    pub unit: String,
    pub higher_is_better: bool,
    /// Timed wall-clock seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seconds: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    /// Decimal megabytes (10^6 bytes) per second.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mb_per_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requests: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requests_per_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p50_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p99_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_ms: Option<f64>,
    /// Entries returned (tags, repositories).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub items: Option<u64>,
    /// Per-repeat headline figures.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub samples: Vec<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_cpu_s: Option<f64>,
    /// The kernel (system) part of `server_cpu_s`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_sys_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_cpu_s_per_gib: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_cpu_us_per_req: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_cpu_s: Option<f64>,
    /// CPU seconds used during the phase by processes other than the server
    /// and this client (a build, another benchmark...): when it is not near
    /// zero, the figures were measured on a busy machine.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub other_cpu_s: Option<f64>,
    /// CPU seconds used during the phase by the registry's backends (`--backend-pid`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backend_cpu_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rss_before_mib: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rss_after_mib: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rss_peak_mib: Option<f64>,
    /// Highest anonymous RSS (heap, stacks: excludes mapped file pages).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rss_anon_peak_mib: Option<f64>,
    #[serde(skip_serializing_if = "serde_json::Map::is_empty")]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl ScenarioResult {
    pub fn new(scenario: &str, label: Option<String>, run_id: &str) -> Self {
        let (unit, higher) = unit_of(scenario);
        Self {
            scenario: scenario.into(),
            label,
            run_id: run_id.into(),
            unit: unit.into(),
            higher_is_better: higher,
            ..Default::default()
        }
    }

    /// Sets bytes/seconds/MB/s and server CPU per GiB for a transfer.
    pub fn transfer(&mut self, bytes: u64, secs: f64) {
        self.bytes = Some(bytes);
        self.seconds = Some(secs);
        self.mb_per_s = Some(bytes as f64 / MB / secs);
        if let Some(c) = self.server_cpu_s {
            self.server_cpu_s_per_gib = Some(c / (bytes as f64 / GIB));
        }
    }
}

/// The headline unit of each scenario and whether more is better.
pub fn unit_of(scenario: &str) -> (&'static str, bool) {
    match scenario {
        "push-mono" | "push-chunked" | "pull" | "push-concurrent" | "s3-put" | "s3-get" => {
            ("MB/s", true)
        }
        "machine-sha256" | "machine-loopback" | "machine-disk" | "machine-ingest" => ("MB/s", true),
        "manifest-get" | "manifest-head" => ("req/s", true),
        "tag-create" => ("tags/s", true),
        "tag-list" | "catalog" => ("ms", false),
        "idle-rss" | "idle-rss-after" => ("MiB", false),
        "scan-layer" => ("% of inflate", true),
        "scan-image" => ("ms", false),
        "scan-rss" => ("MiB", false),
        _ => ("", true),
    }
}

/// Processes the registry depends on (`--backend-pid`), set once before the scenarios run.
static BACKENDS: std::sync::OnceLock<Vec<Proc>> = std::sync::OnceLock::new();

pub fn set_backends(procs: Vec<Proc>) {
    let _ = BACKENDS.set(procs);
}

/// The backends' CPU seconds so far (None without backends, or if one has exited).
fn backend_cpu_s() -> Option<f64> {
    let procs = BACKENDS.get().filter(|p| !p.is_empty())?;
    procs.iter().map(|p| p.sample().ok().map(|s| s.cpu_s)).sum()
}

/// Brackets a timed phase: wall clock, server CPU and RSS (before, after and
/// a sampled peak), and the client's own CPU.
pub struct Meter {
    server: Option<Proc>,
    s0: Option<Sample>,
    c0: Option<Sample>,
    sampler: Option<PeakSampler>,
    busy0: Option<f64>,
    backend0: Option<f64>,
    t0: Instant,
}

impl Meter {
    pub fn start(server: &Option<Proc>) -> Self {
        let s0 = server.as_ref().and_then(|p| p.sample().ok());
        let sampler = server
            .as_ref()
            .map(|p| p.peak_sampler(Duration::from_millis(20)));
        Self {
            server: server.clone(),
            s0,
            c0: Proc::current().sample().ok(),
            sampler,
            busy0: machine_busy_s(),
            backend0: backend_cpu_s(),
            t0: Instant::now(),
        }
    }

    /// Ends the phase, records CPU and RSS into `r`, returns the seconds.
    pub fn stop(mut self, r: &mut ScenarioResult) -> f64 {
        let secs = self.t0.elapsed().as_secs_f64();
        let (peak, anon) = self.sampler.take().map(|s| s.finish()).unwrap_or((0, 0));
        if let (Some(p), Some(s0)) = (&self.server, self.s0)
            && let Ok(s1) = p.sample()
        {
            r.server_cpu_s = Some(s1.cpu_s - s0.cpu_s);
            r.server_sys_s = Some(s1.sys_s - s0.sys_s);
            r.rss_before_mib = Some(s0.rss_kib as f64 / 1024.0);
            r.rss_after_mib = Some(s1.rss_kib as f64 / 1024.0);
            // VmHWM only tells us something if it rose during the phase.
            let hwm = if s1.hwm_kib > s0.hwm_kib {
                s1.hwm_kib
            } else {
                0
            };
            let pk = peak.max(hwm).max(s1.rss_kib).max(s0.rss_kib);
            r.rss_peak_mib = Some(pk as f64 / 1024.0);
            let an = anon.max(s0.anon_kib).max(s1.anon_kib);
            r.rss_anon_peak_mib = Some(an as f64 / 1024.0);
        }
        if let (Some(c0), Ok(c1)) = (self.c0, Proc::current().sample()) {
            r.client_cpu_s = Some(c1.cpu_s - c0.cpu_s);
        }
        if let (Some(k0), Some(k1)) = (self.backend0, backend_cpu_s()) {
            r.backend_cpu_s = Some(k1 - k0);
        }
        if let (Some(b0), Some(b1), Some(c)) = (self.busy0, machine_busy_s(), r.client_cpu_s) {
            let other =
                (b1 - b0) - c - r.server_cpu_s.unwrap_or(0.0) - r.backend_cpu_s.unwrap_or(0.0);
            r.other_cpu_s = Some(other.max(0.0));
        }
        secs
    }
}

pub fn median(v: &[f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let n = s.len();
    Some(if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    })
}

/// Nearest-rank percentile (p in 0..=100) of microsecond latencies, in ms.
pub fn percentile_ms(sorted_us: &[u32], p: f64) -> Option<f64> {
    if sorted_us.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted_us.len() as f64).ceil() as usize;
    let i = rank.clamp(1, sorted_us.len()) - 1;
    Some(sorted_us[i] as f64 / 1000.0)
}

/// Fills p50/p99/min/max from latencies.
pub fn latencies(r: &mut ScenarioResult, us: &mut [u32]) {
    us.sort_unstable();
    r.p50_ms = percentile_ms(us, 50.0);
    r.p99_ms = percentile_ms(us, 99.0);
    r.min_ms = us.first().map(|v| *v as f64 / 1000.0);
    r.max_ms = us.last().map(|v| *v as f64 / 1000.0);
}

pub fn dur_us(d: Duration) -> u32 {
    d.as_micros().min(u32::MAX as u128) as u32
}

// ---- human table ----------------------------------------------------------

pub fn table_header(out: &mut dyn std::io::Write) {
    let _ = writeln!(
        out,
        "{:<16} {:>18} {:>9} {:>9} {:>9} {:>10} {:>10} {:>9} {:>9}",
        "scenario",
        "result",
        "p50 ms",
        "p99 ms",
        "srvCPU s",
        "CPU-s/GiB",
        "RSS pk MiB",
        "cliCPU s",
        "othCPU s"
    );
    let _ = writeln!(out, "{}", "-".repeat(107));
}

pub fn table_row(out: &mut dyn std::io::Write, r: &ScenarioResult) {
    let f = |v: Option<f64>, prec: usize| match v {
        Some(x) => format!("{x:.prec$}"),
        None => "-".into(),
    };
    let result = if let Some(s) = &r.skipped {
        format!("skipped ({s})")
    } else {
        match r.metric {
            Some(m) => format!("{} {}", fmt_num(m), r.unit),
            None => "-".into(),
        }
    };
    let _ = writeln!(
        out,
        "{:<16} {:>18} {:>9} {:>9} {:>9} {:>10} {:>10} {:>9} {:>9}",
        r.scenario,
        result,
        f(r.p50_ms, 2),
        f(r.p99_ms, 2),
        f(r.server_cpu_s, 2),
        f(r.server_cpu_s_per_gib, 2),
        f(r.rss_peak_mib, 1),
        f(r.client_cpu_s, 2),
        f(r.other_cpu_s, 2),
    );
    if let Some(note) = r.extra.get("note").and_then(|n| n.as_str()) {
        let _ = writeln!(out, "  {note}");
    }
    if let Some(e) = &r.error {
        let _ = writeln!(out, "  ERROR: {e}");
    }
}

pub fn fmt_num(x: f64) -> String {
    if x >= 100.0 {
        format!("{x:.0}")
    } else if x >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_and_medians() {
        let mut v: Vec<u32> = (1..=100).map(|x| x * 1000).collect();
        v.reverse();
        let mut r = ScenarioResult::default();
        latencies(&mut r, &mut v);
        assert_eq!(r.p50_ms, Some(50.0));
        assert_eq!(r.p99_ms, Some(99.0));
        assert_eq!(r.max_ms, Some(100.0));
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(&[]), None);
    }
}
