//! `GET /metrics`: Prometheus text exposition of the state background work keeps in the
//! database (the vulnerability database's freshness per feed, the analysis queue, images waiting
//! to be matched again). Every value is read when scraped, from the database every replica
//! shares, so any replica answers for the cluster (the database version is this replica's).
//! Written by hand: a handful of gauges read on scrape need no metrics registry.
//!
//! Site administrators only (a monitoring robot uses a site admin's access token).

use std::fmt::Write as _;

use axum::extract::State;
use axum::response::{IntoResponse, Response};

use super::{ApiResult, Caller};
use crate::AppState;

/// A label value, escaped as the text format requires.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn gauge(out: &mut String, name: &str, help: &str, samples: &[(Option<(&str, &str)>, f64)]) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} gauge");
    for (l, v) in samples {
        match l {
            Some((k, val)) => {
                let _ = writeln!(out, "{name}{{{k}=\"{}\"}} {v}", label(val));
            }
            None => {
                let _ = writeln!(out, "{name} {v}");
            }
        }
    }
}

pub(super) async fn metrics(c: Caller, State(state): State<AppState>) -> ApiResult<Response> {
    c.require_site_admin()?;
    let mut out = String::new();
    let meta = c.auth.meta();
    if let Some(v) = &state.vulndb {
        let s = v.status().await?;
        gauge(
            &mut out,
            "berth_vulndb_advisories",
            "Records in the vulnerability database this replica serves.",
            &[(None, s.advisories as f64)],
        );
        if let Some(age) = s.age_secs {
            gauge(
                &mut out,
                "berth_vulndb_age_seconds",
                "Seconds since the least recently confirmed feed was last confirmed current.",
                &[(None, age as f64)],
            );
        }
        gauge(
            &mut out,
            "berth_vulndb_stale",
            "1 when the database is older than vulndb.max_age_secs, or empty.",
            &[(None, f64::from(u8::from(s.stale)))],
        );
        let records: Vec<(Option<(&str, &str)>, f64)> = s
            .feeds
            .iter()
            .map(|f| (Some(("feed", f.name.as_str())), f.records as f64))
            .collect();
        gauge(
            &mut out,
            "berth_vulndb_feed_records",
            "Records of each feed in the database.",
            &records,
        );
        let success: Vec<(Option<(&str, &str)>, f64)> = s
            .feeds
            .iter()
            .filter_map(|f| {
                f.last_success
                    .map(|t| (Some(("feed", f.name.as_str())), t as f64 / 1000.0))
            })
            .collect();
        gauge(
            &mut out,
            "berth_vulndb_feed_last_success_timestamp_seconds",
            "When each feed was last updated or confirmed unchanged.",
            &success,
        );
        let failing: Vec<(Option<(&str, &str)>, f64)> = s
            .feeds
            .iter()
            .map(|f| {
                (
                    Some(("feed", f.name.as_str())),
                    f64::from(u8::from(f.error.is_some())),
                )
            })
            .collect();
        gauge(
            &mut out,
            "berth_vulndb_feed_failing",
            "1 when a feed's last update attempt failed.",
            &failing,
        );
        let (analysed, waiting) = meta.image_scan_counts(&s.version).await?;
        gauge(
            &mut out,
            "berth_images_analysed",
            "Image manifests with a stored analysis.",
            &[(None, analysed as f64)],
        );
        gauge(
            &mut out,
            "berth_images_rematch_pending",
            "Analysed images not yet matched against the database in use.",
            &[(None, waiting as f64)],
        );
    }
    let jobs = meta.job_counts(berth_registry::scan::SCAN_JOB).await?;
    gauge(
        &mut out,
        "berth_scan_jobs",
        "Image analysis jobs by state.",
        &[
            (Some(("state", "queued")), jobs.queued as f64),
            (Some(("state", "running")), jobs.running as f64),
            (Some(("state", "done")), jobs.done as f64),
            (Some(("state", "failed")), jobs.failed as f64),
        ],
    );
    Ok((
        [(
            http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    )
        .into_response())
}
